package fulldisk_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/transferd/transferd/api"
	"github.com/transferd/transferd/api/apitest"
	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/engine/journal"
	"github.com/transferd/transferd/engine/journal/internal/faultfs"
	"github.com/transferd/transferd/ingest"
	"github.com/transferd/transferd/ingest/atlassian"
)

const (
	tenant = "tenant-a"
	secret = "secret-a-0123456789"
	// recoverWithin bounds the wait for recovery once space is freed: the
	// journal probes at most every 5 s.
	recoverWithin = 30 * time.Second
)

// stack is what transferd serve runs, on a faultfs mount: the journal with
// --sync always, the ingest handler and the query API with its projector.
type stack struct {
	t      *testing.T
	fs     *faultfs.FS
	j      *journal.Journal
	env    *apitest.Env
	ingest *httptest.Server
}

func newStack(t *testing.T) *stack {
	backing, mnt := t.TempDir(), t.TempDir()
	fsys, err := faultfs.Mount(backing, mnt)
	if errors.Is(err, faultfs.ErrNoFUSE) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the full-disk test needs FUSE, and CI must run it: %v", err)
		}
		t.Skipf("the full-disk test needs FUSE: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		fsys.SetFull(false)
		if err := fsys.Unmount(); err != nil {
			t.Error(err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	j, err := journal.Open(ctx, journal.Config{DataDir: mnt, SyncAlways: true, Timeout: 2 * time.Second,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() }) // after the API's and ingest's cleanups
	s := &stack{t: t, fs: fsys, j: j}
	s.env = apitest.New(t, apitest.Options{Journal: j})

	rctx, rcancel := context.WithCancel(context.Background())
	t.Cleanup(rcancel)
	reg, err := ingest.OpenRegistry(rctx, j.Tenants())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	if err := reg.Put(ctx, ingest.Tenant{ClientKey: tenant, SharedSecret: secret}); err != nil {
		t.Fatal(err)
	}
	h, err := ingest.New(rctx, ingest.Config{AppendTimeout: 2 * time.Second}, j, reg)
	if err != nil {
		t.Fatal(err)
	}
	s.ingest = httptest.NewServer(h)
	t.Cleanup(s.ingest.Close)
	return s
}

// testWriter logs the journal's warnings and errors through t.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// post sends the Connect event of transfer id, as the platform does, and
// returns the status and the Retry-After header.
func (s *stack) post(id string) (int, string) {
	s.t.Helper()
	tok, err := atlassian.SignConnect("POST", ingest.DefaultConnectPath, "", tenant, []byte(secret), 5*time.Minute, time.Now())
	if err != nil {
		s.t.Fatal(err)
	}
	body := fmt.Sprintf(`{"eventType":"listener-triggered","transferId":%q,"messageId":"msg-%s","cloudAppKey":"app"}`, id, id)
	req, err := http.NewRequest("POST", s.ingest.URL+ingest.DefaultConnectPath, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Authorization", "JWT "+tok)
	req.Header.Set("Content-Type", "application/json")
	res, err := s.ingest.Client().Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer res.Body.Close()
	io.Copy(io.Discard, res.Body)
	return res.StatusCode, res.Header.Get("Retry-After")
}

// ready returns GET /readyz's status and body.
func (s *stack) ready() (int, api.Readiness) {
	s.t.Helper()
	res, err := http.Get(s.env.URL + "/readyz")
	if err != nil {
		s.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var rd api.Readiness
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&rd); err != nil {
		s.t.Fatalf("/readyz %d: %v: %s", res.StatusCode, err, b)
	}
	return res.StatusCode, rd
}

// eventually polls cond until it holds or within passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; last: %s", what, within, state)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestFullDisk fills the disk under a serving stack and frees it again:
// while the store cannot be written, ingest answers 503 with Retry-After
// and /readyz 503 saying why; once it can, both answer 200 again without a
// restart, the projector goes on, and every event acknowledged before and
// after, and every event refused during the outage and sent again, is in
// the stream exactly once.
func TestFullDisk(t *testing.T) {
	s := newStack(t)
	var acked []string
	for i := range 5 {
		id := fmt.Sprintf("before-%d", i)
		if st, _ := s.post(id); st != 200 {
			t.Fatalf("%s before the disk filled: %d", id, st)
		}
		acked = append(acked, id)
	}
	eventually(t, 10*time.Second, "/readyz before", func() (bool, string) {
		st, rd := s.ready()
		return st == 200, fmt.Sprintf("%d %+v", st, rd)
	})

	s.fs.SetFull(true)
	refused := []string{"during-0", "during-1", "during-2"}
	for _, id := range refused {
		st, retry := s.post(id)
		if st != 503 || retry == "" {
			t.Fatalf("%s on a full disk: %d (Retry-After %q), want 503 with Retry-After", id, st, retry)
		}
	}
	eventually(t, 10*time.Second, "/readyz on a full disk", func() (bool, string) {
		st, rd := s.ready()
		return st == 503 && strings.Contains(rd.Reason, "cannot store events"), fmt.Sprintf("%d %+v", st, rd)
	})
	if err := s.j.Writable(); err == nil {
		t.Error("Writable on a full disk: nil")
	}
	if st, _ := s.post(acked[0]); st != 503 {
		// A retry of an acknowledged event is no exception: nothing is
		// acknowledged while the store cannot be written.
		t.Errorf("a retry of %s on a full disk: %d, want 503", acked[0], st)
	}

	s.fs.SetFull(false)
	// The platform retries what was refused.
	for _, id := range refused {
		eventually(t, recoverWithin, id+" once space is freed", func() (bool, string) {
			st, _ := s.post(id)
			return st == 200, fmt.Sprint(st)
		})
		acked = append(acked, id)
	}
	eventually(t, recoverWithin, "/readyz once space is freed", func() (bool, string) {
		st, rd := s.ready()
		return st == 200, fmt.Sprintf("%d %+v", st, rd)
	})
	if err := s.j.Writable(); err != nil {
		t.Errorf("Writable after recovery: %v", err)
	}
	if n := s.j.Recoveries(); n < 1 {
		t.Errorf("Recoveries: %d", n)
	}
	for i := range 5 {
		id := fmt.Sprintf("after-%d", i)
		if st, _ := s.post(id); st != 200 {
			t.Fatalf("%s after recovery: %d", id, st)
		}
		acked = append(acked, id)
	}
	// A retry of an event acknowledged before is a duplicate: 200, not
	// stored again.
	if st, _ := s.post(acked[1]); st != 200 {
		t.Errorf("a retry of %s after recovery: %d", acked[1], st)
	}

	// In the stream exactly once each, and nothing else.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stored := map[string]int{}
	for env, err := range s.j.Scan(ctx, "") {
		if err != nil {
			t.Fatal(err)
		}
		stored[env.TransferID]++
	}
	for _, id := range acked {
		if stored[id] != 1 {
			t.Errorf("%s is in the stream %d times, want once", id, stored[id])
		}
	}
	if len(stored) != len(acked) {
		t.Errorf("the stream holds %d transfers, want %d: %v", len(stored), len(acked), stored)
	}

	// The projector went on.
	s.env.Sync()
	for _, id := range acked {
		if tr, err := s.env.Store.Transfer(id); err != nil || tr.Version != 1 {
			t.Errorf("transfer %s in the projection: %+v, %v; want version 1", id, tr, err)
		}
	}
}

// TestFailedSyncThenPowerCut fails the journal's fsyncs (writes succeed,
// and the failed syncs drop the unsynced writes, as Linux writeback does):
// the append whose sync failed is refused, and so is its retry until the
// store is recovered; after it, the retry is acknowledged (as a duplicate
// of the copy the server stored) and that copy survives a power cut. A
// later sync of the same file alone would not make it durable: the
// recovery must have written it again.
func TestFailedSyncThenPowerCut(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  journal.Config
	}{
		{"group-sync", journal.Config{}},                                   // serve's default: the journal syncs
		{"atomic", journal.Config{GroupCommit: journal.GroupCommitAtomic}}, // the server syncs
		{"listen", journal.Config{Listen: "127.0.0.1:0", ListenUsers: []journal.ListenUser{{Name: "importer", Password: "importer-password-0123"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) { testFailedSync(t, tc.cfg) })
	}
}

func testFailedSync(t *testing.T, cfg journal.Config) {
	backing, mnt := t.TempDir(), t.TempDir()
	fsys, err := faultfs.Mount(backing, mnt)
	if errors.Is(err, faultfs.ErrNoFUSE) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the full-disk test needs FUSE, and CI must run it: %v", err)
		}
		t.Skipf("the full-disk test needs FUSE: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fsys.Unmount() })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg.DataDir, cfg.SyncAlways, cfg.Timeout = mnt, true, 2*time.Second
	cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	j, err := journal.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()

	acked := map[string]uint64{}
	appendEvent := func(id string) (journal.Ack, error) {
		return j.Append(ctx, event(id))
	}
	for i := range 5 {
		id := fmt.Sprintf("before-%d", i)
		a, err := appendEvent(id)
		if err != nil {
			t.Fatal(err)
		}
		acked[id] = a.Seq
	}

	fsys.FailSyncs(syscall.EIO)
	if _, err := appendEvent("suspect"); !errors.Is(err, journal.ErrUnavailable) {
		t.Fatalf("append with failing syncs: %v, want ErrUnavailable", err)
	}
	eventually(t, 10*time.Second, "Writable with failing syncs", func() (bool, string) {
		return j.Writable() != nil, "nil"
	})
	if _, err := appendEvent("suspect"); err == nil {
		t.Fatal("the retry of an append whose sync failed was acknowledged while syncs fail")
	}

	fsys.FailSyncs(0)
	var seq uint64
	eventually(t, recoverWithin, "the retry once syncs work", func() (bool, string) {
		a, err := appendEvent("suspect")
		seq = a.Seq
		return err == nil, fmt.Sprint(err)
	})
	acked["suspect"] = seq
	a, err := appendEvent("after")
	if err != nil {
		t.Fatal(err)
	}
	acked["after"] = a.Seq

	j.Close()
	if err := fsys.Cut(); err != nil {
		t.Fatal(err)
	}
	cfg.DataDir = backing
	j2, err := journal.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("after the cut: %v", err)
	}
	defer j2.Close()
	stored := map[string][]uint64{}
	for env, err := range j2.Scan(ctx, "") {
		if err != nil {
			t.Fatal(err)
		}
		stored[env.TransferID] = append(stored[env.TransferID], env.Seq)
	}
	for id, seq := range acked {
		if got := stored[id]; len(got) != 1 || got[0] != seq {
			t.Errorf("%s acknowledged at %d; after the power cut stored at %v", id, seq, got)
		}
	}
}

// event is a Connect event of transfer id.
func event(id string) *engine.Event {
	e, err := engine.Parse(engine.SourceConnect, []byte(fmt.Sprintf(
		`{"eventType":"listener-triggered","transferId":%q,"messageId":"msg-%s","cloudAppKey":"app"}`, id, id)))
	if err != nil {
		panic(err)
	}
	e.Issuer = tenant
	e.ReceivedAt = time.Now()
	return e
}
