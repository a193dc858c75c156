package engine

import (
	"sort"
	"time"
)

// Apply folds e into t and reports whether t changed. An event whose
// identity (Event.Key) t has already applied changes nothing. Events for
// another transfer, and events that are not Foldable, are ignored.
func (t *Transfer) Apply(e *Event) bool {
	if e.TransferID != t.TransferID || Foldable(e) != nil {
		return false
	}
	key := e.Key()
	if _, ok := t.applied[key]; ok {
		return false
	}
	if t.applied == nil {
		t.applied = make(map[string]struct{})
	}
	t.applied[key] = struct{}{}
	t.Version++

	t.Issuer = minString(t.Issuer, e.Issuer)
	if e.Source == SourceApp {
		// transferd's own action: the source, phase and receipt times
		// stay the platform's.
		t.applyCall(e.Call)
		if r := e.Report; r != nil {
			w := r.UploadWork
			w.At = w.At.UTC()
			t.addUpload(Upload{Key: r.Key, Work: &w})
		}
		if e.Kind == KindUploadDiscovered && e.Upload != nil {
			t.addUpload(*e.Upload)
		}
		return true
	}
	t.Source = Source(minString(string(t.Source), string(e.Source)))
	t.OriginalTransferID = minString(t.OriginalTransferID, e.OriginalTransferID)
	if at := e.ReceivedAt.UTC(); !at.IsZero() {
		if t.FirstReceivedAt.IsZero() || at.Before(t.FirstReceivedAt) {
			t.FirstReceivedAt = at
		}
		if at.After(t.LastReceivedAt) {
			t.LastReceivedAt = at
		}
	}
	if e.Migration != nil {
		t.Migration = mergeMigration(t.Migration, e.Migration)
	}

	switch e.Kind {
	case KindListenerTriggered:
		if !e.ReceivedAt.IsZero() {
			t.TriggeredAt = minTime(t.TriggeredAt, e.ReceivedAt)
		}
	case KindAppDataUploaded, KindEventFileListUploaded:
		if e.Upload != nil {
			u := *e.Upload
			if e.MessageID != "" {
				u.MessageIDs = []string{e.MessageID}
			}
			if !e.ReceivedAt.IsZero() {
				u.ReceivedAt = minTime(nil, e.ReceivedAt)
			}
			t.addUpload(u)
		}
	case KindExportPhaseCompleted:
		t.ExportCompleted = true
	case KindListenerErrored:
		if e.Error != nil {
			t.Error = mergeError(t.Error, e.Error)
		} else if t.Error == nil {
			t.Error = &TransferError{}
		}
	case KindCancellationRequested:
		t.CancellationRequested = true
		t.CancellationRequestedAt = minTime(t.CancellationRequestedAt, e.ReceivedAt)
	case KindTransferSettled:
		if t.Settled == nil {
			t.Settled = &Settlement{Status: e.SettlementStatus, At: e.ReceivedAt.UTC()}
		} else {
			t.Settled.Status = minString(t.Settled.Status, e.SettlementStatus)
			t.Settled.At = *minTime(&t.Settled.At, e.ReceivedAt)
		}
	}
	t.Phase = Advance(t.Phase, e.Kind)
	return true
}

// applyCall merges one of transferd's platform calls.
func (t *Transfer) applyCall(c *PlatformCall) {
	if c == nil {
		return
	}
	switch {
	case c.Op == "settle" && (c.Outcome == OutcomeOK || c.Outcome == OutcomeSettled):
		if t.AppSettled == nil {
			t.AppSettled = &AppSettlement{Status: c.Status, At: c.At.UTC(), Outcome: c.Outcome}
			return
		}
		t.AppSettled.Status = minString(t.AppSettled.Status, c.Status)
		t.AppSettled.Outcome = minString(t.AppSettled.Outcome, c.Outcome)
		t.AppSettled.At = *minTime(&t.AppSettled.At, c.At)
	case c.Op == "settle":
		f := &AppCallFailure{Status: c.Status, Outcome: c.Outcome, HTTPStatus: c.HTTPStatus, Error: c.Error, At: c.At.UTC()}
		if t.AppSettleFailure == nil || f.after(t.AppSettleFailure) {
			t.AppSettleFailure = f
		}
	case c.Op == "forge.status" && c.Outcome == OutcomeOK && (c.Status == "SUCCESS" || c.Status == "FAILED"):
		if t.ForgeAcks == nil {
			t.ForgeAcks = make(map[string]string, len(c.MessageIDs))
		}
		for _, id := range c.MessageIDs {
			t.ForgeAcks[id] = minString(t.ForgeAcks[id], c.Status)
		}
	case c.Op == "progress" && c.Outcome == OutcomeOK:
		if t.Progress == nil {
			t.Progress = &Progress{}
		}
		t.Progress.Percent = max(t.Progress.Percent, c.Percent)
	}
}

// after orders failures totally (time, outcome, HTTP status, error,
// status), so that keeping the greatest does not depend on order.
func (f *AppCallFailure) after(g *AppCallFailure) bool {
	if !f.At.Equal(g.At) {
		return f.At.After(g.At)
	}
	if f.Outcome != g.Outcome {
		return f.Outcome > g.Outcome
	}
	if f.HTTPStatus != g.HTTPStatus {
		return f.HTTPStatus > g.HTTPStatus
	}
	if f.Error != g.Error {
		return f.Error > g.Error
	}
	return f.Status > g.Status
}

// Applied reports whether t has applied the event with identity id (an
// Event.Key) since it was created or decoded.
func (t *Transfer) Applied(id string) bool {
	_, ok := t.applied[id]
	return ok
}

// Fold folds events, in the order given, into a new transfer id. Whatever
// the order and however many duplicates, the result's canonical JSON is the
// same for the same set of event identities.
func Fold(id string, events []*Event) *Transfer {
	t := NewTransfer(id)
	for _, e := range events {
		t.Apply(e)
	}
	return t
}

func (t *Transfer) addUpload(u Upload) {
	i := sort.Search(len(t.Uploads), func(i int) bool { return t.Uploads[i].Key >= u.Key })
	if i < len(t.Uploads) && t.Uploads[i].Key == u.Key {
		o := &t.Uploads[i]
		o.Label = minString(o.Label, u.Label)
		o.Kind = minString(o.Kind, u.Kind)
		o.Discovered = o.Discovered || u.Discovered
		for _, id := range u.MessageIDs {
			j := sort.SearchStrings(o.MessageIDs, id)
			if j == len(o.MessageIDs) || o.MessageIDs[j] != id {
				o.MessageIDs = append(o.MessageIDs, "")
				copy(o.MessageIDs[j+1:], o.MessageIDs[j:])
				o.MessageIDs[j] = id
			}
		}
		if u.ReceivedAt != nil {
			o.ReceivedAt = minTime(o.ReceivedAt, *u.ReceivedAt)
		}
		if u.Work != nil && (o.Work == nil || u.Work.after(o.Work)) {
			w := *u.Work
			o.Work = &w
		}
		return
	}
	if u.Work != nil {
		w := *u.Work
		u.Work = &w
	}
	u.MessageIDs = append([]string(nil), u.MessageIDs...)
	if len(u.MessageIDs) == 0 {
		u.MessageIDs = nil
	}
	t.Uploads = append(t.Uploads, Upload{})
	copy(t.Uploads[i+1:], t.Uploads[i:])
	t.Uploads[i] = u
}

func mergeMigration(a, b *Migration) *Migration {
	if a == nil {
		m := *b
		m.CreatedAt = m.CreatedAt.UTC()
		return &m
	}
	m := *a
	m.MigrationID = minString(m.MigrationID, b.MigrationID)
	m.MigrationScopeID = minString(m.MigrationScopeID, b.MigrationScopeID)
	m.Name = minString(m.Name, b.Name)
	m.CloudURL = minString(m.CloudURL, b.CloudURL)
	if !b.CreatedAt.IsZero() && (m.CreatedAt.IsZero() || b.CreatedAt.Before(m.CreatedAt)) {
		m.CreatedAt = b.CreatedAt.UTC()
	}
	return &m
}

func mergeError(a, b *TransferError) *TransferError {
	if a == nil {
		e := *b
		return &e
	}
	return &TransferError{
		ExceptionType:  minString(a.ExceptionType, b.ExceptionType),
		SafeStackTrace: minString(a.SafeStackTrace, b.SafeStackTrace),
	}
}

// minString is the smaller of two strings, an empty string losing to any other.
func minString(a, b string) string {
	if a == "" || (b != "" && b < a) {
		return b
	}
	return a
}

// minTime is the earlier of *a and b, a nil or zero time losing to any other.
func minTime(a *time.Time, b time.Time) *time.Time {
	b = b.UTC()
	if a == nil || a.IsZero() || (!b.IsZero() && b.Before(*a)) {
		return &b
	}
	return a
}
