package driver_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/ingest/driver"
	"github.com/transferd/transferd/ingest/platform"
	"github.com/transferd/transferd/ingest/platform/platformtest"
	"github.com/transferd/transferd/projections"
)

const (
	uploaded = `{"eventType":"app-data-uploaded","transferId":"%s","messageId":"%s","s3Key":"%s","label":"L-%[3]s"}`
	exported = `{"eventType":"export-phase-completed","transferId":"%s","messageId":"x-%[1]s"}`

	forgeUploaded = `{"eventType":"avi:ecosystem.migration:uploaded:app_data","transferId":"%s","messageId":"%s","key":"%s","label":"L-%[3]s"}`
)

// clock is a test's adjustable time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func (r *rig) work(cfg driver.WorkConfig) *driver.Work {
	r.t.Helper()
	cfg.Journal, cfg.Store = r.j, r.store
	if cfg.Logger == nil {
		cfg.Logger = discard()
	}
	w, err := driver.NewWork(cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	return w
}

func (r *rig) claim(w *driver.Work, tenant string) *driver.Item {
	r.t.Helper()
	it, err := w.Claim(r.ctx, tenant)
	if err != nil {
		r.t.Fatal(err)
	}
	return it
}

func (r *rig) report(w *driver.Work, it *driver.Item, rep driver.WorkReport) engine.UploadWork {
	r.t.Helper()
	rep.Attempt = it.Attempt
	wk, err := w.Report(r.ctx, "", it.TransferID, it.Key, rep)
	if err != nil {
		r.t.Fatal(err)
	}
	r.caughtUp()
	return wk
}

// settles counts the settle requests that reached the platform for id.
func (r *rig) requests(substr string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for k, v := range r.sent {
		if strings.Contains(k, substr) {
			n += v
		}
	}
	return n
}

// TestUploadsBecomeWorkOnce: each upload is one unit of work, also when
// the platform announced it twice; an importer claims each, reports them
// done, and the driver settles SUCCESS once (a second pass, and a
// restarted driver, send nothing).
func TestUploadsBecomeWorkOnce(t *testing.T) {
	r := newRig(t)
	r.tenant("tenant-a", "secret-a")
	id := "t-1"
	r.transfer("tenant-a", id, body(triggered, id),
		fmt.Sprintf(uploaded, id, "u1", "k1"), fmt.Sprintf(uploaded, id, "u1-again", "k1"), fmt.Sprintf(uploaded, id, "u2", "k2"))
	w := r.work(driver.WorkConfig{})
	var items []*driver.Item
	for it := r.claim(w, ""); it != nil; it = r.claim(w, "") {
		items = append(items, it)
	}
	if len(items) != 2 || items[0].Key != "k1" || items[1].Key != "k2" || items[0].Attempt != 1 || items[0].Label != "L-k1" || items[0].Tenant != "tenant-a" {
		t.Fatalf("claimed %+v, want k1 and k2 once each", items)
	}
	d := r.driver(driver.Config{SettleDone: true, Progress: true})
	r.report(w, items[0], driver.WorkReport{Status: "done"})
	// Half done, export not completed: progress 50, no settle.
	if rep := r.pass(d); rep.Progressed != 1 || rep.Candidates != 0 {
		t.Errorf("half done: %+v", rep)
	}
	if pt := r.platform(id); pt.Percent != 50 || pt.Settles != 0 {
		t.Errorf("platform after half: %+v", pt)
	}
	r.report(w, items[1], driver.WorkReport{Status: "done"})
	if it := r.claim(w, ""); it != nil {
		t.Fatalf("claimed %+v after all were done", it)
	}
	// Done but not past its uploads yet: no settle.
	if rep := r.pass(d); rep.Candidates != 0 {
		t.Errorf("not past uploads: %+v", rep)
	}
	r.transfer("tenant-a", id, body(exported, id))
	if rep := r.pass(d); rep.Settled != 1 {
		t.Errorf("report %+v", rep)
	}
	r.pass(d)
	r.pass(r.driver(driver.Config{SettleDone: true, Progress: true}))
	pt := r.platform(id)
	if pt.Settles != 1 || pt.Status != platform.Success || pt.Refused != 0 || r.requests("/progress/"+id+` {"status":"SUCCESS"`) != 1 {
		t.Errorf("platform %+v, settle requests %d", pt, r.requests("/progress/"+id+` {"status":"SUCCESS"`))
	}
	tr := r.folded(id)
	if tr.AppSettled == nil || tr.AppSettled.Status != platform.Success || len(tr.Uploads) != 2 || tr.Uploads[0].Work.Status != engine.WorkDone {
		t.Errorf("folded %+v", tr)
	}
	if tr.Uploads[0].MessageIDs == nil || len(tr.Uploads[0].MessageIDs) != 2 {
		t.Errorf("k1 messageIds %v", tr.Uploads[0].MessageIDs)
	}
}

// TestFailureRetriedThenDeadLettered: a retryable failure is claimable
// again only after its backoff; at MaxAttempts it is a dead letter
// (listed, the transfer not settled within the hold); requeued, it is
// claimed again (with a new budget) and, done, the transfer settles
// SUCCESS. A non-retryable failure is dead at once and settles
// INCOMPLETE naming the upload.
func TestFailureRetriedThenDeadLettered(t *testing.T) {
	r := newRig(t)
	r.tenant("tenant-a", "secret-a")
	c := &clock{t: time.Now()}
	r.transfer("tenant-a", "t-1", body(triggered, "t-1"), fmt.Sprintf(uploaded, "t-1", "u1", "k1"), body(exported, "t-1"))
	w := r.work(driver.WorkConfig{MaxAttempts: 2, RetryBase: time.Minute, Now: c.now})

	it := r.claim(w, "")
	if wk := r.report(w, it, driver.WorkReport{Status: "failed", Retryable: true, Message: "timeout"}); wk.Final {
		t.Fatalf("first retryable failure is final: %+v", wk)
	}
	if again := r.claim(w, ""); again != nil {
		t.Fatalf("claimed %+v within the backoff", again)
	}
	c.add(time.Minute)
	it = r.claim(w, "")
	if it == nil || it.Attempt != 2 {
		t.Fatalf("after the backoff: %+v", it)
	}
	if wk := r.report(w, it, driver.WorkReport{Status: "failed", Retryable: true, Message: "timeout again"}); !wk.Final {
		t.Fatalf("failure at MaxAttempts is not final: %+v", wk)
	}
	dead, err := w.DeadLetters("")
	if err != nil || len(dead) != 1 || dead[0].Key != "k1" || dead[0].Work.Attempt != 2 || dead[0].Work.Message != "timeout again" {
		t.Fatalf("dead letters %+v %v", dead, err)
	}
	c.add(time.Hour)
	if it := r.claim(w, ""); it != nil {
		t.Fatalf("claimed a dead letter: %+v", it)
	}
	d := r.driver(driver.Config{SettleDone: true, DeadLetterHold: 24 * time.Hour, Now: c.now})
	if rep := r.pass(d); rep.Candidates != 0 {
		t.Fatalf("settled within the dead-letter hold: %+v", rep)
	}

	if _, err := w.Requeue(r.ctx, "", "t-1", "k1", "fixed the importer"); err != nil {
		t.Fatal(err)
	}
	r.caughtUp()
	if _, err := w.Requeue(r.ctx, "", "t-1", "k1", ""); !errors.Is(err, driver.ErrConflict) {
		t.Errorf("second requeue: %v", err)
	}
	if dead, _ := w.DeadLetters(""); len(dead) != 0 {
		t.Errorf("still dead after requeue: %+v", dead)
	}
	it = r.claim(w, "")
	if it == nil || it.Attempt != 3 {
		t.Fatalf("after requeue: %+v", it)
	}
	// The requeue gave a new budget: a retryable failure is not final.
	if wk := r.report(w, it, driver.WorkReport{Status: "failed", Retryable: true}); wk.Final {
		t.Fatalf("first failure after a requeue is final: %+v", wk)
	}
	c.add(time.Hour)
	it = r.claim(w, "")
	r.report(w, it, driver.WorkReport{Status: "done"})
	r.pass(d)
	if pt := r.platform("t-1"); pt.Settles != 1 || pt.Status != platform.Success {
		t.Errorf("platform %+v", pt)
	}

	// Not retryable: dead at once, settled INCOMPLETE with its name.
	r.transfer("tenant-a", "t-2", body(triggered, "t-2"), fmt.Sprintf(uploaded, "t-2", "v1", "bad"), fmt.Sprintf(uploaded, "t-2", "v2", "good"), body(exported, "t-2"))
	for it := r.claim(w, ""); it != nil; it = r.claim(w, "") {
		st := "done"
		if it.Key == "bad" {
			st = "failed"
		}
		r.report(w, it, driver.WorkReport{Status: st, Message: "corrupt archive"})
	}
	r.pass(r.driver(driver.Config{SettleDone: true, Now: c.now}))
	pt := r.platform("t-2")
	if pt.Settles != 1 || pt.Status != platform.Incomplete || !strings.Contains(pt.Message, "bad (L-bad): corrupt archive") {
		t.Errorf("platform %+v", pt)
	}
	// The history shows every report, the requeue among them.
	var statuses []string
	for _, u := range r.folded("t-1").Uploads {
		statuses = append(statuses, u.Work.Status)
	}
	if len(statuses) != 1 || statuses[0] != engine.WorkDone {
		t.Errorf("t-1 work %v", statuses)
	}
}

// TestLeaseExpiryCountsAsAttempt: an importer that claims and never
// reports loses its lease, and the lost attempt counts.
func TestLeaseExpiryCountsAsAttempt(t *testing.T) {
	r := newRig(t)
	r.tenant("tenant-a", "secret-a")
	c := &clock{t: time.Now()}
	r.transfer("tenant-a", "t-1", fmt.Sprintf(uploaded, "t-1", "u1", "k1"))
	w := r.work(driver.WorkConfig{MaxAttempts: 1, Lease: time.Minute, Now: c.now})
	if it := r.claim(w, ""); it == nil {
		t.Fatal("nothing to claim")
	}
	if it := r.claim(w, ""); it != nil {
		t.Fatalf("claimed a leased upload: %+v", it)
	}
	c.add(2 * time.Minute)
	if it := r.claim(w, ""); it != nil {
		t.Fatalf("claimed at once after expiry: %+v", it)
	}
	r.caughtUp()
	dead, err := w.DeadLetters("")
	if err != nil || len(dead) != 1 || dead[0].Work.By != "transferd" {
		t.Fatalf("dead letters %+v %v", dead, err)
	}
}

// TestWorkTenancy: a tenant sees only its own work; its report or requeue
// on another tenant's transfer is ErrTenantMismatch.
func TestWorkTenancy(t *testing.T) {
	r := newRig(t)
	r.tenant("tenant-a", "secret-a")
	r.tenant("tenant-b", "secret-b")
	r.transfer("tenant-a", "t-a", fmt.Sprintf(uploaded, "t-a", "u1", "k1"))
	r.transfer("tenant-b", "t-b", fmt.Sprintf(uploaded, "t-b", "u2", "k2"))
	w := r.work(driver.WorkConfig{})
	it := r.claim(w, "tenant-b")
	if it == nil || it.TransferID != "t-b" {
		t.Fatalf("tenant-b claimed %+v", it)
	}
	if it := r.claim(w, "tenant-b"); it != nil {
		t.Fatalf("tenant-b claimed %+v", it)
	}
	if _, err := w.Report(r.ctx, "tenant-b", "t-a", "k1", driver.WorkReport{Status: "done"}); !errors.Is(err, driver.ErrTenantMismatch) {
		t.Errorf("cross-tenant report: %v", err)
	}
	if _, err := w.Report(r.ctx, "tenant-a", "t-a", "nope", driver.WorkReport{Status: "done"}); !errors.Is(err, driver.ErrNotFound) {
		t.Errorf("unknown upload: %v", err)
	}
	if tr := r.folded("t-a"); tr.Uploads[0].Work != nil {
		t.Errorf("t-a recorded %+v", tr.Uploads[0].Work)
	}
}

// forgeTransfer starts a Forge transfer of installation inst with upload
// messages keys (message id m-<key>).
func (r *rig) forgeTransfer(inst, id string, keys ...string) {
	r.t.Helper()
	var msgs []string
	for _, k := range keys {
		msgs = append(msgs, "m-"+k)
	}
	r.plat.AddTransfer(platformtest.Transfer{ID: id, Tenant: inst, Messages: msgs})
	for _, k := range keys {
		e, err := engine.Parse(engine.SourceForge, fmt.Appendf(nil, forgeUploaded, id, "m-"+k, k))
		if err != nil {
			r.t.Fatal(err)
		}
		e.Issuer, e.ReceivedAt = inst, time.Now().UTC()
		if _, _, err := r.j.AppendOwned(r.ctx, e); err != nil {
			r.t.Fatal(err)
		}
	}
	r.caughtUp()
}

// TestForgeMessageStatus: each Forge upload message is acknowledged once
// its work is over, with its installation's token (the platform checks
// it), SUCCESS or FAILED, once (a second pass and a restarted driver send
// nothing); without a credential nothing is sent and it is counted; a
// message close to its 15-minute window is acknowledged FAILED or only
// alerted, as configured.
func TestForgeMessageStatus(t *testing.T) {
	r := newRig(t)
	api := r.plat.AddForgeInstallation("inst-1", "tok-1")
	api = r.front.URL + api[len(r.plat.URL):]
	r.plat.AddForgeInstallation("inst-2", "tok-2")
	r.forgeTransfer("inst-1", "f-1", "a", "b", "c")
	r.forgeTransfer("inst-2", "f-2", "z")
	creds := func(inst string) (platform.ForgeInstallation, bool) {
		if inst == "inst-1" {
			return platform.ForgeInstallation{APIBaseURL: api, Token: "tok-1"}, true
		}
		return platform.ForgeInstallation{}, false
	}
	w := r.work(driver.WorkConfig{})
	for it := r.claim(w, ""); it != nil; it = r.claim(w, "") {
		switch it.Key {
		case "a", "z":
			r.report(w, it, driver.WorkReport{Status: "done"})
		case "b":
			r.report(w, it, driver.WorkReport{Status: "failed", Message: "unreadable"})
		}
	}
	cfg := driver.Config{ForgeCredential: creds, ForgeTimeout: "alert", Logger: discard()}
	rep := r.pass(r.driver(cfg))
	if rep.ForgeAcked != 2 || rep.NoCredential != 1 || rep.ForgeDue != 0 {
		t.Errorf("report %+v", rep)
	}
	pt := r.platform("f-1")
	if pt.Acked["m-a"] != platform.Success || pt.Acked["m-b"] != platform.Failed || len(pt.Acked) != 2 {
		t.Errorf("acked %v", pt.Acked)
	}
	if pt := r.platform("f-2"); len(pt.Acked) != 0 {
		t.Errorf("f-2 acknowledged without a credential: %v", pt.Acked)
	}
	tr := r.folded("f-1")
	if tr.ForgeAcks["m-a"] != platform.Success || tr.ForgeAcks["m-b"] != platform.Failed {
		t.Errorf("folded acks %v", tr.ForgeAcks)
	}
	r.pass(r.driver(cfg))
	if n := r.requests("/message/f-1/status"); n != 2 {
		t.Errorf("%d message-status requests after a restart, want 2", n)
	}

	// "c" has no report: 14 minutes on it is due; alert only, then FAILED.
	late := func() time.Time { return time.Now().Add(14 * time.Minute) }
	cfg.Now = late
	if rep := r.pass(r.driver(cfg)); rep.ForgeDue != 1 || r.platform("f-1").Acked["m-c"] != "" {
		t.Errorf("alert: %+v, acked %v", rep, r.platform("f-1").Acked)
	}
	cfg.ForgeTimeout = "failed"
	r.pass(r.driver(cfg))
	if pt := r.platform("f-1"); pt.Acked["m-c"] != platform.Failed {
		t.Errorf("acked %v", pt.Acked)
	}
	if n := r.requests("/message/f-1/status"); n != 3 {
		t.Errorf("%d message-status requests, want 3", n)
	}
}

// TestRestartSendsNothingTwice: after a settle and Forge message statuses
// went through, a restart with a fresh projection (rebuilt from the
// journal by a new projector) and a new driver sends nothing again.
func TestRestartSendsNothingTwice(t *testing.T) {
	r := newRig(t)
	r.tenant("tenant-a", "secret-a")
	api := r.plat.AddForgeInstallation("inst-1", "tok-1")
	api = r.front.URL + api[len(r.plat.URL):]
	creds := func(string) (platform.ForgeInstallation, bool) {
		return platform.ForgeInstallation{APIBaseURL: api, Token: "tok-1"}, true
	}
	r.transfer("tenant-a", "c-1", body(triggered, "c-1"), fmt.Sprintf(uploaded, "c-1", "u1", "k1"), body(exported, "c-1"))
	r.forgeTransfer("inst-1", "f-1", "a")
	w := r.work(driver.WorkConfig{})
	for it := r.claim(w, ""); it != nil; it = r.claim(w, "") {
		r.report(w, it, driver.WorkReport{Status: "done"})
	}
	cfg := driver.Config{SettleDone: true, Progress: true, ForgeCredential: creds}
	r.pass(r.driver(cfg))
	settles, acks := r.requests("/progress/c-1 {\"status\":\"SUCCESS\""), r.requests("/message/f-1/status")
	if settles != 1 || acks != 1 {
		t.Fatalf("first run: %d settles, %d acks", settles, acks)
	}

	// A new projection, rebuilt from the journal, and a new driver.
	store, err := projections.Open(filepath.Join(t.TempDir(), "again.db"), projections.Options{})
	if err != nil {
		t.Fatal(err)
	}
	proj, err := projections.Start(r.ctx, r.j, store, projections.ProjectorOptions{NoPublish: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		proj.Stop()
		<-proj.Closed()
		store.Close()
	}()
	last, err := r.j.LastSeq(r.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Wait(r.ctx, last); err != nil {
		t.Fatal(err)
	}
	old := r.store
	r.store = store
	d := r.driver(cfg)
	r.store = old
	for range 2 {
		if _, err := d.Pass(r.ctx); err != nil {
			t.Fatal(err)
		}
	}
	if s, a := r.requests("/progress/c-1 {\"status\":\"SUCCESS\""), r.requests("/message/f-1/status"); s != 1 || a != 1 {
		t.Errorf("after a restart: %d settles, %d acks", s, a)
	}
	if pt := r.platform("c-1"); pt.Settles != 1 || pt.Refused != 0 {
		t.Errorf("platform %+v", pt)
	}
}
