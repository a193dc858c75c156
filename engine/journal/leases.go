package journal

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Lease is one revision of a record in the leases bucket
// (BucketLeases): who holds a piece of work (an importer's upload) until
// when, in a form the caller chooses. Leases are shared by every
// instance on the same NATS and survive restarts; a lease is created
// first-writer-wins (CreateLease) and changed only by compare-and-swap on
// the revision read (UpdateLease), so of two instances acting on the same
// revision exactly one wins.
type Lease struct {
	Value    []byte
	Revision uint64 // 0: no lease is recorded
}

// LeaseKey is the bucket key of the lease on name (any bytes: an upload
// key) within scope (a transfer id).
func LeaseKey(scope, name string) string {
	sum := sha256.Sum256([]byte(name))
	return bindingKey(scope) + "." + hex.EncodeToString(sum[:16])
}

// CreateLease records value as the lease on name within scope unless one
// is recorded, and returns the lease that holds: won reports whether it is
// value, written now. With SyncAlways, a won lease is on disk. Failures
// wrap ErrUnavailable; an empty scope or value is ErrInvalid.
func (j *Journal) CreateLease(ctx context.Context, scope, name string, value []byte) (l Lease, won bool, err error) {
	if scope == "" || len(value) == 0 {
		return Lease{}, false, fmt.Errorf("%w: lease on %q", ErrInvalid, scope)
	}
	key := LeaseKey(scope, name)
	for attempt := 1; ; attempt++ {
		rev, err := j.leaseKV().Create(ctx, key, value)
		if err == nil {
			return Lease{Value: value, Revision: rev}, true, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return Lease{}, false, kvErr("create lease "+key, err)
		}
		l, err := j.getLease(ctx, key)
		if err != nil || l.Revision != 0 || attempt == 8 {
			return l, false, err
		}
		// Deleted between the two calls (expired by the bucket's TTL): create again.
	}
}

// UpdateLease replaces the lease of revision rev on name within scope by
// value, and returns the lease that holds: won reports whether it is
// value, written now; else the one another writer recorded since rev
// (Revision 0 when there is none any more). With SyncAlways, a won lease
// is on disk.
func (j *Journal) UpdateLease(ctx context.Context, scope, name string, value []byte, rev uint64) (l Lease, won bool, err error) {
	if scope == "" || len(value) == 0 || rev == 0 {
		return Lease{}, false, fmt.Errorf("%w: lease on %q", ErrInvalid, scope)
	}
	key := LeaseKey(scope, name)
	n, err := j.leaseKV().Update(ctx, key, value, rev)
	if err == nil {
		return Lease{Value: value, Revision: n}, true, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return Lease{}, false, kvErr("update lease "+key, err)
	}
	l, err = j.getLease(ctx, key)
	return l, false, err
}

// GetLease returns the lease on name within scope, as the bucket stream's
// leader has it; Revision 0 when none is recorded.
func (j *Journal) GetLease(ctx context.Context, scope, name string) (Lease, error) {
	return j.getLease(ctx, LeaseKey(scope, name))
}

func (j *Journal) getLease(ctx context.Context, key string) (Lease, error) {
	e, err := leaderKV{j.leases, j.nc, j.cfg.Timeout}.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return Lease{}, nil
	}
	if err != nil {
		return Lease{}, kvErr("get lease "+key, err)
	}
	return Lease{Value: e.Value(), Revision: e.Revision()}, nil
}

// leaseTTL is the age at which the bucket drops a lease record nobody
// wrote since.
const leaseTTL = 30 * 24 * time.Hour

func (j *Journal) leaseKV() jetstream.KeyValue { return j.durableKV(j.leases) }
