package journal_test

import (
	"errors"
	"testing"

	"github.com/transferd/transferd/engine/journal"
	"github.com/transferd/transferd/engine/journal/journaltest"
)

// The Forge credentials bucket takes any installation id as a key (ids
// hold ':' and '/', which bucket keys do not), keeps the latest revision,
// refuses lost races, and what one journal writes another on the same
// NATS reads at once.
func TestForgeCredentialsBucket(t *testing.T) {
	url := journaltest.Server(t)
	a := journaltest.OpenConfig(t, journal.Config{URL: url})
	b := journaltest.OpenConfig(t, journal.Config{URL: url})
	ctx := testContext(t)
	const inst = "ari:cloud:ecosystem::installation/11111111-2222-4333-8444-555555555555"
	ca, cb := a.ForgeCredentials(), b.ForgeCredentials()
	if _, err := ca.Get(ctx, inst); !errors.Is(err, journal.ErrNotFound) {
		t.Fatalf("Get of a missing id: %v", err)
	}
	rev, err := ca.Create(ctx, inst, []byte("sealed-1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cb.Create(ctx, inst, []byte("sealed-x")); !errors.Is(err, journal.ErrConflict) {
		t.Errorf("Create of an existing id: %v", err)
	}
	if e, err := cb.Get(ctx, inst); err != nil || string(e.Value) != "sealed-1" || e.Revision != rev {
		t.Fatalf("the other journal's Get = %+v, %v", e, err)
	}
	rev2, err := cb.Update(ctx, inst, []byte("sealed-2"), rev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Update(ctx, inst, []byte("sealed-y"), rev); !errors.Is(err, journal.ErrConflict) {
		t.Errorf("Update at a stale revision: %v", err)
	}
	if e, err := ca.Get(ctx, inst); err != nil || string(e.Value) != "sealed-2" || e.Revision != rev2 {
		t.Errorf("Get after the update = %+v, %v", e, err)
	}
	if _, err := ca.Get(ctx, inst+"x"); !errors.Is(err, journal.ErrNotFound) {
		t.Errorf("another id: %v", err)
	}
	if err := ca.Delete(ctx, inst); err != nil {
		t.Fatal(err)
	}
	if _, err := cb.Get(ctx, inst); !errors.Is(err, journal.ErrNotFound) {
		t.Errorf("Get after Delete: %v", err)
	}
	if _, err := ca.Get(ctx, ""); !errors.Is(err, journal.ErrInvalid) {
		t.Errorf("Get of an empty id: %v", err)
	}
}

// With SyncAlways the bucket is one of the syncer's streams: its writes
// return once synced.
func TestForgeCredentialsSyncAlways(t *testing.T) {
	j := journaltest.OpenConfig(t, journal.Config{SyncAlways: true})
	ctx := testContext(t)
	c := j.ForgeCredentials()
	rev, err := c.Create(ctx, "inst/1", []byte("v1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Update(ctx, "inst/1", []byte("v2"), rev); err != nil {
		t.Fatal(err)
	}
	if e, err := c.Get(ctx, "inst/1"); err != nil || string(e.Value) != "v2" {
		t.Errorf("Get = %+v, %v", e, err)
	}
}
