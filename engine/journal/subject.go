package journal

import (
	"github.com/transferd/transferd/engine"
)

// Stream and bucket names (DESIGN §5).
const (
	// StreamEvents holds every accepted event, forever: the source of truth.
	StreamEvents = "MIGRATIONS"
	// StreamTransfers is the feed of changed transfer states.
	StreamTransfers = "TRANSFERS"
	// BucketTenants maps a Connect clientKey to its installation.
	BucketTenants = "transferd_tenants"
	// BucketBindings maps a transfer id to the issuer that first sent an
	// event for it.
	BucketBindings = "transferd_bindings"
)

// Subject prefixes of the two streams.
const (
	eventsPrefix    = "migrations.events."
	transfersPrefix = "migrations.transfers."
)

// EventSubject returns migrations.events.<source>.<transferId>.<kind>, the
// subject an event is appended on.
func EventSubject(src engine.Source, transferID string, kind engine.Kind) string {
	return eventsPrefix + string(src) + "." + transferID + "." + string(kind)
}

// TransferSubject returns migrations.transfers.<transferId>.<phase>, the
// subject a transfer's new state is published on.
func TransferSubject(transferID string, phase engine.Phase) string {
	return transfersPrefix + transferID + "." + string(phase)
}

// TransferEventsFilter returns migrations.events.*.<transferId>.*, the
// filter matching every event of one transfer from either source.
func TransferEventsFilter(transferID string) string {
	return eventsPrefix + "*." + transferID + ".*"
}

// KindFilter returns migrations.events.*.*.<kind>, the filter matching
// every event of one kind.
func KindFilter(kind engine.Kind) string {
	return eventsPrefix + "*.*." + string(kind)
}

// validToken reports whether s can be one token of a subject: non-empty,
// without separators, wildcards, whitespace or control characters.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '.', c == '*', c == '>', c <= ' ', c == 0x7f:
			return false
		}
	}
	return true
}
