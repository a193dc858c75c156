package driver_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/engine/journal"
	"github.com/transferd/transferd/ingest/driver"
)

// lockedBuffer is a log destination safe for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) count(substr string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.b.String(), substr)
}

// uploads starts transfer id of tenant-a with n uploads k00, k01, ….
func (r *rig) uploads(id string, n int) {
	r.t.Helper()
	var bodies []string
	for i := range n {
		bodies = append(bodies, fmt.Sprintf(uploaded, id, fmt.Sprintf("u%02d", i), fmt.Sprintf("k%02d", i)))
	}
	r.transfer("tenant-a", id, bodies...)
}

// TestLeasesSharedBetweenInstances: two Works over the same journal (two
// serve instances on one NATS) claim concurrently, many times: each
// upload is handed out once while its lease runs.
func TestLeasesSharedBetweenInstances(t *testing.T) {
	r := newRig(t)
	r.tenant("tenant-a", "secret-a")
	const n = 24
	r.uploads("t-1", n)
	r.uploads("t-2", n)
	works := []*driver.Work{r.work(driver.WorkConfig{}), r.work(driver.WorkConfig{})}
	var mu sync.Mutex
	got := map[string][]string{}
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() {
			w := works[i%2]
			for {
				it, err := w.Claim(r.ctx, "")
				if err != nil {
					t.Error(err)
					return
				}
				if it == nil {
					return
				}
				mu.Lock()
				k := it.TransferID + "/" + it.Key
				got[k] = append(got[k], fmt.Sprintf("instance %d lease %s", i%2, it.Lease))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(got) != 2*n {
		t.Errorf("%d uploads handed out, want %d", len(got), 2*n)
	}
	for k, holders := range got {
		if len(holders) != 1 {
			t.Errorf("%s handed out %d times under unexpired leases: %v", k, len(holders), holders)
		}
	}
}

// TestLeaseSurvivesRestart: a Work created after a restart (a new
// instance, the same journal) does not hand out an upload the old one
// leased; once the lease has run out it counts the lost attempt and hands
// the upload out again after the backoff.
func TestLeaseSurvivesRestart(t *testing.T) {
	r := newRig(t)
	r.tenant("tenant-a", "secret-a")
	r.uploads("t-1", 3)
	c := &clock{t: time.Now()}
	cfg := driver.WorkConfig{Lease: time.Minute, RetryBase: time.Minute, Now: c.now}
	old := r.work(cfg)
	for range 3 {
		if r.claim(old, "") == nil {
			t.Fatal("nothing to claim")
		}
	}
	restarted := r.work(cfg)
	if it := r.claim(restarted, ""); it != nil {
		t.Fatalf("after a restart, handed out %+v, still leased by the old instance", it)
	}
	c.add(2 * time.Minute)
	if it := r.claim(restarted, ""); it != nil {
		t.Fatalf("handed out %+v at once after its lease ran out", it)
	}
	r.caughtUp()
	c.add(time.Minute)
	it := r.claim(restarted, "")
	if it == nil || it.Attempt != 2 {
		t.Fatalf("after the backoff: %+v, want attempt 2", it)
	}
}

// TestExpiredLeaseCountedOnce: when a lease runs out without a report and
// both instances see it, exactly one records the failed attempt.
func TestExpiredLeaseCountedOnce(t *testing.T) {
	r := newRig(t)
	r.tenant("tenant-a", "secret-a")
	const n = 8
	r.uploads("t-1", n)
	c := &clock{t: time.Now()}
	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	cfg := driver.WorkConfig{Lease: time.Minute, MaxAttempts: 5, Now: c.now, Logger: log}
	a, b := r.work(cfg), r.work(cfg)
	for range n {
		if r.claim(a, "") == nil {
			t.Fatal("nothing to claim")
		}
	}
	c.add(2 * time.Minute)
	var wg sync.WaitGroup
	for _, w := range []*driver.Work{a, b, a, b} {
		wg.Go(func() {
			for range 3 {
				if it, err := w.Claim(r.ctx, ""); err != nil || it != nil {
					t.Errorf("claim after expiry: %+v, %v", it, err)
				}
			}
		})
	}
	wg.Wait()
	if got := logs.count("by=transferd"); got != n {
		t.Errorf("%d expired leases recorded, want %d (one each)", got, n)
	}
	r.caughtUp()
	events := 0
	for env, err := range r.j.Scan(r.ctx, journal.EventFilter("t-1", engine.KindUploadReported)) {
		if err != nil {
			t.Fatal(err)
		}
		_ = env
		events++
	}
	if events != n {
		t.Errorf("%d upload-reported events, want %d", events, n)
	}
	for _, u := range r.folded("t-1").Uploads {
		if u.Work == nil || u.Work.Status != engine.WorkFailed || u.Work.Attempt != 1 || u.Work.By != "transferd" {
			t.Errorf("%s: work %+v", u.Key, u.Work)
		}
	}
}

// TestProgressWithinAnUpload: an importer's progress report is folded
// into the upload's work (the greatest percent of the attempt wins), the
// transfer's progress counts it as a fraction, and it extends the lease:
// the upload stays leased past the claim's lease, until the heartbeats
// stop; a progress report on a lease that ran out and was counted is
// ErrConflict.
func TestProgressWithinAnUpload(t *testing.T) {
	r := newRig(t)
	r.tenant("tenant-a", "secret-a")
	r.uploads("t-1", 2)
	c := &clock{t: time.Now()}
	cfg := driver.WorkConfig{Lease: time.Minute, Now: c.now}
	w, other := r.work(cfg), r.work(cfg)
	it := r.claim(w, "")
	if wk := r.report(w, it, driver.WorkReport{Status: "progress", Percent: 50, Message: "half"}); wk.Status != engine.WorkProgress || wk.Percent != 50 || wk.Final {
		t.Fatalf("progress recorded as %+v", wk)
	}
	r.report(w, it, driver.WorkReport{Status: "progress", Percent: 30})
	if wk := r.folded("t-1").Uploads[0].Work; wk == nil || wk.Percent != 50 || wk.Attempt != 1 || wk.Message != "half" {
		t.Fatalf("folded %+v, want the greatest percent", wk)
	}
	if _, err := w.Report(r.ctx, "", "t-1", it.Key, driver.WorkReport{Status: "done", Percent: 10}); !errors.Is(err, driver.ErrInvalid) {
		t.Errorf("percent with done: %v", err)
	}
	// One of two uploads half done: 25 %.
	r.pass(r.driver(driver.Config{Progress: true}))
	if pt := r.platform("t-1"); pt.Percent != 25 {
		t.Errorf("platform percent %d, want 25", pt.Percent)
	}

	// Heartbeats keep the lease past the claim's minute.
	for range 3 {
		c.add(50 * time.Second)
		r.report(w, it, driver.WorkReport{Status: "progress", Percent: 60})
		if again := r.claim(other, ""); again != nil && again.Key == it.Key {
			t.Fatalf("handed out %+v while its importer reports progress", again)
		}
	}
	// The heartbeats stop: the lease runs out and counts once.
	c.add(2 * time.Minute)
	for _, wk := range []*driver.Work{other, w} {
		for got := r.claim(wk, ""); got != nil; got = r.claim(wk, "") {
			if got.Key == it.Key {
				t.Fatalf("handed out %+v at once after its lease ran out", got)
			}
		}
	}
	r.caughtUp()
	if wk := r.folded("t-1").Uploads[0].Work; wk == nil || wk.Status != engine.WorkFailed || wk.Attempt != 1 || wk.By != "transferd" {
		t.Fatalf("after the heartbeats stopped: %+v", wk)
	}
	if _, err := w.Report(r.ctx, "", "t-1", it.Key, driver.WorkReport{Status: "progress", Percent: 70, Attempt: 1}); !errors.Is(err, driver.ErrConflict) {
		t.Errorf("progress on a lost lease: %v", err)
	}
}
