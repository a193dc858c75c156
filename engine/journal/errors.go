package journal

import (
	"errors"
	"fmt"
)

// These errors can occur when appending or publishing a message, or when
// reading from the journal.
var (
	// ErrUnavailable means the journal could not be reached or did not
	// acknowledge in time: the server is down, the connection is closed or
	// reconnecting, there are no responders, or the context ended first.
	// The caller may retry later (HTTP 503). A message whose append failed
	// with ErrUnavailable may still have been stored; retrying it with the
	// same ID is safe within the stream's duplicate window.
	ErrUnavailable = errors.New("journal unavailable")

	// ErrTooLarge means the encoded message exceeds the server's maximum
	// payload; retrying will not help.
	ErrTooLarge = errors.New("journal: message too large")

	// ErrInvalid means the event cannot be routed: its ID is empty, its
	// source unknown, or its transfer id or kind is not a single subject
	// token; or a bucket key is not valid.
	ErrInvalid = errors.New("journal: invalid event")
)

// These errors can occur on a key of a bucket (Tenants, Owner).
var (
	// ErrNotFound means the key was never written, or was deleted.
	ErrNotFound = errors.New("journal: key not found")

	// ErrConflict means Tenants.Create found the key already written, or
	// Tenants.Update found it changed since the revision it was given.
	ErrConflict = errors.New("journal: key exists or changed")
)

// ErrInUse is returned by Open when another journal, in this process or
// another, runs an embedded server on the same data directory.
var ErrInUse = errors.New("journal: data directory in use")

// These errors can occur when decoding a stored message.
var (
	// ErrMalformed means a stored message is not a version 1 envelope.
	ErrMalformed = errors.New("journal: malformed envelope")

	// ErrUnparsable means an envelope's payload no longer parses under the
	// engine's current rules; see Envelope.Event.
	ErrUnparsable = errors.New("journal: payload no longer parses")

	// ErrStopped is returned by Reader.Next after Reader.Stop.
	ErrStopped = errors.New("journal: reader stopped")
)

// CorruptError reports a message in the stream that does not decode. A
// Reader skips it and stays usable.
type CorruptError struct {
	Seq uint64 // the message's stream sequence
	Err error  // why it does not decode; wraps ErrMalformed
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("journal: message %d: %v", e.Seq, e.Err)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// unavailable wraps err so that errors.Is matches both ErrUnavailable and
// the cause.
func unavailable(op string, err error) error {
	return fmt.Errorf("journal: %s: %w: %w", op, ErrUnavailable, err)
}
