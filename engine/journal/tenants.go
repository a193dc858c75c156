package journal

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// Tenants is the transferd_tenants bucket: Connect installations by key.
// With SyncAlways on the embedded server its writes return once on disk.
// Its Get reads from the bucket stream's leader, so that a tenant another
// instance has just installed is found (see leaderKV). Failures to reach
// the bucket wrap ErrUnavailable. Its methods are safe for concurrent use.
type Tenants struct {
	kv jetstream.KeyValue
}

// TenantEntry is one revision of a key in Tenants.
type TenantEntry struct {
	Key      string
	Value    []byte // nil when Deleted
	Revision uint64
	// Deleted reports a delete or purge of the key (from Watch only: Get
	// returns ErrNotFound for a deleted key).
	Deleted bool
}

// Tenants returns the tenants bucket.
func (j *Journal) Tenants() *Tenants {
	return &Tenants{j.durableKV(leaderKV{j.tenants, j.nc, j.cfg.Timeout})}
}

func (j *Journal) durableKV(kv jetstream.KeyValue) jetstream.KeyValue {
	if j.syncer == nil {
		return kv
	}
	return durableKV{kv, j.syncer}
}

// Get returns the latest revision of key; ErrNotFound when it was never
// written or is deleted.
func (t *Tenants) Get(ctx context.Context, key string) (TenantEntry, error) {
	e, err := t.kv.Get(ctx, key)
	if err != nil {
		return TenantEntry{}, kvErr("get tenant "+key, err)
	}
	return tenantEntry(e), nil
}

// Put stores value under key and returns its revision.
func (t *Tenants) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	rev, err := t.kv.Put(ctx, key, value)
	return rev, kvErr("put tenant "+key, err)
}

// Create stores value under key unless the key holds a value (ErrConflict).
func (t *Tenants) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	rev, err := t.kv.Create(ctx, key, value)
	return rev, kvErr("create tenant "+key, err)
}

// Update stores value under key if its latest revision is rev, else
// ErrConflict.
func (t *Tenants) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	rev, err := t.kv.Update(ctx, key, value, rev)
	return rev, kvErr("update tenant "+key, err)
}

// Delete deletes key.
func (t *Tenants) Delete(ctx context.Context, key string) error {
	return kvErr("delete tenant "+key, t.kv.Delete(ctx, key))
}

// Keys returns the keys that hold a value, in no particular order.
func (t *Tenants) Keys(ctx context.Context) ([]string, error) {
	keys, err := t.kv.Keys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, nil
	}
	return keys, kvErr("list tenants", err)
}

// Watch follows every key: first the latest revision of each (deleted
// ones included), then nil, then each change as it is written, until Stop.
// ctx bounds setting the watch up only.
func (t *Tenants) Watch(ctx context.Context) (*TenantWatcher, error) {
	w, err := t.kv.WatchAll(ctx)
	if err != nil {
		return nil, kvErr("watch tenants", err)
	}
	tw := &TenantWatcher{w: w, updates: make(chan *TenantEntry), stop: make(chan struct{})}
	go tw.run()
	return tw, nil
}

// TenantWatcher is a watch of Tenants.
type TenantWatcher struct {
	w       jetstream.KeyWatcher
	updates chan *TenantEntry
	stop    chan struct{}
	once    sync.Once
}

// Updates returns the entries: the latest of each key, nil once they are
// all delivered, then the changes. It is closed after Stop.
func (w *TenantWatcher) Updates() <-chan *TenantEntry { return w.updates }

// Stop ends the watch and closes Updates. Stop is idempotent.
func (w *TenantWatcher) Stop() {
	w.once.Do(func() {
		close(w.stop)
		_ = w.w.Stop()
	})
}

func (w *TenantWatcher) run() {
	defer close(w.updates)
	in := w.w.Updates()
	for e := range in {
		var te *TenantEntry
		if e != nil {
			v := tenantEntry(e)
			te = &v
		}
		select {
		case w.updates <- te:
		case <-w.stop:
			for range in { // until the subscription has closed it
			}
			return
		}
	}
}

func tenantEntry(e jetstream.KeyValueEntry) TenantEntry {
	te := TenantEntry{Key: e.Key(), Revision: e.Revision(), Deleted: e.Operation() != jetstream.KeyValuePut}
	if !te.Deleted {
		te.Value = e.Value()
	}
	return te
}

// kvErr maps a bucket failure onto the journal's errors; nil stays nil.
func kvErr(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
		return fmt.Errorf("journal: %s: %w", op, ErrNotFound)
	case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		return fmt.Errorf("journal: %s: %w: %w", op, ErrConflict, err)
	case errors.Is(err, jetstream.ErrInvalidKey):
		return fmt.Errorf("journal: %s: %w: %w", op, ErrInvalid, err)
	case errors.Is(err, ErrUnavailable): // a sync of the bucket failed
		return fmt.Errorf("journal: %s: %w", op, err)
	}
	return unavailable(op, err)
}
