package journal

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/transferd/transferd/engine"
)

// Ack is JetStream's acknowledgement of an appended or published message.
type Ack struct {
	// Seq is the message's stream sequence; for a duplicate, the sequence
	// of the message stored first.
	Seq uint64
	// Duplicate reports that a message with the same ID was already stored
	// within the duplicate window, and nothing new was written.
	Duplicate bool
}

// Append stores e in stream MIGRATIONS on EventSubject(e.Source,
// e.TransferID, e.Kind), encoded by Encode, with Nats-Msg-Id
// e.DedupeKey() (scoped by source, issuer and transfer). It
// returns only once JetStream has acknowledged the message and, with
// Config.SyncAlways, once the message is on disk (see GroupCommit: the
// appends waiting at the same time share a sync, or an atomic batch). Any
// failure to obtain the ack, including the end of ctx, wraps
// ErrUnavailable, and the message may still be stored (no one was told it
// is; a retry with the same ID within the duplicate window is recognised as
// a duplicate). An event that cannot be routed is ErrInvalid and one over
// the server's limit is ErrTooLarge.
func (j *Journal) Append(ctx context.Context, e *engine.Event) (Ack, error) {
	if err := checkEvent(e); err != nil {
		return Ack{}, err
	}
	m, msgID := eventMsg(e)
	if j.appends != nil {
		return j.submit(ctx, j.appends, m, msgID)
	}
	return j.durable(ctx, StreamEvents, m)
}

// eventMsg is the message Append stores for e, and its ID.
func eventMsg(e *engine.Event) (*nats.Msg, string) {
	msgID := e.DedupeKey()
	return &nats.Msg{
		Subject: EventSubject(e.Source, e.TransferID, e.Kind),
		Header: nats.Header{
			jetstream.MsgIDHeader:          []string{msgID},
			jetstream.ExpectedStreamHeader: []string{StreamEvents},
		},
		Data: Encode(e),
	}, msgID
}

func checkEvent(e *engine.Event) error {
	if e.ID == "" || !e.Source.Valid() || !validToken(e.TransferID) || !validToken(string(e.Kind)) {
		return fmt.Errorf("%w: id %q, source %q, transferId %q, kind %q",
			ErrInvalid, e.ID, e.Source, e.TransferID, e.Kind)
	}
	return nil
}

// appendWindow is how many of AppendAll's messages are in flight at most.
const appendWindow = 1024

// AppendAll appends events in order, each as Append would, but pipelined
// for bulk loads: it sends up to 1024 before waiting for their
// acknowledgements, and with Config.SyncAlways syncs once at the end
// instead of sharing a sync per append. It returns the acknowledgements in
// order, or the first failure, with Append's error contract; of the events
// after a failure, some may be stored.
func (j *Journal) AppendAll(ctx context.Context, events []*engine.Event) ([]Ack, error) {
	for _, e := range events {
		if err := checkEvent(e); err != nil {
			return nil, err
		}
	}
	acks := make([]Ack, 0, len(events))
	for len(events) > 0 {
		chunk := events[:min(len(events), appendWindow)]
		events = events[len(chunk):]
		futures := make([]jetstream.PubAckFuture, 0, len(chunk))
		for _, e := range chunk {
			m, _ := eventMsg(e)
			f, err := j.js.PublishMsgAsync(m)
			if err != nil {
				if errors.Is(err, nats.ErrMaxPayload) {
					return acks, fmt.Errorf("%w: %d bytes on %s: %w", ErrTooLarge, len(m.Data), m.Subject, err)
				}
				return acks, unavailable("publish "+m.Subject, err)
			}
			futures = append(futures, f)
		}
		for _, f := range futures {
			select {
			case pa := <-f.Ok():
				acks = append(acks, Ack{Seq: pa.Sequence, Duplicate: pa.Duplicate})
			case err := <-f.Err():
				return acks, unavailable("publish "+f.Msg().Subject, err)
			case <-ctx.Done():
				return acks, unavailable("publish "+f.Msg().Subject, ctx.Err())
			}
		}
	}
	if j.syncer != nil {
		sctx, cancel := j.bound(ctx)
		defer cancel()
		if err := j.syncer.sync(sctx, StreamEvents, nil); err != nil {
			return acks, unavailable("sync "+StreamEvents, err)
		}
	}
	return acks, nil
}

// Publish stores data on subject with Nats-Msg-Id msgID (none when empty)
// and waits for the ack, with Append's error contract. The projector uses
// it for the TRANSFERS feed, which is group-committed like appends.
func (j *Journal) Publish(ctx context.Context, subject, msgID string, data []byte) (Ack, error) {
	m := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	if msgID != "" {
		m.Header[jetstream.MsgIDHeader] = []string{msgID}
	}
	switch {
	case strings.HasPrefix(subject, transfersPrefix):
		if j.feed != nil {
			return j.submit(ctx, j.feed, m, msgID)
		}
		return j.durable(ctx, StreamTransfers, m)
	case strings.HasPrefix(subject, eventsPrefix):
		return j.durable(ctx, StreamEvents, m)
	}
	return j.publish(ctx, m)
}

// PublishTransfer stores a TRANSFERS state like Publish, but with
// GroupCommitSync it does not wait for the state to be on disk: the feed
// publishes a round of states this way and then calls SyncTransfers once,
// before it forgets them, instead of waiting for a sync round per state
// (rounds the webhooks' acknowledgements wait for too). With atomic
// batches, or without a syncer of our own, it is Publish.
func (j *Journal) PublishTransfer(ctx context.Context, subject, msgID string, data []byte) (Ack, error) {
	if j.feed != nil || j.syncer == nil || !strings.HasPrefix(subject, transfersPrefix) {
		return j.Publish(ctx, subject, msgID, data)
	}
	m := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	if msgID != "" {
		m.Header[jetstream.MsgIDHeader] = []string{msgID}
	}
	ctx, cancel := j.bound(ctx)
	defer cancel()
	return j.publish(ctx, m)
}

// SyncTransfers waits until every TRANSFERS state acknowledged before the
// call is on disk (see PublishTransfer); it returns at once when the
// journal has no syncer of its own (the server syncs, or atomic batches
// did).
func (j *Journal) SyncTransfers(ctx context.Context) error {
	if j.syncer == nil {
		return nil
	}
	ctx, cancel := j.bound(ctx)
	defer cancel()
	if err := j.syncer.sync(ctx, StreamTransfers, nil); err != nil {
		return unavailable("sync "+StreamTransfers, err)
	}
	return nil
}

// durable publishes m to stream and, with GroupCommitSync, waits until it
// is on disk, sharing the sync with the publishes waiting at the same
// time. A duplicate waits too: the message stored first may have been
// acknowledged an instant ago, and not be on disk yet.
func (j *Journal) durable(ctx context.Context, stream string, m *nats.Msg) (Ack, error) {
	if j.syncer == nil {
		return j.publish(ctx, m)
	}
	ctx, cancel := j.bound(ctx)
	defer cancel()
	e := j.syncer.begin()
	ack, err := j.publish(ctx, m)
	if err != nil {
		j.syncer.abandon(e)
		return ack, err
	}
	if err := j.syncer.sync(ctx, stream, e); err != nil {
		return Ack{}, unavailable("publish "+m.Subject, err)
	}
	return ack, nil
}

// bound returns ctx bounded by Config.Timeout, unless its deadline is
// earlier.
func (j *Journal) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if d, ok := ctx.Deadline(); ok && time.Until(d) <= j.cfg.Timeout {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, j.cfg.Timeout)
}

// submit hands m to c, bounding the wait by Config.Timeout.
func (j *Journal) submit(ctx context.Context, c *committer, m *nats.Msg, id string) (Ack, error) {
	if err := ctx.Err(); err != nil {
		return Ack{}, unavailable("publish "+m.Subject, err)
	}
	if size := len(m.Data) + headerSize(m.Header) + batchHeaderRoom; int64(size) > j.nc.MaxPayload() {
		return Ack{}, fmt.Errorf("%w: %d bytes on %s: %w", ErrTooLarge, len(m.Data), m.Subject, nats.ErrMaxPayload)
	}
	ctx, cancel := j.bound(ctx)
	defer cancel()
	return c.submit(ctx, m, id)
}

// headerSize is the encoded size of h on the wire.
func headerSize(h nats.Header) int {
	n := len("NATS/1.0\r\n\r\n")
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(": \r\n") + len(v)
		}
	}
	return n
}

// publish sends m on its own and waits for its ack. PublishMsgAsync and a
// wait on its future beat the synchronous PublishMsg by 10-30% with 64
// callers (BenchmarkAppend), and fail at once on a disconnect instead of at
// the deadline.
func (j *Journal) publish(ctx context.Context, m *nats.Msg) (Ack, error) {
	if err := ctx.Err(); err != nil {
		return Ack{}, unavailable("publish "+m.Subject, err)
	}
	f, err := j.js.PublishMsgAsync(m)
	if err != nil {
		if errors.Is(err, nats.ErrMaxPayload) {
			return Ack{}, fmt.Errorf("%w: %d bytes on %s: %w", ErrTooLarge, len(m.Data), m.Subject, err)
		}
		return Ack{}, unavailable("publish "+m.Subject, err)
	}
	select { // the future fails by itself after Config.Timeout
	case pa := <-f.Ok():
		return Ack{Seq: pa.Sequence, Duplicate: pa.Duplicate}, nil
	case err := <-f.Err():
		return Ack{}, unavailable("publish "+m.Subject, err)
	case <-ctx.Done():
		return Ack{}, unavailable("publish "+m.Subject, ctx.Err())
	}
}

// CommitStats returns the group commit's counters.
func (j *Journal) CommitStats() CommitStats { return j.stats.snapshot() }
