package journal_test

import (
	"context"
	"sync"
	"testing"

	"github.com/transferd/transferd/engine/journal"
	"github.com/transferd/transferd/engine/journal/journaltest"
)

// TestLeases: two journals on one NATS race to create a lease and one
// wins; an update on a revision read before another's update loses and
// returns the lease that holds; a lease never written has revision 0.
func TestLeases(t *testing.T) {
	url := journaltest.Server(t)
	a := journaltest.OpenConfig(t, journal.Config{URL: url})
	b := journaltest.OpenConfig(t, journal.Config{URL: url})
	ctx := context.Background()
	if l, err := a.GetLease(ctx, "t-1", "some/key with spaces"); err != nil || l.Revision != 0 {
		t.Fatalf("lease never written: %+v, %v", l, err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	var held journal.Lease
	for i, j := range []*journal.Journal{a, b, a, b} {
		wg.Go(func() {
			l, won, err := j.CreateLease(ctx, "t-1", "some/key with spaces", []byte{'0' + byte(i)})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if won {
				wins++
				held = l
			}
		})
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d creates won, want 1", wins)
	}
	l, won, err := b.UpdateLease(ctx, "t-1", "some/key with spaces", []byte("b"), held.Revision)
	if err != nil || !won {
		t.Fatalf("update on the revision read: %+v %t %v", l, won, err)
	}
	stale, won, err := a.UpdateLease(ctx, "t-1", "some/key with spaces", []byte("a"), held.Revision)
	if err != nil || won || string(stale.Value) != "b" || stale.Revision != l.Revision {
		t.Fatalf("update on a stale revision: %+v %t %v, want the lease b holds", stale, won, err)
	}
	if other, err := a.GetLease(ctx, "t-1", "another key"); err != nil || other.Revision != 0 {
		t.Errorf("another key: %+v %v", other, err)
	}
}
