package journal

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/transferd/transferd/engine"
)

// A transfer belongs to the tenant whose event was stored first for it:
// its owner is that event's "<source>:<issuer>" (OwnerOf). The stream is
// the record of it, so owning a transfer costs no write of its own: the
// first event is appended on the condition that no event of its transfer
// is stored yet (JetStream checks the last sequence of
// TransferEventsFilter as it stores the message), and the binding and the
// event are one message, on disk together or not at all.
//
// Deployments from before this kept a binding per transfer in the bindings
// bucket; those keys are left as they are and no longer read: the first
// event of each of those transfers names the same owner.

// OwnerOf is the owner an event of source from issuer stands for.
func OwnerOf(source engine.Source, issuer string) string {
	return string(source) + ":" + issuer
}

// AppendOwned appends e as Append does if e's transfer has no event yet,
// or its first event is OwnerOf(e.Source, e.Issuer), and returns the
// transfer's owner. When the owner is another, nothing is stored and the
// Ack is zero: the caller refuses e. Of two first events of one transfer
// sent at once from two tenants, exactly one is stored. A retry of a stored
// first event within the duplicate window is a duplicate, as with Append.
func (j *Journal) AppendOwned(ctx context.Context, e *engine.Event) (Ack, string, error) {
	if err := checkEvent(e); err != nil {
		return Ack{}, "", err
	}
	want := OwnerOf(e.Source, e.Issuer)
	for attempt := 1; ; attempt++ {
		ack, err := j.appendFirst(ctx, e)
		if err == nil {
			return ack, want, nil
		}
		if !wrongLastSeq(err) {
			return Ack{}, "", err
		}
		owner, err := j.Owner(ctx, e.TransferID)
		switch {
		case err == nil && owner != want:
			return Ack{}, owner, nil
		case err == nil:
			ack, err := j.Append(ctx, e)
			return ack, owner, err
		case !errors.Is(err, ErrNotFound) || attempt == maxOwnAttempts:
			return Ack{}, "", err
		}
		// A replicated stream refuses the condition while another
		// conditional write of the transfer is in flight, before any
		// replica has stored it; ask again.
		select {
		case <-time.After(time.Duration(attempt) * 5 * time.Millisecond):
		case <-ctx.Done():
			return Ack{}, "", unavailable("append "+e.TransferID, ctx.Err())
		}
	}
}

// maxOwnAttempts bounds AppendOwned's rounds of conditional append and
// owner lookup.
const maxOwnAttempts = 8

// appendFirst appends e on the condition that no event of its transfer is
// stored. It is published on its own, never in an atomic batch, whose
// other messages a failed condition would fail too; with GroupCommitSync
// it shares a sync like any append.
func (j *Journal) appendFirst(ctx context.Context, e *engine.Event) (Ack, error) {
	m, _ := eventMsg(e)
	m.Header[jetstream.ExpectedLastSubjSeqHeader] = []string{"0"}
	m.Header[expectedLastSubjSeqSubjHeader] = []string{TransferEventsFilter(e.TransferID)}
	return j.durable(ctx, StreamEvents, m)
}

// expectedLastSubjSeqSubjHeader names the subject (here a filter) whose
// last sequence ExpectedLastSubjSeqHeader states (nats-server 2.11).
const expectedLastSubjSeqSubjHeader = "Nats-Expected-Last-Subject-Sequence-Subject"

// wrongLastSeq reports whether err is JetStream refusing a message for its
// expected last sequence.
func wrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// Owner returns the owner of transferID, OwnerOf its first stored event;
// ErrNotFound when none is stored. Failures to reach the stream wrap
// ErrUnavailable.
func (j *Journal) Owner(ctx context.Context, transferID string) (string, error) {
	if !validToken(transferID) {
		return "", fmt.Errorf("%w: transferId %q", ErrInvalid, transferID)
	}
	ctx, cancel := j.bound(ctx)
	defer cancel()
	m, err := j.events.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(TransferEventsFilter(transferID)))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return "", fmt.Errorf("journal: owner of %s: %w", transferID, ErrNotFound)
	}
	if err != nil {
		return "", unavailable("owner of "+transferID, err)
	}
	env, err := Decode(m.Data)
	if err != nil {
		return "", fmt.Errorf("journal: owner of %s: seq %d: %w", transferID, m.Sequence, err)
	}
	return OwnerOf(env.Source, env.Issuer), nil
}

// bindingKey escapes a transfer id into a valid KV key, reversibly.
func bindingKey(id string) string {
	const hex = "0123456789ABCDEF"
	var b []byte
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := c == '-' || c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if ok && b == nil {
			continue
		}
		if b == nil {
			b = append(make([]byte, 0, len(id)+8), id[:i]...)
		}
		if ok {
			b = append(b, c)
		} else {
			b = append(b, '=', hex[c>>4], hex[c&15])
		}
	}
	if b == nil {
		return id
	}
	return string(b)
}
