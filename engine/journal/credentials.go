package journal

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"
)

// BucketForgeCredentials keeps, per Forge installation, the newest
// credential for calls back to the platform, sealed by ingest: the journal
// stores and returns bytes it cannot read. It is never replayed, exported
// or folded, and importers on Listen cannot reach it.
const BucketForgeCredentials = "transferd_forge_credentials"

// Credentials is the BucketForgeCredentials bucket, keyed by installation
// id (escaped as transfer ids are for bindings, so any id is a valid key).
// Like Tenants, its Get reads from the bucket stream's leader, so that a
// value another instance has just written is found, and with SyncAlways
// on the embedded server its writes return once on disk. Failures to reach
// the bucket wrap ErrUnavailable, a missing key is ErrNotFound and a lost
// Create or Update race ErrConflict. Its methods are safe for concurrent
// use.
type Credentials struct {
	kv jetstream.KeyValue
}

// CredentialEntry is the latest revision of one installation's value.
type CredentialEntry struct {
	Value    []byte
	Revision uint64
}

// ForgeCredentials returns the Forge credentials bucket.
func (j *Journal) ForgeCredentials() *Credentials {
	return &Credentials{j.durableKV(leaderKV{j.credentials, j.nc, j.cfg.Timeout})}
}

// Get returns the latest value of installation id; ErrNotFound when none
// is stored.
func (c *Credentials) Get(ctx context.Context, id string) (CredentialEntry, error) {
	e, err := c.kv.Get(ctx, bindingKey(id))
	if err != nil {
		return CredentialEntry{}, kvErr("get credential", err)
	}
	return CredentialEntry{Value: e.Value(), Revision: e.Revision()}, nil
}

// Create stores value for id unless one is stored (ErrConflict).
func (c *Credentials) Create(ctx context.Context, id string, value []byte) (uint64, error) {
	rev, err := c.kv.Create(ctx, bindingKey(id), value)
	return rev, kvErr("create credential", err)
}

// Update stores value for id if its latest revision is rev, else
// ErrConflict.
func (c *Credentials) Update(ctx context.Context, id string, value []byte, rev uint64) (uint64, error) {
	rev, err := c.kv.Update(ctx, bindingKey(id), value, rev)
	return rev, kvErr("update credential", err)
}

// Delete forgets id's value.
func (c *Credentials) Delete(ctx context.Context, id string) error {
	return kvErr("delete credential", c.kv.Delete(ctx, bindingKey(id)))
}
