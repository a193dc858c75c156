package journal

import (
	"strings"

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
	// BucketBindings holds the driver's claims (Claim). It once mapped
	// each transfer id to its owner; the owner is now the first event's
	// (Owner), and those keys are no longer read.
	BucketBindings = "transferd_bindings"
	// BucketLeases holds the importers' work leases (see Lease).
	BucketLeases = "transferd_leases"
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

// EventFilter returns migrations.events.*.<transferId>.<kind>, the filter
// matching the events of one transfer, of one kind, or both; an empty
// argument matches any. With both empty it is "", every event.
func EventFilter(transferID string, kind engine.Kind) string {
	if transferID == "" && kind == "" {
		return ""
	}
	return eventsPrefix + "*." + orAny(transferID) + "." + orAny(string(kind))
}

// TransferFilter returns migrations.transfers.<transferId>.<phase>, the
// filter matching the states of one transfer, in one phase, or both; an
// empty argument matches any. With both empty it is "", every state.
func TransferFilter(transferID string, phase engine.Phase) string {
	if transferID == "" && phase == "" {
		return ""
	}
	return transfersPrefix + orAny(transferID) + "." + orAny(string(phase))
}

// ParseTransferSubject returns the transfer id and phase of a
// TransferSubject; ok is false for any other subject.
func ParseTransferSubject(subject string) (transferID string, phase engine.Phase, ok bool) {
	rest, ok := strings.CutPrefix(subject, transfersPrefix)
	if !ok {
		return "", "", false
	}
	i := strings.LastIndexByte(rest, '.')
	if i <= 0 || i == len(rest)-1 {
		return "", "", false
	}
	return rest[:i], engine.Phase(rest[i+1:]), true
}

// ParseEventSubject returns the source, transfer id and kind of an
// EventSubject; ok is false for any other subject.
func ParseEventSubject(subject string) (src engine.Source, transferID string, kind engine.Kind, ok bool) {
	rest, ok := strings.CutPrefix(subject, eventsPrefix)
	if !ok {
		return "", "", "", false
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return "", "", "", false
	}
	return engine.Source(parts[0]), parts[1], engine.Kind(parts[2]), true
}

// orAny is s, or the wildcard * when s is empty.
func orAny(s string) string {
	if s == "" {
		return "*"
	}
	return s
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
