package engine

import (
	"encoding/json"
	"strings"
	"time"
)

// Source is the delivery channel an event arrived through. It is the
// <source> token of the event's subject.
type Source string

// The sources of events. SourceConnect and SourceForge are the platform's
// deliveries, the only ones ingest accepts over HTTP; SourceApp is
// transferd itself acting as the partner's app (its calls to the platform
// and their answers), written only by transferd (package ingest/driver).
const (
	SourceConnect Source = "connect"
	SourceForge   Source = "forge"
	SourceApp     Source = "app"
)

// Valid reports whether s is one of the known sources.
func (s Source) Valid() bool { return s == SourceConnect || s == SourceForge || s == SourceApp }

// Kind is the canonical event kind, the same for both sources.
type Kind string

// The canonical kinds (DESIGN §3). KindUnknown covers every eventType the
// engine does not know: such events are stored and shown, never folded into
// a phase.
const (
	KindListenerTriggered     Kind = "listener-triggered"
	KindAppDataUploaded       Kind = "app-data-uploaded"
	KindEventFileListUploaded Kind = "event-file-list-uploaded"
	KindExportPhaseCompleted  Kind = "export-phase-completed"
	KindListenerErrored       Kind = "listener-errored"
	KindCancellationRequested Kind = "transfer-cancellation-requested"
	KindTransferSettled       Kind = "transfer-settled"
	// KindPlatformCalled is a call transferd made to the platform for the
	// transfer and its answer (SourceApp only).
	KindPlatformCalled Kind = "platform-called"
	// KindUploadReported is an importer's (or an operator's) report on the
	// work of one upload: done, failed, or requeued (SourceApp only).
	KindUploadReported Kind = "upload-reported"
	// KindUploadDiscovered is an upload the platform's app-data list names
	// whose app-data-uploaded webhook never arrived, found by
	// reconciliation (SourceApp only).
	KindUploadDiscovered Kind = "upload-discovered"
	KindUnknown          Kind = "unknown"
)

// Kinds lists every kind, KindUnknown last.
var Kinds = []Kind{
	KindListenerTriggered, KindAppDataUploaded, KindEventFileListUploaded,
	KindExportPhaseCompleted, KindListenerErrored, KindCancellationRequested,
	KindTransferSettled, KindPlatformCalled, KindUploadReported, KindUploadDiscovered, KindUnknown,
}

// Valid reports whether k is one of Kinds.
func (k Kind) Valid() bool {
	for _, v := range Kinds {
		if k == v {
			return true
		}
	}
	return false
}

// Event is one migration event in canonical form. Parse builds it from a
// payload; the ingest layer adds Issuer and ReceivedAt; the journal adds Seq
// when it reads the event back.
type Event struct {
	// ID is the event's identity as the platform names it: the payload's
	// messageId, or "sha256:" followed by Digest when it has none.
	ID string
	// Digest is the hex SHA-256 of the canonical payload (keys sorted,
	// insignificant space removed; for a wrapped Forge event, of the inner
	// payload). Parse and Reparse compute it; ReparseKeyed, given the key
	// it serves for, does not.
	Digest     string
	key        string // the key ReparseKeyed was given, "" otherwise
	Source     Source
	Kind       Kind
	EventType  string // the eventType as received
	TransferID string
	MessageID  string // empty when the payload has none

	// Issuer is the tenant that signed the event: a Connect clientKey or a
	// Forge app.installationId.
	Issuer     string
	ReceivedAt time.Time
	Seq        uint64 // stream sequence; zero until the event is read back
	// Unparsable, when set, says why a stored payload no longer parses (it
	// was stored before the parser refused it); such an event is not
	// Foldable.
	Unparsable string

	OriginalTransferID string     // set on every event of a re-run
	Migration          *Migration // nil when the payload has no migrationDetails
	Upload             *Upload    // uploaded kinds only
	Error              *TransferError
	SettlementStatus   string        // transfer-settled only, when the payload names one
	Call               *PlatformCall // platform-called only
	Report             *UploadReport // upload-reported only

	// ClientKeys are the Connect migrationDetails client keys other than
	// "unknown" (jiraClientKey, confluenceClientKey), for tenant checks.
	ClientKeys []string

	// Payload is the body exactly as received (for Forge, possibly wrapped
	// in {"payload": …}); Parse(Source, Payload) rebuilds the event.
	Payload json.RawMessage
}

// Key is the event's identity within its transfer, the one the fold
// applies once: ID when ID is the content digest, else ID, "#" and the
// first 32 hex digits of Digest. Two bodies sent with the same messageId
// are thus two events, neither lost; an exact re-delivery is one.
func (e *Event) Key() string {
	if e.key != "" {
		return e.key
	}
	if len(e.Digest) < 32 || e.ID == contentIDPrefix+e.Digest {
		return e.ID
	}
	return e.ID + "#" + e.Digest[:32]
}

// DedupeKey is the event's Nats-Msg-Id, JetStream's de-duplication key:
// "<source>:<issuer>:<transferId>:<Key>". It is scoped by source, issuer
// and transfer, so another tenant's or another transfer's event with the
// same messageId is never taken for a duplicate.
func (e *Event) DedupeKey() string {
	return string(e.Source) + ":" + e.Issuer + ":" + e.TransferID + ":" + e.Key()
}

// KeyInDedupeKey returns the key in dedupeKey when it is the DedupeKey of
// an event of source src, issuer and transferID, else "" (without
// building the prefix: it runs for every event read back).
func KeyInDedupeKey(dedupeKey string, src Source, issuer, transferID string) string {
	rest := dedupeKey
	for _, part := range [...]string{string(src), issuer, transferID} {
		var ok bool
		if rest, ok = strings.CutPrefix(rest, part); ok {
			rest, ok = strings.CutPrefix(rest, ":")
		}
		if !ok {
			return ""
		}
	}
	return rest
}

// Migration is the migrationDetails block shared by a transfer's events.
type Migration struct {
	MigrationID      string    `json:"migrationId"`
	MigrationScopeID string    `json:"migrationScopeId"`
	Name             string    `json:"name"`
	CreatedAt        time.Time `json:"createdAt"`
	CloudURL         string    `json:"cloudUrl"`
}

// Upload is one piece of app data uploaded to Atlassian's storage.
type Upload struct {
	Key   string `json:"key"`
	Label string `json:"label"`
	// Kind is "event-file-list" for simplified-migration file lists and
	// empty for ordinary app data.
	Kind string `json:"kind,omitempty"`
	// MessageIDs are the messageIds of the events that announced the
	// upload (sorted, a set): the Forge messages to acknowledge.
	MessageIDs []string `json:"messageIds,omitempty"`
	// ReceivedAt is the earliest receipt of such an event.
	ReceivedAt *time.Time `json:"receivedAt,omitempty"`
	// Work is the importers' work on the upload as reported (the greatest
	// report); absent while none was made.
	Work *UploadWork `json:"work,omitempty"`
	// Discovered: reconciliation found the upload on the platform's
	// app-data list (an upload-discovered event), whatever webhook came.
	Discovered bool `json:"discovered,omitempty"`
}

// Announced reports whether the upload is work: a platform event announced
// it, or reconciliation discovered it (not only reported on).
func (u *Upload) Announced() bool { return u.ReceivedAt != nil || u.Discovered }

// The statuses of an upload's work.
const (
	WorkProgress = "progress" // the attempt is under way, Percent done
	WorkFailed   = "failed"   // the attempt failed; Final: for good (a dead letter)
	WorkDone     = "done"     // imported
	WorkRequeued = "requeued" // a dead letter put back to work by an operator
)

// workRank orders the statuses within one attempt.
func workRank(s string) int {
	switch s {
	case WorkProgress:
		return 1
	case WorkFailed:
		return 2
	case WorkDone:
		return 3
	case WorkRequeued:
		return 4
	}
	return 0
}

// UploadWork is the state of an upload's work: the greatest report, by
// attempt, then status (progress < failed < done < requeued), then
// percent, final, time and message, so that the fold does not depend on
// the order of reports.
type UploadWork struct {
	Status  string `json:"status"`
	Attempt int    `json:"attempt"`
	// Since is the attempt of the last requeue before this report (the
	// attempt budget counts from it); 0 before any.
	Since int  `json:"since,omitempty"`
	Final bool `json:"final,omitempty"`
	// Percent is how far a progress report says the attempt is (0–100).
	Percent int       `json:"percent,omitempty"`
	Message string    `json:"message,omitempty"`
	By      string    `json:"by,omitempty"` // importer, operator or transferd
	At      time.Time `json:"at"`
}

// Dead reports whether the upload failed for good.
func (w *UploadWork) Dead() bool { return w != nil && w.Status == WorkFailed && w.Final }

func (w *UploadWork) after(v *UploadWork) bool {
	switch {
	case w.Attempt != v.Attempt:
		return w.Attempt > v.Attempt
	case workRank(w.Status) != workRank(v.Status):
		return workRank(w.Status) > workRank(v.Status)
	case w.Percent != v.Percent:
		return w.Percent > v.Percent
	case w.Final != v.Final:
		return w.Final
	case !w.At.Equal(v.At):
		return w.At.After(v.At)
	case w.Message != v.Message:
		return w.Message > v.Message
	case w.Since != v.Since:
		return w.Since > v.Since
	}
	return w.By > v.By
}

// UploadReport is the payload of an upload-reported event beyond
// eventType, transferId and messageId.
type UploadReport struct {
	Key string `json:"key"`
	UploadWork
}

// TransferError is what a listener-errored event says about the exception
// (Forge carries it; Connect apps fetch it from the platform).
type TransferError struct {
	ExceptionType  string `json:"exceptionType"`
	SafeStackTrace string `json:"safeStackTrace"`
}

// PlatformCall is the payload of a platform-called event beyond eventType,
// transferId and messageId: one call transferd made to the platform for
// the transfer, as transferd wrote it.
type PlatformCall struct {
	// Op is the call: progress, settle, forge.status, mapping.page, …
	Op string `json:"op"`
	// Status, Percent, MessageIDs and Message are what was sent.
	Status     string   `json:"status,omitempty"`
	Percent    int      `json:"percent,omitempty"`
	MessageIDs []string `json:"messageIds,omitempty"`
	Message    string   `json:"message,omitempty"`
	// Outcome is how the call ended: one of the Outcome* constants.
	Outcome    string `json:"outcome"`
	HTTPStatus int    `json:"httpStatus,omitempty"` // the final HTTP status; 0 when none came
	Attempts   int    `json:"attempts,omitempty"`
	// Unanswered: an earlier attempt got no reply and may have landed.
	Unanswered bool      `json:"unanswered,omitempty"`
	Error      string    `json:"error,omitempty"` // why it failed, never a token or secret
	At         time.Time `json:"at"`              // when the call ended
}

// The outcomes of a platform call.
const (
	OutcomeOK        = "ok"        // 2xx: the platform accepted it
	OutcomeSettled   = "settled"   // 403/409: the transfer was settled already
	OutcomeRejected  = "rejected"  // 400: refused, for a settle also past the 14 days
	OutcomeExhausted = "exhausted" // every attempt failed (5xx, 429, no reply)
	OutcomeInvalid   = "invalid"   // not sent, or another final refusal (401, 404, …)
)

// ValidOutcome reports whether s is one of the outcomes.
func ValidOutcome(s string) bool {
	switch s {
	case OutcomeOK, OutcomeSettled, OutcomeRejected, OutcomeExhausted, OutcomeInvalid:
		return true
	}
	return false
}
