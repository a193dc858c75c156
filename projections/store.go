package projections

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/transferd/transferd/engine"
)

// Options configures Open. The zero value opens for reading and writing
// and gives up after a second if another process has the file.
type Options struct {
	// Timeout bounds the wait for the file lock; default 1 second. A
	// second transferd on the same data directory then fails fast with
	// ErrLocked instead of hanging.
	Timeout time.Duration
	// ReadOnly opens the file under a shared lock for queries only (the
	// CLI's "transfers get" while no server runs, Verify). The file must
	// exist.
	ReadOnly bool

	// SyncCommits syncs the file at every commit, as where the machine has
	// no boot id. By default a store open for writing commits without
	// syncing and is rebuilt should the machine go down meanwhile (see
	// ErrUnsynced).
	SyncCommits bool

	// noSync skips fsync on commit, with no mark. Only for files that are
	// not live until they have been synced and renamed into place
	// (Rebuild, Verify).
	noSync bool
}

// DefaultTimeout is Options.Timeout's default.
const DefaultTimeout = time.Second

// mmapSize is the initial memory map: large enough that the map rarely
// has to grow (growing waits for every read transaction to end), and free
// until the file actually fills it.
const mmapSize = 1 << 30

// Store is the read side's bbolt file: transfers, indexes, lineage,
// applied event identities and the checkpoint. Its methods are safe for
// concurrent use; queries read a consistent snapshot while a projector
// writes.
type Store struct {
	db   *bolt.DB
	path string

	projecting atomic.Bool   // a Projector owns the write side
	commits    atomic.Uint64 // batches a Projector committed, since Open

	unsynced bool // commits are not synced; Close syncs and clears the mark
	closed   atomic.Bool

	mu         sync.Mutex
	checkpoint uint64
	advanced   chan struct{} // closed and replaced whenever checkpoint advances
}

// Open opens or creates the store at path (mode 0600). A new file gets the
// current schema; an existing one must have it: ErrOldSchema for an
// older one, ErrSchema for any other. A file left with unsynced commits
// by an earlier boot of the machine is ErrUnsynced (see unsynced.go). If
// another process holds the file, Open fails with ErrLocked after
// opts.Timeout.
func Open(path string, opts Options) (*Store, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if err := checkUnsynced(path); err != nil {
		return nil, err
	}
	boot := ""
	if !opts.ReadOnly && !opts.noSync && !opts.SyncCommits {
		boot = bootID()
	}
	bopts := &bolt.Options{
		Timeout:  opts.Timeout,
		ReadOnly: opts.ReadOnly,
		NoSync:   opts.noSync || boot != "",
		// The freelist is rebuilt by scanning the file when it is opened
		// after a crash instead of being written at every commit; the
		// data and meta pages are still synced, so a commit is durable.
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	}
	if !opts.ReadOnly {
		bopts.InitialMmapSize = mmapSize
	} else if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("projections: open %s: %w", path, err)
	}
	db, err := bolt.Open(path, 0o600, bopts)
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("%w: %s (lock not obtained within %v)", ErrLocked, path, opts.Timeout)
		}
		return nil, fmt.Errorf("projections: open %s: %w", path, err)
	}
	s := &Store{db: db, path: path, advanced: make(chan struct{}), unsynced: boot != ""}
	if s.unsynced {
		// Holding the lock, before the first unsynced commit.
		if err := markUnsynced(path, boot); err != nil {
			db.Close()
			return nil, err
		}
	}
	if opts.ReadOnly {
		err = db.View(s.checkSchema)
	} else {
		err = db.Update(s.initSchema)
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// initSchema creates the buckets of a new file, or checks an existing one.
func (s *Store) initSchema(tx *bolt.Tx) error {
	if tx.Bucket(bucketMeta) == nil {
		for _, name := range buckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("projections: create bucket %s: %w", name, err)
			}
		}
		return tx.Bucket(bucketMeta).Put(metaSchema, u64(schemaVersion))
	}
	if err := s.checkSchema(tx); err != nil {
		return err
	}
	for _, name := range buckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("projections: create bucket %s: %w", name, err)
		}
	}
	return nil
}

func (s *Store) checkSchema(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return fmt.Errorf("%w: %s has no meta bucket", ErrSchema, s.path)
	}
	if v := getU64(meta.Get(metaSchema)); v < schemaVersion {
		return fmt.Errorf("%w: %s has schema %d, this version reads %d", ErrOldSchema, s.path, v, schemaVersion)
	} else if v != schemaVersion {
		return fmt.Errorf("%w: %s has schema %d, this version reads %d", ErrSchema, s.path, v, schemaVersion)
	}
	for _, name := range buckets {
		if tx.Bucket(name) == nil && !optional(name) {
			return fmt.Errorf("%w: %s has no %s bucket", ErrSchema, s.path, name)
		}
	}
	s.checkpoint = getU64(meta.Get(metaCheckpoint))
	return nil
}

// Close closes the file. Stop the store's projector first. Close is
// idempotent.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	var err error
	if s.unsynced {
		err = s.db.Sync()
	}
	if cerr := s.db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("projections: close %s: %w", s.path, err)
	}
	if s.unsynced {
		return clearUnsynced(s.path)
	}
	return nil
}

// Path returns the file's path.
func (s *Store) Path() string { return s.path }

// Checkpoint returns the sequence of the last MIGRATIONS message the store
// reflects: every event up to it is applied, none after it.
// Commits is how many batches projectors committed to the store since it
// was opened: one bbolt transaction each. The events applied over the same
// time divided by it is the mean batch, which grows under load.
func (s *Store) Commits() uint64 { return s.commits.Load() }

func (s *Store) Checkpoint() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.checkpoint
}

// Wait blocks until the checkpoint reaches seq or ctx ends. After a
// successful append with sequence N, Wait(ctx, N) gives read-your-writes.
func (s *Store) Wait(ctx context.Context, seq uint64) error {
	for {
		s.mu.Lock()
		cp, ch := s.checkpoint, s.advanced
		s.mu.Unlock()
		if cp >= seq {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("projections: waiting for sequence %d (at %d): %w", seq, cp, ctx.Err())
		}
	}
}

// advance records a committed checkpoint and wakes Wait.
func (s *Store) advance(cp uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cp > s.checkpoint {
		s.checkpoint = cp
		close(s.advanced)
		s.advanced = make(chan struct{})
	}
}

// Check runs bbolt's consistency check over the whole file and returns the
// first problem found.
func (s *Store) Check() error {
	return s.view(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return fmt.Errorf("projections: %s: %w", s.path, err)
		}
		return nil
	})
}

// Stats summarises a store, for metrics and the CLI.
type Stats struct {
	// Checkpoint is the last MIGRATIONS sequence applied.
	Checkpoint uint64
	// LastEventAt is the receive time of the last event applied (zero for
	// an empty store).
	LastEventAt time.Time
	// Transfers counts the transfers.
	Transfers uint64
	// Events counts the distinct events applied.
	Events uint64
	// Duplicates counts events skipped because their identity was already
	// applied to their transfer (re-deliveries that JetStream's duplicate
	// window did not catch).
	Duplicates uint64
	// Unparsable counts events whose payload no longer parses; they are
	// applied as unknown events.
	Unparsable uint64
	// Corrupt counts stream messages that are not envelopes; they are
	// skipped.
	Corrupt uint64
	// Parked counts the events the projector could not fold (see
	// Store.Parked).
	Parked uint64
	// Phases counts the transfers in each phase.
	Phases map[engine.Phase]uint64
	// NeedsAction counts the transfers that need the partner to act.
	NeedsAction uint64
	// FeedPending counts changed transfers whose new state the TRANSFERS
	// feed has not confirmed yet.
	FeedPending int
	// Size is the file's size in bytes.
	Size int64
}

// Stats returns the store's counters.
func (s *Store) Stats() (Stats, error) {
	var st Stats
	err := s.view(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		st.Checkpoint = getU64(meta.Get(metaCheckpoint))
		if ns := getU64(meta.Get(metaLastEventAt)); ns != 0 {
			st.LastEventAt = time.Unix(0, int64(ns)).UTC()
		}
		st.Transfers = getU64(meta.Get(metaTransfers))
		st.Events = getU64(meta.Get(metaEvents))
		st.Duplicates = getU64(meta.Get(metaDuplicates))
		st.Unparsable = getU64(meta.Get(metaUnparsable))
		st.Corrupt = getU64(meta.Get(metaCorrupt))
		st.Parked = getU64(meta.Get(metaParked))
		st.NeedsAction = getU64(meta.Get(metaNeedsAction))
		st.Phases = make(map[engine.Phase]uint64, len(engine.Phases))
		for _, p := range engine.Phases {
			st.Phases[p] = getU64(meta.Get(metaPhase(p)))
		}
		st.FeedPending = tx.Bucket(bucketOutbox).Stats().KeyN
		st.Size = tx.Size()
		return nil
	})
	return st, err
}

// view runs fn in a read transaction, translating a closed database.
func (s *Store) view(fn func(*bolt.Tx) error) error {
	err := s.db.View(fn)
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

// update runs fn in a write transaction, translating a closed database.
func (s *Store) update(fn func(*bolt.Tx) error) error {
	err := s.db.Update(fn)
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}
