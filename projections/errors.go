package projections

import (
	"errors"
	"fmt"
)

// These errors can occur when opening or closing a Store.
var (
	// ErrLocked means another process (or another Store in this process)
	// has the file open: bbolt allows one writer, and Open gives up after
	// Options.Timeout instead of waiting for it.
	ErrLocked = errors.New("projections: store is in use by another process")
	// ErrSchema means the file was written by a different version of the
	// schema. Rebuild it from the stream (transferd replay --rebuild).
	ErrSchema = errors.New("projections: store has an incompatible schema; rebuild it")
	// ErrOldSchema (also an ErrSchema) means the file was written by an
	// older version: rebuild it from the stream (Rebuild), which transferd
	// serve does by itself at start. A store is derived data, so a rebuild
	// loses nothing; migrating in place could not, because the new layout
	// holds facts (a transfer's triggeredAt) only the events can give.
	ErrOldSchema = fmt.Errorf("%w (written by an older version)", ErrSchema)
	// ErrClosed is returned by a Store's methods after Close.
	ErrClosed = errors.New("projections: store is closed")
)

// These errors can occur when querying a Store.
var (
	// ErrNotFound means no transfer, migration or lineage has that id.
	ErrNotFound = errors.New("projections: not found")
	// ErrInvalidCursor means a List cursor was not produced by List.
	ErrInvalidCursor = errors.New("projections: invalid cursor")
	// ErrInvalidFilter means a List filter names an unknown phase.
	ErrInvalidFilter = errors.New("projections: invalid filter")
)

// These errors can occur when starting a projector, catching up, or
// rebuilding or verifying a store.
var (
	// ErrRunning means a projector is already running on the store.
	ErrRunning = errors.New("projections: a projector is already running on this store")
	// ErrAhead means the store's checkpoint is past the end of the stream:
	// it was built from another stream (a wiped or different NATS).
	// Rebuild it.
	ErrAhead = errors.New("projections: store is ahead of the stream; rebuild it")
)
