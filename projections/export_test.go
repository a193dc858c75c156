package projections

import (
	"context"

	bolt "go.etcd.io/bbolt"

	"github.com/transferd/transferd/engine"
)

// RebuildMaxBatch is a rebuild's batch, for the benchmark's read ceiling.
const RebuildMaxBatch = rebuildMaxBatch

// WithBeforeApply returns opts calling fn before each event is applied,
// for injecting faults.
func WithBeforeApply(opts ProjectorOptions, fn func(*engine.Event)) ProjectorOptions {
	opts.beforeApply = fn
	return opts
}

// WithFeedSync returns opts whose feed calls fn instead of syncing the
// states it published; fn may call sync, the real one.
func WithFeedSync(opts ProjectorOptions, fn func(ctx context.Context, sync func(context.Context) error) error) ProjectorOptions {
	opts.feedSync = fn
	return opts
}

// CompareStores compares two stores as Verify compares a live store with
// its rebuild.
func CompareStores(a, b *Store) ([]Diff, error) {
	var diffs []Diff
	err := a.view(func(atx *bolt.Tx) error {
		return b.view(func(btx *bolt.Tx) error {
			diffs = compare(atx, btx)
			return nil
		})
	})
	return diffs, err
}

// Outbox returns the store's outbox as row → version.
func Outbox(s *Store) map[uint64]uint64 {
	out := map[uint64]uint64{}
	_ = s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOutbox).ForEach(func(k, v []byte) error {
			out[getU64(k)] = getU64(v)
			return nil
		})
	})
	return out
}

// Release lets s's mapped pages go from the process's resident set, as a
// rebuild does as its file grows.
func Release(s *Store) { s.release(0, 0) }

// WithRuns returns opts folding batches of maxBatch events in runs of up
// to runEvents per transaction, as a rebuild does.
func WithRuns(opts ProjectorOptions, maxBatch, runEvents int) ProjectorOptions {
	opts.MaxBatch, opts.runEvents = maxBatch, runEvents
	return opts
}
