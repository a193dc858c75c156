package simulator_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/engine/journal"
	"github.com/transferd/transferd/engine/journal/journaltest"
	"github.com/transferd/transferd/ingest"
	"github.com/transferd/transferd/ingest/simulator"
)

// keys is one key server for the whole package: generating RSA keys is the
// slowest part of a run under the race detector.
var keys *simulator.KeyServer

func TestMain(m *testing.M) {
	var err error
	if keys, err = simulator.StartKeyServer("127.0.0.1:0"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	keys.Close()
	os.Exit(code)
}

// server is an ingest handler over a real journal, trusting keys.
type server struct {
	url     string
	journal *journal.Journal
	tenants *ingest.Registry
	handler *ingest.Handler
}

type serverOption func(*ingest.Config, *ingest.Journal)

// startServer serves ingest on a loopback port until the test ends.
func startServer(t *testing.T, opts ...serverOption) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	j := journaltest.Open(t)
	reg, err := ingest.OpenRegistry(ctx, j.Tenants())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	hs := httptest.NewUnstartedServer(nil)
	url := "http://" + hs.Listener.Addr().String()
	cfg := ingest.Config{
		BaseURL: url, AppARI: simulator.DefaultAppARI,
		JWKSURL: keys.JWKSURL(), InstallKeysURL: keys.InstallKeysURL(),
		AppendTimeout: 2 * time.Second,
	}
	var ij ingest.Journal = j
	for _, o := range opts {
		o(&cfg, &ij)
	}
	h, err := ingest.New(ctx, cfg, ij, reg)
	if err != nil {
		t.Fatal(err)
	}
	hs.Config.Handler = h
	hs.Start()
	t.Cleanup(hs.Close)
	return &server{url: url, journal: j, tenants: reg, handler: h}
}

// config is a small run against s with every feature on.
func (s *server) config(transfers int) simulator.Config {
	return simulator.Config{
		Target: s.url, KeyServer: keys, Transfers: transfers, Concurrency: 16, Seed: 7,
		Duplicates: 0.3, Reruns: 0.2, Bad: 0.1, Tenants: 4, Timeout: 45 * time.Second,
	}
}

// stored returns the identities in MIGRATIONS, in stream order, and the
// events grouped by transfer.
func stored(t *testing.T, j *journal.Journal) ([]string, map[string][]*engine.Event) {
	t.Helper()
	var ids []string
	byTransfer := map[string][]*engine.Event{}
	for env, err := range j.Scan(context.Background(), "") {
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, env.ID)
		e, err := env.Event()
		if err != nil {
			t.Fatal(err)
		}
		byTransfer[e.TransferID] = append(byTransfer[e.TransferID], e)
	}
	return ids, byTransfer
}

// checkServer asserts what a run that went well leaves behind: the stream
// holds exactly the acknowledged events, and folding them gives what the
// simulator expects of every transfer.
func checkServer(t *testing.T, s *server, res simulator.Result) {
	t.Helper()
	ids, byTransfer := stored(t, s.journal)
	if err := res.CheckStored(ids); err != nil {
		t.Error(err)
	}
	if len(res.Expect) != len(byTransfer) {
		t.Errorf("%d transfers expected, %d stored", len(res.Expect), len(byTransfer))
	}
	for _, x := range res.Expect {
		if err := x.Match(engine.Fold(x.TransferID, byTransfer[x.TransferID])); err != nil {
			t.Error(err)
		}
	}
}

func TestRun(t *testing.T) {
	for _, mix := range []simulator.Mix{simulator.MixMixed, simulator.MixConnect, simulator.MixForge} {
		t.Run(string(mix), func(t *testing.T) {
			t.Parallel()
			s := startServer(t)
			cfg := s.config(60)
			cfg.Source = mix
			res, err := simulator.Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := res.Err(); err != nil {
				t.Fatalf("%v\n%+v", err, res.Failures)
			}
			if res.Acknowledged != res.Sent || res.Sent <= int64(res.Events) {
				t.Errorf("sent %d copies of %d events, %d acknowledged", res.Sent, res.Events, res.Acknowledged)
			}
			if res.Duplicates < res.Sent-int64(res.Events) {
				t.Errorf("%d duplicates reported, want at least the %d extra copies", res.Duplicates, res.Sent-int64(res.Events))
			}
			if res.Bad.Refused != res.Bad.Sent || res.Bad.Sent != int64(res.Bad.Planned) || res.Bad.Planned == 0 {
				t.Errorf("bad requests: %+v", res.Bad)
			}
			if res.Reruns != 12 {
				t.Errorf("%d re-runs, want 12", res.Reruns)
			}
			if res.Latency.P50 <= 0 || res.Latency.Max < res.Latency.P99 || res.EventsPerSecond <= 0 {
				t.Errorf("latency %+v, %v events/s", res.Latency, res.EventsPerSecond)
			}
			checkServer(t, s, res)
		})
	}
}

// flaky fails the first appends as an unreachable journal would.
type flaky struct {
	*journal.Journal
	failures atomic.Int64
}

func (f *flaky) Append(ctx context.Context, e *engine.Event) (journal.Ack, error) {
	if f.failures.Add(-1) >= 0 {
		return journal.Ack{}, fmt.Errorf("flaky: %w", journal.ErrUnavailable)
	}
	return f.Journal.Append(ctx, e)
}

func (f *flaky) AppendOwned(ctx context.Context, e *engine.Event) (journal.Ack, string, error) {
	if f.failures.Add(-1) >= 0 {
		return journal.Ack{}, "", fmt.Errorf("flaky: %w", journal.ErrUnavailable)
	}
	return f.Journal.AppendOwned(ctx, e)
}

func withFlakyJournal(failures int64) serverOption {
	return func(_ *ingest.Config, j *ingest.Journal) {
		f := &flaky{Journal: (*j).(*journal.Journal)}
		f.failures.Store(failures)
		*j = f
	}
}

func TestRunRetriesWhileJournalUnavailable(t *testing.T) {
	t.Parallel()
	s := startServer(t, withFlakyJournal(40))
	res, err := simulator.Run(context.Background(), s.config(40))
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	if res.Statuses[http.StatusServiceUnavailable] != 40 || res.Retries < 40 {
		t.Errorf("%d answered 503, %d retries; want 40 and at least 40", res.Statuses[http.StatusServiceUnavailable], res.Retries)
	}
	checkServer(t, s, res)
}

func TestRunDeadline(t *testing.T) {
	t.Parallel()
	s := startServer(t, withFlakyJournal(1<<40))
	cfg := s.config(10)
	cfg.Timeout = 3 * time.Second
	res, err := simulator.Run(context.Background(), cfg)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Run: %v, want the deadline", err)
	}
	if !errors.Is(res.Err(), simulator.ErrFailed) || res.Unacknowledged != res.Events || res.Events == 0 {
		t.Errorf("Err %v, %d of %d events unacknowledged", res.Err(), res.Unacknowledged, res.Events)
	}
	if len(res.Acked) != 0 || len(res.Expect) != 0 {
		t.Errorf("nothing was acknowledged, yet %d acked and %d expectations", len(res.Acked), len(res.Expect))
	}
}

func TestRunInstallNone(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	if err := s.tenants.Put(context.Background(), ingest.Tenant{ClientKey: "tenant-a", SharedSecret: "secret-a"}); err != nil {
		t.Fatal(err)
	}
	cfg := s.config(20)
	cfg.Source, cfg.Install = simulator.MixConnect, simulator.InstallNone
	cfg.ConnectTenants = []simulator.Credential{{ClientKey: "tenant-a", SharedSecret: "secret-a"}}
	res, err := simulator.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	for _, x := range res.Expect {
		if x.Issuer != "tenant-a" {
			t.Fatalf("transfer %s issued by %s, want tenant-a", x.TransferID, x.Issuer)
		}
	}
	checkServer(t, s, res)
}

func TestRunUntrusted(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		opt    serverOption
		cfg    func(*simulator.Config)
		reason string
	}{
		{"unsigned install not allowed", nil, func(c *simulator.Config) { c.Install = simulator.InstallUnsigned }, "--allow-unsigned-install"},
		{"other install keys", func(c *ingest.Config, _ *ingest.Journal) { c.InstallKeysURL = keys.URL() + "/nowhere" },
			func(c *simulator.Config) { c.Source = simulator.MixConnect }, "--install-keys-url " + keys.InstallKeysURL()},
		{"other Forge app", func(c *ingest.Config, _ *ingest.Journal) { c.AppARI = "ari:cloud:ecosystem::app/other" },
			func(c *simulator.Config) { c.Source = simulator.MixForge }, "--forge-app-ari " + simulator.DefaultAppARI},
		{"unknown tenant", nil, func(c *simulator.Config) {
			c.Source, c.Install = simulator.MixConnect, simulator.InstallNone
			c.ConnectTenants = []simulator.Credential{{ClientKey: "nobody", SharedSecret: "x"}}
		}, "transferd tenants add"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var opts []serverOption
			if tc.opt != nil {
				opts = append(opts, tc.opt)
			}
			s := startServer(t, opts...)
			cfg := s.config(5)
			tc.cfg(&cfg)
			res, err := simulator.Run(context.Background(), cfg)
			if !errors.Is(err, simulator.ErrNotTrusted) || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("Run: %v, want an error naming %q", err, tc.reason)
			}
			if res.Sent != 0 {
				t.Errorf("%d events sent to a server that does not trust the simulator", res.Sent)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	for _, cfg := range []simulator.Config{
		{Target: "ftp://x"},
		{Source: "both"},
		{Install: "maybe"},
		{Install: simulator.InstallNone},
		{Duplicates: 1.5},
		{ConnectTenants: []simulator.Credential{{ClientKey: "a", SharedSecret: "b"}}},
		{AppARI: "my-app"},
	} {
		if _, err := simulator.Run(context.Background(), cfg); !errors.Is(err, simulator.ErrConfig) {
			t.Errorf("Run(%+v): %v, want ErrConfig", cfg, err)
		}
	}
}

func TestParseCredential(t *testing.T) {
	c, err := simulator.ParseCredential("key:se:cret")
	if err != nil || c != (simulator.Credential{ClientKey: "key", SharedSecret: "se:cret"}) {
		t.Errorf("ParseCredential = %+v, %v", c, err)
	}
	for _, s := range []string{"key", ":secret", "key:", ""} {
		if _, err := simulator.ParseCredential(s); err == nil {
			t.Errorf("ParseCredential(%q) accepted", s)
		}
	}
	if _, err := simulator.ParseCredential(":hunter2"); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error leaks the secret: %v", err)
	}
}

// TestRunProgress: progress to a non-terminal, looked at every millisecond,
// never repeats its last line and closes with one summary line.
func TestRunProgress(t *testing.T) {
	s := startServer(t)
	var progress bytes.Buffer
	cfg := s.config(60)
	cfg.Progress, cfg.ProgressInterval = &progress, time.Millisecond
	res, err := simulator.Run(context.Background(), cfg)
	if err == nil {
		err = res.Err()
	}
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(progress.String(), "\n"), "\n")
	for i := 1; i < len(lines); i++ {
		if lines[i] == lines[i-1] {
			t.Errorf("progress line %d repeats the last: %q", i, lines[i])
		}
	}
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "simulate: done: ") || strings.Count(progress.String(), "simulate: done: ") != 1 {
		t.Errorf("want one closing line, last:\n%s", progress.String())
	}
}

// TestRunKeepsTenants: two runs with one tenants file against one server
// install and play the same tenants (a re-install of each Connect tenant,
// signed or, with unsigned installs, signed with its shared secret), and
// deliver distinct transfers.
func TestRunKeepsTenants(t *testing.T) {
	for _, mode := range []simulator.InstallMode{simulator.InstallSigned, simulator.InstallUnsigned} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			s := startServer(t, func(c *ingest.Config, _ *ingest.Journal) { c.AllowUnsignedInstall = true })
			file := filepath.Join(t.TempDir(), "state", "tenants.json")
			issuers := func(res simulator.Result) (map[string]bool, map[string]bool) {
				is, ts := map[string]bool{}, map[string]bool{}
				for _, x := range res.Expect {
					is[x.Issuer], ts[x.TransferID] = true, true
				}
				return is, ts
			}
			var runs []simulator.Result
			for seed := range int64(2) {
				cfg := s.config(30)
				cfg.Seed, cfg.Install, cfg.TenantsFile = 100+seed, mode, file
				res, err := simulator.Run(context.Background(), cfg)
				if err == nil {
					err = res.Err()
				}
				if err != nil {
					t.Fatalf("run %d: %v", seed+1, err)
				}
				runs = append(runs, res)
			}
			is1, ts1 := issuers(runs[0])
			is2, ts2 := issuers(runs[1])
			if len(is1) != 4 || !maps.Equal(is1, is2) {
				t.Errorf("the runs played other tenants: %v and %v", slices.Sorted(maps.Keys(is1)), slices.Sorted(maps.Keys(is2)))
			}
			for id := range ts2 {
				if ts1[id] {
					t.Errorf("transfer %s delivered by both runs", id)
				}
			}
			var installed []string
			for _, tn := range s.tenants.List() {
				installed = append(installed, tn.ClientKey)
				if !is1[tn.ClientKey] {
					t.Errorf("tenant %s installed, not one the runs played", tn.ClientKey)
				}
			}
			if len(installed) != runs[0].ConnectTenants || runs[0].ConnectTenants != runs[1].ConnectTenants {
				t.Errorf("%d tenants installed (%v), runs had %d and %d Connect tenants", len(installed), installed, runs[0].ConnectTenants, runs[1].ConnectTenants)
			}
			if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
				t.Errorf("tenants file: %v, %v; want mode 0600", st.Mode(), err)
			}
		})
	}
}

// TestRunTenantsFileGrows: a run with more tenants than the file holds
// plays those it holds and adds the others.
func TestRunTenantsFileGrows(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	file := filepath.Join(t.TempDir(), "tenants.json")
	var sets []map[string]bool
	for i, n := range []int{2, 4} {
		cfg := s.config(20)
		cfg.Seed, cfg.Tenants, cfg.TenantsFile = int64(200+i), n, file
		res, err := simulator.Run(context.Background(), cfg)
		if err == nil {
			err = res.Err()
		}
		if err != nil {
			t.Fatal(err)
		}
		set := map[string]bool{}
		for _, x := range res.Expect {
			set[x.Issuer] = true
		}
		sets = append(sets, set)
	}
	for is := range sets[0] {
		if !sets[1][is] {
			t.Errorf("tenant %s of the first run not played by the second", is)
		}
	}
	if len(sets[1]) != 4 {
		t.Errorf("second run played %d tenants, want 4", len(sets[1]))
	}
}

// TestRunKeptTenantsUnsignedRefused: kept tenants installed unsigned on a
// server that has never seen them and allows no unsigned installs fail
// with the advice to allow them, not with a re-install error.
func TestRunKeptTenantsUnsignedRefused(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "tenants.json")
	cfg := startServer(t).config(10)
	cfg.TenantsFile = file
	if res, err := simulator.Run(context.Background(), cfg); err != nil || res.Err() != nil {
		t.Fatalf("first run: %v %v", err, res.Err())
	}
	cfg = startServer(t).config(10)
	cfg.TenantsFile, cfg.Install = file, simulator.InstallUnsigned
	_, err := simulator.Run(context.Background(), cfg)
	if !errors.Is(err, simulator.ErrNotTrusted) || !strings.Contains(err.Error(), "--allow-unsigned-install") {
		t.Fatalf("unsigned install of kept tenants on a server refusing them: %v", err)
	}
}

// TestDefaultConnectPathIsServes: the simulator spells out serve's default
// webhook path rather than import the ingest package; the two must agree.
func TestDefaultConnectPathIsServes(t *testing.T) {
	if simulator.DefaultConnectPath != ingest.DefaultConnectPath {
		t.Fatalf("simulator.DefaultConnectPath = %q, ingest.DefaultConnectPath = %q", simulator.DefaultConnectPath, ingest.DefaultConnectPath)
	}
}
