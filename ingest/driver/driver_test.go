package driver_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/engine/journal"
	"github.com/transferd/transferd/engine/journal/journaltest"
	"github.com/transferd/transferd/ingest"
	"github.com/transferd/transferd/ingest/driver"
	"github.com/transferd/transferd/ingest/platform"
	"github.com/transferd/transferd/ingest/platform/platformtest"
	"github.com/transferd/transferd/projections"
)

const appKey = "com.example.app"

// rig is a journal, a tenant registry, a projection store with its live
// projector, and a stand-in platform behind a proxy that can fail or hang.
type rig struct {
	t     *testing.T
	ctx   context.Context
	j     *journal.Journal
	reg   *ingest.Registry
	store *projections.Store
	plat  *platformtest.Server
	front *httptest.Server

	// fail503 answers this many requests 503 before passing them on.
	fail503 atomic.Int32
	// hold, when set, keeps requests (after passing them on when
	// holdAfter) until it is closed.
	mu        sync.Mutex
	hold      chan struct{}
	holdAfter bool
	held      chan struct{} // gets a value when a request is held
	// sent counts the requests that reached the platform, by method,
	// path and body.
	sent map[string]int
}

func newRig(t *testing.T) *rig {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	r := &rig{t: t, ctx: ctx, held: make(chan struct{}, 16), sent: map[string]int{}}
	r.j = journaltest.Open(t)
	var err error
	if r.reg, err = ingest.OpenRegistry(ctx, r.j.Tenants()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.reg.Close() })
	if r.store, err = projections.Open(filepath.Join(t.TempDir(), "projections.db"), projections.Options{}); err != nil {
		t.Fatal(err)
	}
	proj, err := projections.Start(ctx, r.j, r.store, projections.ProjectorOptions{NoPublish: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		proj.Stop()
		<-proj.Closed()
		r.store.Close()
	})
	r.plat = platformtest.New(platformtest.Options{AppKey: appKey})
	t.Cleanup(r.plat.Close)
	target, _ := url.Parse(r.plat.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	r.front = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if r.fail503.Add(-1) >= 0 {
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		b, _ := io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(b))
		r.mu.Lock()
		hold, after := r.hold, r.holdAfter
		r.sent[req.Method+" "+req.URL.Path+" "+string(b)]++
		r.mu.Unlock()
		if hold != nil && after {
			proxy.ServeHTTP(httptest.NewRecorder(), req) // the platform takes it; the reply is lost
		}
		if hold != nil {
			r.held <- struct{}{}
			select {
			case <-hold:
			case <-req.Context().Done():
			}
			if after {
				return // the connection drops without an answer
			}
		}
		proxy.ServeHTTP(w, req)
	}))
	t.Cleanup(r.front.Close)
	return r
}

// tenant installs a Connect tenant on the platform and in the registry.
func (r *rig) tenant(clientKey, secret string) {
	r.t.Helper()
	site := r.plat.AddConnectTenant(clientKey, secret, false)
	site = r.front.URL + site[len(r.plat.URL):]
	if err := r.reg.Put(r.ctx, ingest.Tenant{ClientKey: clientKey, SharedSecret: secret, BaseURL: site, InstalledAt: time.Now()}); err != nil {
		r.t.Fatal(err)
	}
}

// transfer starts transferId on the platform and appends its events as
// ingest would (owned by the tenant), then waits for the projection.
func (r *rig) transfer(clientKey, id string, bodies ...string) {
	r.t.Helper()
	r.plat.AddTransfer(platformtest.Transfer{ID: id, Tenant: clientKey})
	for _, b := range bodies {
		e, err := engine.Parse(engine.SourceConnect, []byte(b))
		if err != nil {
			r.t.Fatal(err)
		}
		e.Issuer, e.ReceivedAt = clientKey, time.Now().UTC()
		if _, owner, err := r.j.AppendOwned(r.ctx, e); err != nil || owner != "connect:"+clientKey {
			r.t.Fatalf("append of %s: owner %q, %v", id, owner, err)
		}
	}
	r.caughtUp()
}

func (r *rig) caughtUp() {
	r.t.Helper()
	last, err := r.j.LastSeq(r.ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := r.store.Wait(r.ctx, last); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) driver(cfg driver.Config) *driver.Driver {
	r.t.Helper()
	cfg.Journal, cfg.Store, cfg.Tenants = r.j, r.store, r.reg
	cfg.Client = &platform.Client{AppKey: appKey, Retry: platform.Retry{Attempts: 4, Base: time.Millisecond, Max: 5 * time.Millisecond}}
	if cfg.RetryBase == 0 {
		cfg.RetryBase = time.Nanosecond
	}
	d, err := driver.New(cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	return d
}

func (r *rig) pass(d *driver.Driver) driver.Report {
	r.t.Helper()
	rep, err := d.Pass(r.ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	r.caughtUp()
	return rep
}

func (r *rig) folded(id string) *engine.Transfer {
	r.t.Helper()
	tr, err := r.store.Transfer(id)
	if err != nil {
		r.t.Fatal(err)
	}
	return tr
}

// history is the transfer's platform-called events, in stream order.
func (r *rig) history(id string) []*engine.PlatformCall {
	r.t.Helper()
	var calls []*engine.PlatformCall
	for env, err := range r.j.Scan(r.ctx, journal.EventFilter(id, engine.KindPlatformCalled)) {
		if err != nil {
			r.t.Fatal(err)
		}
		e, err := env.Event()
		if err != nil || env.Source != engine.SourceApp || e.Issuer == "" {
			r.t.Fatalf("event %s: source %s issuer %q err %v", env.ID, env.Source, e.Issuer, err)
		}
		calls = append(calls, e.Call)
	}
	return calls
}

func (r *rig) platform(id string) platformtest.Transfer {
	r.t.Helper()
	pt, ok := r.plat.Get(id)
	if !ok {
		r.t.Fatalf("no transfer %s on the platform", id)
	}
	return pt
}

const (
	errored   = `{"eventType":"listener-errored","transferId":"%s","messageId":"e-%[1]s","transferError":{"exceptionType":"java.io.IOException"}}`
	cancelled = `{"eventType":"transfer-cancellation-requested","transferId":"%s","messageId":"c-%[1]s"}`
	triggered = `{"eventType":"listener-triggered","transferId":"%s","messageId":"t-%[1]s"}`
)

func body(format, id string) string { return fmt.Sprintf(format, id) }

// TestSettlesErroredAndCancelledOnce: an errored transfer is settled
// FAILED with its exceptionType, a cancelled one INCOMPLETE, each once;
// the outcome shows in the folded transfer and in its history, and a
// second pass sends nothing.
func TestSettlesErroredAndCancelledOnce(t *testing.T) {
	r := newRig(t)
	r.tenant("tenant-a", "secret-a")
	r.transfer("tenant-a", "t-err", body(triggered, "t-err"), body(errored, "t-err"))
	r.transfer("tenant-a", "t-can", body(triggered, "t-can"), body(cancelled, "t-can"))
	r.transfer("tenant-a", "t-run", body(triggered, "t-run"))

	var outcomes []driver.Settle
	var mu sync.Mutex
	d := r.driver(driver.Config{SettleErrored: true, SettleCancelled: true, Observe: func(s driver.Settle) {
		mu.Lock()
		outcomes = append(outcomes, s)
		mu.Unlock()
	}})
	rep := r.pass(d)
	if rep.Candidates != 2 || rep.Settled != 2 || rep.Near != 1 {
		t.Errorf("report %+v, want 2 candidates settled, 1 near (the cancellation)", rep)
	}
	for id, want := range map[string]struct{ status, message string }{
		"t-err": {platform.Failed, "java.io.IOException"},
		"t-can": {platform.Incomplete, "cancellation requested"},
	} {
		pt := r.platform(id)
		if pt.Settles != 1 || pt.Status != want.status || pt.Message != want.message {
			t.Errorf("%s on the platform: settles %d status %s message %q, want 1 %s %q", id, pt.Settles, pt.Status, pt.Message, want.status, want.message)
		}
		tr := r.folded(id)
		if tr.AppSettled == nil || tr.AppSettled.Status != want.status || tr.AppSettled.Outcome != engine.OutcomeOK {
			t.Errorf("%s folded: appSettled %+v", id, tr.AppSettled)
		}
		if tr.NeedsAction() != "" || tr.Source != engine.SourceConnect {
			t.Errorf("%s folded: needsAction %q source %s", id, tr.NeedsAction(), tr.Source)
		}
		if h := r.history(id); len(h) != 1 || h[0].Op != "settle" || h[0].Status != want.status || h[0].HTTPStatus != http.StatusOK || h[0].Attempts != 1 {
			t.Errorf("%s history: %+v", id, h)
		}
	}
	if pt := r.platform("t-run"); pt.Settles != 0 || r.folded("t-run").AppSettled != nil {
		t.Errorf("a running transfer was settled: %+v", pt)
	}
	if len(outcomes) != 2 {
		t.Errorf("observed %+v", outcomes)
	}

	// Another pass, and a fresh driver (a restart): nothing more is sent.
	r.pass(d)
	r.pass(r.driver(driver.Config{SettleErrored: true, SettleCancelled: true}))
	for _, id := range []string{"t-err", "t-can"} {
		if pt := r.platform(id); pt.Settles != 1 || pt.Refused != 0 {
			t.Errorf("%s after more passes: settles %d refused %d", id, pt.Settles, pt.Refused)
		}
		if h := r.history(id); len(h) != 1 {
			t.Errorf("%s history grew: %+v", id, h)
		}
	}
}

// TestOffByConfiguration: without SettleErrored and SettleCancelled the
// driver settles nothing.
func TestOffByConfiguration(t *testing.T) {
	r := newRig(t)
	r.tenant("tenant-a", "secret-a")
	r.transfer("tenant-a", "t-err", body(errored, "t-err"))
	r.transfer("tenant-a", "t-can", body(cancelled, "t-can"))
	rep := r.pass(r.driver(driver.Config{}))
	if rep.Candidates != 0 || r.platform("t-err").Settles+r.platform("t-can").Settles != 0 {
		t.Errorf("report %+v", rep)
	}
}

// TestRetries503ThenSettles: a platform answering 503 is retried; the
// outcome records the attempts.
func TestRetries503ThenSettles(t *testing.T) {
	r := newRig(t)
	r.tenant("tenant-a", "secret-a")
	r.transfer("tenant-a", "t-1", body(errored, "t-1"))
	r.fail503.Store(2)
	r.pass(r.driver(driver.Config{SettleErrored: true}))
	if pt := r.platform("t-1"); pt.Settles != 1 {
		t.Fatalf("settles %d", pt.Settles)
	}
	h := r.history("t-1")
	if len(h) != 1 || h[0].Outcome != engine.OutcomeOK || h[0].Attempts != 3 {
		t.Errorf("history %+v, want one ok after 3 attempts", h)
	}
}

// TestExhaustedIsVisibleAndRetried: a platform that keeps failing leaves
// an exhausted outcome in the transfer (still needing action); a later
// pass retries with the same decision and settles.
func TestExhaustedIsVisibleAndRetried(t *testing.T) {
	r := newRig(t)
	r.tenant("tenant-a", "secret-a")
	r.transfer("tenant-a", "t-1", body(cancelled, "t-1"))
	r.fail503.Store(4) // every attempt of the first pass
	d := r.driver(driver.Config{SettleCancelled: true})
	if rep := r.pass(d); rep.Failed != 1 {
		t.Errorf("report %+v", rep)
	}
	tr := r.folded("t-1")
	if tr.AppSettled != nil || tr.AppSettleFailure == nil || tr.AppSettleFailure.Outcome != engine.OutcomeExhausted ||
		tr.AppSettleFailure.HTTPStatus != http.StatusServiceUnavailable || tr.NeedsAction() != "settle" {
		t.Fatalf("after exhausted: appSettled %+v failure %+v needsAction %q", tr.AppSettled, tr.AppSettleFailure, tr.NeedsAction())
	}
	r.pass(d)
	if pt := r.platform("t-1"); pt.Settles != 1 || pt.Status != platform.Incomplete {
		t.Errorf("platform %+v", pt)
	}
	if tr := r.folded("t-1"); tr.AppSettled == nil || tr.AppSettled.Outcome != engine.OutcomeOK {
		t.Errorf("appSettled %+v", tr.AppSettled)
	}
}

// TestRestartAfterLostReply: a driver's settle lands on the platform but
// the reply is lost and the driver dies before recording anything; a
// restarted driver retries the claim's decision, gets 403 and records it
// as settled. The platform took one settle.
func TestRestartAfterLostReply(t *testing.T) {
	r := newRig(t)
	r.tenant("tenant-a", "secret-a")
	r.transfer("tenant-a", "t-1", body(errored, "t-1"))
	release := make(chan struct{})
	r.mu.Lock()
	r.hold, r.holdAfter = release, true
	r.mu.Unlock()

	first := r.driver(driver.Config{SettleErrored: true, ErroredStatus: platform.Incomplete})
	ctx, crash := context.WithCancel(r.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		first.Pass(ctx)
	}()
	<-r.held
	crash()
	<-done
	r.mu.Lock()
	r.hold = nil
	r.mu.Unlock()
	close(release)
	if h := r.history("t-1"); len(h) != 0 {
		t.Fatalf("the crashed driver recorded %+v", h)
	}

	// The restarted driver would settle FAILED by its own configuration;
	// the claim says INCOMPLETE. Within the lease it leaves the claim alone.
	second := r.driver(driver.Config{SettleErrored: true})
	if rep := r.pass(second); rep.Settled != 0 || len(r.history("t-1")) != 0 {
		t.Fatalf("took over within the lease: %+v", rep)
	}
	restarted := r.driver(driver.Config{SettleErrored: true, Lease: time.Nanosecond})
	r.pass(restarted)
	pt := r.platform("t-1")
	if pt.Settles != 1 || pt.Status != platform.Incomplete || pt.Refused != 1 {
		t.Errorf("platform: settles %d status %s refused %d, want 1 INCOMPLETE 1", pt.Settles, pt.Status, pt.Refused)
	}
	tr := r.folded("t-1")
	if tr.AppSettled == nil || tr.AppSettled.Outcome != engine.OutcomeSettled || tr.AppSettled.Status != platform.Incomplete || tr.NeedsAction() != "" {
		t.Errorf("appSettled %+v needsAction %q", tr.AppSettled, tr.NeedsAction())
	}
}

// TestTwoDriversAtOnce: two drivers passing at the same time send one
// settle between them.
func TestTwoDriversAtOnce(t *testing.T) {
	r := newRig(t)
	r.tenant("tenant-a", "secret-a")
	ids := []string{"t-1", "t-2", "t-3", "t-4"}
	for _, id := range ids {
		r.transfer("tenant-a", id, body(errored, id))
	}
	a := r.driver(driver.Config{SettleErrored: true})
	b := r.driver(driver.Config{SettleErrored: true})
	var wg sync.WaitGroup
	for _, d := range []*driver.Driver{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := d.Pass(r.ctx); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	r.caughtUp()
	for _, id := range ids {
		if pt := r.platform(id); pt.Settles != 1 || pt.Refused != 0 {
			t.Errorf("%s: settles %d refused %d", id, pt.Settles, pt.Refused)
		}
		if h := r.history(id); len(h) != 1 {
			t.Errorf("%s: history %+v", id, h)
		}
	}
}

// TestTenantsKeepTheirSecrets: each tenant's transfer is settled with its
// own secret (the platform checks the JWT per site); a transfer whose
// tenant is not installed, or whose binding names another tenant, is not
// settled at all.
func TestTenantsKeepTheirSecrets(t *testing.T) {
	r := newRig(t)
	r.tenant("tenant-a", "secret-a")
	r.tenant("tenant-b", "secret-b")
	r.transfer("tenant-a", "t-a", body(errored, "t-a"))
	r.transfer("tenant-b", "t-b", body(errored, "t-b"))
	r.transfer("tenant-c", "t-c", body(errored, "t-c")) // not in the registry

	// t-x belongs to tenant-z, whose event was stored first, but an event
	// of tenant-b's reached the journal too (one stored bypassing ingest's
	// check; the fold's issuer is the smallest, tenant-b): never settled
	// with tenant-b's secret.
	r.plat.AddTransfer(platformtest.Transfer{ID: "t-x", Tenant: "tenant-b"})
	first, err := engine.Parse(engine.SourceConnect, []byte(body(triggered, "t-x")))
	if err != nil {
		t.Fatal(err)
	}
	first.Issuer, first.ReceivedAt = "tenant-z", time.Now().UTC()
	if _, err := r.j.Append(r.ctx, first); err != nil {
		t.Fatal(err)
	}
	e, err := engine.Parse(engine.SourceConnect, []byte(body(errored, "t-x")))
	if err != nil {
		t.Fatal(err)
	}
	e.Issuer, e.ReceivedAt = "tenant-b", time.Now().UTC()
	if _, err := r.j.Append(r.ctx, e); err != nil {
		t.Fatal(err)
	}
	r.caughtUp()

	r.pass(r.driver(driver.Config{SettleErrored: true, Logger: discard()}))
	for id, settles := range map[string]int{"t-a": 1, "t-b": 1, "t-c": 0, "t-x": 0} {
		if pt := r.platform(id); pt.Settles != settles || pt.Refused != 0 {
			t.Errorf("%s: settles %d refused %d, want %d", id, pt.Settles, pt.Refused, settles)
		}
	}
	if h := r.history("t-x"); len(h) != 0 {
		t.Errorf("t-x history %+v", h)
	}
}

// TestSettleBeforeTimeout: a running transfer close to its 14-day limit is
// settled INCOMPLETE when configured, else only counted as near.
func TestSettleBeforeTimeout(t *testing.T) {
	r := newRig(t)
	r.tenant("tenant-a", "secret-a")
	r.transfer("tenant-a", "t-1", body(triggered, "t-1"))
	later := func() time.Time { return time.Now().Add(engine.TransferTimeout - time.Hour) }
	if rep := r.pass(r.driver(driver.Config{Now: later})); rep.Near != 1 || rep.Candidates != 0 {
		t.Errorf("alert only: %+v", rep)
	}
	if pt := r.platform("t-1"); pt.Settles != 0 {
		t.Fatalf("settled with alert only: %+v", pt)
	}
	r.pass(r.driver(driver.Config{Now: later, SettleBeforeTimeout: 2 * time.Hour}))
	if pt := r.platform("t-1"); pt.Settles != 1 || pt.Status != platform.Incomplete {
		t.Errorf("platform %+v", pt)
	}
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
