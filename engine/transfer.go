package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Transfer is the folded state of one transfer: the facts seen for it and the
// phase they imply. Its JSON encoding (encoding/json over this struct) is
// canonical: the same set of events gives the same bytes in any order.
//
// Every fact is merged so that order cannot matter: booleans are ORed, times
// keep their minimum (trigger, cancellation, settlement, first receipt) or maximum
// (last receipt), uploads are a set keyed by key, and wherever two events
// disagree on a string the lexicographically smallest non-empty value wins,
// field by field (migration details, error, settlement status, upload label,
// originalTransferId, issuer).
//
// transferd's own events (SourceApp, platform-called) merge the same way:
// appSettled keeps the earliest time and, field by field, the smallest
// status and outcome of the settles the platform took (ok, or settled
// already); appSettleFailure keeps the latest failed settle (the greatest
// by time, then outcome, HTTP status and error); progress keeps the
// highest percent accepted. They leave source, phase and the receipt
// times alone: those are the platform's.
type Transfer struct {
	TransferID string `json:"transferId"`
	Source     Source `json:"source"`
	Issuer     string `json:"issuer"`
	Phase      Phase  `json:"phase"`
	// Version counts the distinct events applied, unknown kinds included.
	Version               int            `json:"version"`
	Migration             *Migration     `json:"migration,omitempty"`
	OriginalTransferID    string         `json:"originalTransferId,omitempty"`
	Uploads               []Upload       `json:"uploads"` // sorted by key, never nil
	ExportCompleted       bool           `json:"exportCompleted"`
	Error                 *TransferError `json:"error,omitempty"`
	CancellationRequested bool           `json:"cancellationRequested"`
	// CancellationRequestedAt is the earliest receipt of a cancellation request.
	CancellationRequestedAt *time.Time `json:"cancellationRequestedAt,omitempty"`
	// TriggeredAt is the earliest receipt of a listener-triggered event:
	// the platform's 14-day clock starts at the first trigger.
	TriggeredAt *time.Time  `json:"triggeredAt,omitempty"`
	Settled     *Settlement `json:"settled,omitempty"`
	// AppSettled is transferd's settle as the platform took it.
	AppSettled *AppSettlement `json:"appSettled,omitempty"`
	// AppSettleFailure is the latest settle that did not go through.
	AppSettleFailure *AppCallFailure `json:"appSettleFailure,omitempty"`
	// Progress is the highest progress the platform accepted from transferd.
	Progress *Progress `json:"progress,omitempty"`
	// ForgeAcks are the Forge messages transferd acknowledged (message
	// status taken by the platform): messageId → SUCCESS or FAILED.
	ForgeAcks       map[string]string `json:"forgeAcks,omitempty"`
	FirstReceivedAt time.Time         `json:"firstReceivedAt"`
	LastReceivedAt  time.Time         `json:"lastReceivedAt"`

	// applied remembers the identities this value has applied. It is not
	// encoded: whoever persists a Transfer persists the identities too
	// (package projections keeps them next to it).
	applied map[string]struct{}
}

// Settlement is the platform's final word on a transfer.
type Settlement struct {
	// Status is SUCCESS, FAILED, INCOMPLETE, TIMED_OUT… when the payload names one.
	Status string    `json:"status,omitempty"`
	At     time.Time `json:"at"` // earliest receipt of a transfer-settled event
}

// AppSettlement is transferd's settle of the transfer, as the platform
// answered it.
type AppSettlement struct {
	Status string    `json:"status"` // SUCCESS, FAILED or INCOMPLETE, as sent
	At     time.Time `json:"at"`     // when the call ended
	// Outcome is ok (accepted) or settled (refused as settled already:
	// after a lost reply, the first attempt had landed).
	Outcome string `json:"outcome"`
}

// AppCallFailure is a platform call that did not go through.
type AppCallFailure struct {
	Status     string    `json:"status,omitempty"` // what was sent
	Outcome    string    `json:"outcome"`          // rejected, exhausted or invalid
	HTTPStatus int       `json:"httpStatus,omitempty"`
	Error      string    `json:"error,omitempty"`
	At         time.Time `json:"at"`
}

// Progress is the progress the platform accepted from transferd.
type Progress struct {
	Percent int `json:"percent"`
}

// NewTransfer returns the empty, pending transfer id.
func NewTransfer(id string) *Transfer {
	return &Transfer{TransferID: id, Phase: PhasePending, Uploads: []Upload{}}
}

// NeedsAction is what the partner must do: "settle" when the transfer errored
// or its cancellation was requested and neither the platform nor transferd
// has settled it yet, else "".
func (t *Transfer) NeedsAction() string {
	if t.Settled == nil && t.AppSettled == nil && (t.Error != nil || t.Phase == PhaseListenerErrored || t.CancellationRequested) {
		return "settle"
	}
	return ""
}

// Deadlines are the platform's limits for a transfer.
type Deadlines struct {
	// SettleBy is 60 minutes after the cancellation request.
	SettleBy *time.Time `json:"settleBy,omitempty"`
	// TimesOutAt is 14 days after the first trigger; the platform then
	// settles the transfer as TIMED_OUT. Before a listener-triggered event
	// is seen it is 14 days after the migration's createdAt, which is never
	// later than the trigger (so the estimate errs early); with neither it
	// is omitted. A re-run or a migration planned long ago keeps its own
	// trigger's clock, not the plan's.
	TimesOutAt *time.Time `json:"timesOutAt,omitempty"`
}

// The platform's deadlines (reference §3).
const (
	CancellationGrace = 60 * time.Minute
	TransferTimeout   = 14 * 24 * time.Hour
)

// Deadlines derives t's deadlines from its facts. A deadline that JSON
// cannot represent (after year 9999) is omitted, never computed past it.
func (t *Transfer) Deadlines() Deadlines {
	var d Deadlines
	if t.CancellationRequestedAt != nil {
		d.SettleBy = deadline(*t.CancellationRequestedAt, CancellationGrace)
	}
	switch {
	case t.TriggeredAt != nil:
		d.TimesOutAt = deadline(*t.TriggeredAt, TransferTimeout)
	case t.Migration != nil && !t.Migration.CreatedAt.IsZero():
		d.TimesOutAt = deadline(t.Migration.CreatedAt, TransferTimeout)
	}
	return d
}

// deadline is from+d, or nil when the result is not representable.
func deadline(from time.Time, d time.Duration) *time.Time {
	if !Representable(from) {
		return nil
	}
	at := from.Add(d)
	if !Representable(at) || at.Before(from) {
		return nil
	}
	return &at
}

// The range of times that encoding/json (RFC 3339) can write: years 0000
// to 9999 in UTC.
var (
	minRepresentable = time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)
	maxRepresentable = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)
)

// Representable reports whether t can be encoded as JSON (RFC 3339): its
// year is 0 to 9999 in UTC.
func Representable(t time.Time) bool {
	t = t.UTC()
	return !t.Before(minRepresentable) && !t.After(maxRepresentable)
}

// ErrUnfoldable marks an event that no transfer can fold (see Foldable).
var ErrUnfoldable = errors.New("engine: event cannot be folded")

// Foldable reports whether e can be folded: every time it carries, and the
// deadlines derived from it (up to 14 days later), must be representable in
// JSON. It depends on
// e alone, so that whether an event is folded never depends on the order
// of events. Apply ignores an event that is not foldable; the projector
// parks it instead (keeps it aside, visible, and goes on).
func Foldable(e *Event) error {
	if e.Unparsable != "" {
		return fmt.Errorf("%w: payload no longer parses: %s", ErrUnfoldable, e.Unparsable)
	}
	if !e.ReceivedAt.IsZero() && deadline(e.ReceivedAt, TransferTimeout) == nil {
		return fmt.Errorf("%w: receivedAt %s is out of range", ErrUnfoldable, e.ReceivedAt.UTC().Format(time.RFC3339Nano))
	}
	if r := e.Report; r != nil && deadline(r.At, TransferTimeout) == nil {
		return fmt.Errorf("%w: report at %s is out of range", ErrUnfoldable, r.At.UTC().Format(time.RFC3339Nano))
	}
	if c := e.Call; c != nil && deadline(c.At, TransferTimeout) == nil {
		return fmt.Errorf("%w: call at %s is out of range", ErrUnfoldable, c.At.UTC().Format(time.RFC3339Nano))
	}
	if m := e.Migration; m != nil && !m.CreatedAt.IsZero() && deadline(m.CreatedAt, TransferTimeout) == nil {
		return fmt.Errorf("%w: migration createdAt %s is out of range (its 14-day deadline is not representable)",
			ErrUnfoldable, m.CreatedAt.UTC().Format(time.RFC3339Nano))
	}
	return nil
}

// View is a transfer as the query API shows it: its facts plus what is
// derived from them (never stored).
type View struct {
	*Transfer
	NeedsAction *string   `json:"needsAction"` // "settle" or null
	Deadlines   Deadlines `json:"deadlines"`
}

// View returns t with its derived fields.
func (t *Transfer) View() View {
	v := View{Transfer: t, Deadlines: t.Deadlines()}
	if a := t.NeedsAction(); a != "" {
		v.NeedsAction = &a
	}
	return v
}

// MarshalCanonical returns t's canonical JSON encoding. It panics where
// EncodeCanonical fails: use it only for transfers folded from Foldable
// events.
func (t *Transfer) MarshalCanonical() []byte {
	b, err := t.EncodeCanonical()
	if err != nil {
		panic(err.Error())
	}
	return b
}

// EncodeCanonical returns t's canonical JSON encoding. It fails only for a
// time JSON cannot represent, which folding Foldable events never
// produces.
func (t *Transfer) EncodeCanonical() ([]byte, error) {
	b, err := json.Marshal(t)
	if err != nil {
		return nil, fmt.Errorf("engine: encoding transfer %s: %w", t.TransferID, err)
	}
	return b, nil
}

// UnmarshalTransfer decodes a canonical encoding. The result does not
// remember which identities were applied.
func UnmarshalTransfer(b []byte) (*Transfer, error) {
	t := new(Transfer)
	if err := json.Unmarshal(b, t); err != nil {
		return nil, err
	}
	if t.Uploads == nil {
		t.Uploads = []Upload{}
	}
	return t, nil
}

// NearWindow is how close to its 14-day limit (timesOutAt) an unsettled
// transfer counts as near its deadline by default; a pending cancellation
// (settleBy, an hour) always does.
const NearWindow = 24 * time.Hour

// NearDeadline returns the deadline t is near or past at now, if any: t
// is settled neither by the platform nor by transferd, and it has a
// pending cancellation (name "settleBy") or its timesOutAt is within
// window of now (name "timesOutAt"); the earlier when both are.
func (t *Transfer) NearDeadline(now time.Time, window time.Duration) (name string, at time.Time, ok bool) {
	if t.Settled != nil || t.AppSettled != nil {
		return "", time.Time{}, false
	}
	dl := t.Deadlines()
	if dl.SettleBy != nil {
		name, at = "settleBy", *dl.SettleBy
	}
	if dl.TimesOutAt != nil && dl.TimesOutAt.Sub(now) <= window && (name == "" || dl.TimesOutAt.Before(at)) {
		name, at = "timesOutAt", *dl.TimesOutAt
	}
	return name, at, name != ""
}
