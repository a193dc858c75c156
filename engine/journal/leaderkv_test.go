package journal_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/engine/journal"
	"github.com/transferd/transferd/engine/journal/journaltest"
)

// TestTenantsGetReadsLatest: on a cluster, a tenant written through one
// server is read at once through another: Tenants().Get asks the bucket
// stream's leader, where a direct get may be answered by a replica that
// has not applied the write yet.
func TestTenantsGetReadsLatest(t *testing.T) {
	urls := strings.Split(journaltest.Cluster(t, 3), ",")
	var js []*journal.Journal
	for _, u := range urls {
		js = append(js, journaltest.OpenConfig(t, journal.Config{URL: u, Replicas: 3}))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	const writers, each = 8, 20
	var misses atomic.Int64
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				key := fmt.Sprintf("client-%d-%d", w, i)
				val := []byte(fmt.Sprintf("v%d", i))
				if _, err := js[w%3].Tenants().Put(ctx, key, val); err != nil {
					t.Error(err)
					return
				}
				for _, other := range []*journal.Journal{js[(w+1)%3], js[(w+2)%3]} {
					e, err := other.Tenants().Get(ctx, key)
					if err != nil || string(e.Value) != string(val) {
						misses.Add(1)
					}
				}
			}
		})
	}
	wg.Wait()
	if n := misses.Load(); n > 0 {
		t.Errorf("%d of %d reads right after a write through another server missed it", n, 2*writers*each)
	}
}
