package ingest_test

import (
	"context"
	"errors"
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

// TestRegistrySealsSecrets: with secrets keys, the raw bucket value holds
// no shared secret; a registry with the wrong key refuses to open, saying
// why; a plaintext record is read and sealed by Rekey; after a rotation
// the old key still opens until Rekey seals every record with the new one.
func TestRegistrySealsSecrets(t *testing.T) {
	j := journaltest.Open(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mustKeys := func(text string) *ingest.SecretKeys {
		k, err := ingest.ParseSecretKeys(text)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	oldKey, newKey := ingest.NewSecretKey(), ingest.NewSecretKey()
	raw := func(clientKey string) string {
		e, err := j.Tenants().Get(ctx, clientKey)
		if err != nil {
			t.Fatal(err)
		}
		return string(e.Value)
	}

	// A plaintext record, as stored before keys were configured.
	plain, err := ingest.OpenRegistry(ctx, j.Tenants())
	if err != nil {
		t.Fatal(err)
	}
	if err := plain.Put(ctx, ingest.Tenant{ClientKey: "legacy", SharedSecret: "legacy-secret-123"}); err != nil {
		t.Fatal(err)
	}
	plain.Close()

	reg, err := ingest.OpenRegistry(ctx, j.Tenants(), ingest.WithSecretKeys(mustKeys(oldKey)))
	if err != nil {
		t.Fatal(err)
	}
	if s, err := reg.SharedSecret(ctx, "legacy"); err != nil || string(s) != "legacy-secret-123" {
		t.Fatalf("plaintext record: %q, %v", s, err)
	}
	if err := reg.Put(ctx, ingest.Tenant{ClientKey: "c1", SharedSecret: "top-secret-c1"}); err != nil {
		t.Fatal(err)
	}
	if v := raw("c1"); strings.Contains(v, "top-secret-c1") || !strings.Contains(v, "sealedSecret") {
		t.Errorf("stored record holds the secret: %s", v)
	}
	if n, err := reg.Rekey(ctx); err != nil || n != 1 {
		t.Errorf("Rekey sealed %d records, %v; want the plaintext one", n, err)
	}
	if v := raw("legacy"); strings.Contains(v, "legacy-secret-123") {
		t.Errorf("plaintext record not sealed by Rekey: %s", v)
	}
	reg.Close()

	// The wrong key (or none) fails clearly.
	for name, opts := range map[string][]ingest.RegistryOption{
		"wrong key": {ingest.WithSecretKeys(mustKeys(newKey))},
		"no key":    nil,
	} {
		_, err := ingest.OpenRegistry(ctx, j.Tenants(), opts...)
		if !errors.Is(err, ingest.ErrSecretKey) {
			t.Errorf("%s: OpenRegistry = %v, want ErrSecretKey", name, err)
		}
	}

	// Rotation: the new key seals, the old one still opens; Rekey moves
	// every record to the new key, after which the old key can go.
	reg, err = ingest.OpenRegistry(ctx, j.Tenants(), ingest.WithSecretKeys(mustKeys(newKey+"\n"+oldKey)))
	if err != nil {
		t.Fatal(err)
	}
	if s, err := reg.SharedSecret(ctx, "c1"); err != nil || string(s) != "top-secret-c1" {
		t.Fatalf("after rotation: %q, %v", s, err)
	}
	if n, err := reg.Rekey(ctx); err != nil || n != 2 {
		t.Errorf("Rekey after rotation: %d, %v; want 2", n, err)
	}
	reg.Close()
	reg, err = ingest.OpenRegistry(ctx, j.Tenants(), ingest.WithSecretKeys(mustKeys(newKey)))
	if err != nil {
		t.Fatalf("new key alone after Rekey: %v", err)
	}
	defer reg.Close()
	for ck, want := range map[string]string{"c1": "top-secret-c1", "legacy": "legacy-secret-123"} {
		if s, err := reg.SharedSecret(ctx, ck); err != nil || string(s) != want {
			t.Errorf("%s with the new key: %q, %v", ck, s, err)
		}
	}
}
