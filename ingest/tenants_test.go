package ingest_test

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
	"github.com/transferd/transferd/ingest"
)

// TestRegistryGetSeesOtherInstance: a tenant installed through one
// instance is found at once by another instance on another server of the
// cluster, before its watcher has delivered the install: the miss path
// reads the bucket's latest value from the stream leader, not whichever
// replica a direct get reaches.
func TestRegistryGetSeesOtherInstance(t *testing.T) {
	urls := strings.Split(journaltest.Cluster(t, 3), ",")
	ja := journaltest.OpenConfig(t, journal.Config{URL: urls[0], Replicas: 3})
	jb := journaltest.OpenConfig(t, journal.Config{URL: urls[1], Replicas: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a, err := ingest.OpenRegistry(ctx, ja.Tenants())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := ingest.OpenRegistry(ctx, jb.Tenants())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// Concurrent installs keep the followers busy, so that a replica that
	// has not applied the latest write yet is likely to be asked.
	const writers, each = 16, 25
	var misses atomic.Int64
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				key := fmt.Sprintf("client-%d-%d", w, i)
				if err := a.Put(ctx, ingest.Tenant{ClientKey: key, SharedSecret: "s" + key, BaseURL: "https://x.atlassian.net"}); err != nil {
					t.Error(err)
					return
				}
				got, err := b.Get(ctx, key)
				if err != nil || got.SharedSecret != "s"+key {
					misses.Add(1)
					t.Logf("instance b: Get %s right after a's install: %+v, %v", key, got, err)
				}
			}
		})
	}
	wg.Wait()
	const n = writers * each
	if misses := misses.Load(); misses > 0 {
		t.Errorf("%d of %d tenants installed on instance a were not found by instance b", misses, n)
	}
}
