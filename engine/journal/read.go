package journal

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/transferd/transferd/engine"
)

// Limits of a Reader's ordered consumer: how often it is recreated in a row
// after a failure before Next gives up with ErrUnavailable, and how long
// the server keeps it without pull requests (a backstop: Stop deletes it).
const (
	maxResets        = 3
	inactiveConsumer = time.Minute
)

// LastSeq returns the sequence of the last message in MIGRATIONS, 0 when
// it is empty. Failures wrap ErrUnavailable.
func (j *Journal) LastSeq(ctx context.Context) (uint64, error) {
	info, err := j.events.Info(ctx)
	if err != nil {
		return 0, unavailable("stream info", err)
	}
	return info.State.LastSeq, nil
}

// StreamState is what the server reports of a stream.
type StreamState struct {
	Msgs      uint64 // messages stored
	FirstSeq  uint64 // sequence of the first message stored
	LastSeq   uint64 // sequence of the last message stored, 0 when none was
	Consumers int    // consumers of the stream, Readers' included
}

// State asks the server for the state of stream, StreamEvents or
// StreamTransfers. Failures wrap ErrUnavailable; another name is
// ErrInvalid.
func (j *Journal) State(ctx context.Context, stream string) (StreamState, error) {
	var st jetstream.Stream
	switch stream {
	case StreamEvents:
		st = j.events
	case StreamTransfers:
		st = j.feedSt
	default:
		return StreamState{}, fmt.Errorf("%w: no stream %q", ErrInvalid, stream)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return StreamState{}, unavailable("stream info "+stream, err)
	}
	s := info.State
	return StreamState{Msgs: s.Msgs, FirstSeq: s.FirstSeq, LastSeq: s.LastSeq, Consumers: s.Consumers}, nil
}

// StoredAt returns when MIGRATIONS stored the message with sequence seq.
// Failures, a sequence not stored included, wrap ErrUnavailable.
func (j *Journal) StoredAt(ctx context.Context, seq uint64) (time.Time, error) {
	m, err := j.events.GetMsg(ctx, seq)
	if err != nil {
		return time.Time{}, unavailable(fmt.Sprintf("get %s #%d", StreamEvents, seq), err)
	}
	return m.Time, nil
}

// Reader reads MIGRATIONS in stream order through an ordered consumer (no
// durable state on the server), in batches whose size the caller chooses.
// A Reader is not safe for concurrent use; Stop it when done.
//
// A goroutine takes the consumer's messages as they arrive into a buffer
// of its own, so that Next can tell the messages already delivered from
// those still to come: the NumPending the server sends with a message
// counts only the messages not yet delivered when it sent that one, not
// those sent since and waiting in the client, and a batch ended by it alone
// was one message long while dozens waited behind it (see docs/design.md
// §9.7, the projector's lag).
type Reader struct {
	j       *Journal
	cons    jetstream.Consumer
	it      jetstream.MessagesContext
	msgs    chan delivery // from pump, in stream order
	done    chan struct{} // closed by Stop: pump's end
	pumped  chan struct{} // closed when pump has returned
	pending uint64        // matching messages after the last one returned
	next    error         // a CorruptError to report on the following call
	failed  error         // pump's failure, reported by every later call
	stopped bool
}

// delivery is a message pump took from the consumer, or its failure.
type delivery struct {
	msg jetstream.Msg
	err error
}

// readAhead is how many delivered messages a Reader's buffer holds (the
// consumer's own holds its pull batch, 500 by default).
const readAhead = 512

// Read opens a Reader of the messages with a sequence greater than after (0
// for the beginning) whose subject matches filter (empty for all), such as
// a projector's checkpoint and "", or 0 and TransferEventsFilter(id).
// Failures wrap ErrUnavailable.
func (j *Journal) Read(ctx context.Context, after uint64, filter string) (*Reader, error) {
	cfg := jetstream.OrderedConsumerConfig{
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       after + 1,
		MaxResetAttempts:  maxResets,
		InactiveThreshold: inactiveConsumer,
	}
	if filter != "" {
		cfg.FilterSubjects = []string{filter}
	}
	cons, err := j.js.OrderedConsumer(ctx, StreamEvents, cfg)
	if err != nil {
		return nil, unavailable("read", err)
	}
	r := &Reader{j: j, cons: cons, msgs: make(chan delivery, readAhead), done: make(chan struct{}), pumped: make(chan struct{})}
	if info := cons.CachedInfo(); info != nil {
		r.pending = info.NumPending
	}
	if r.it, err = cons.Messages(); err != nil {
		r.deleteConsumer()
		return nil, unavailable("read", err)
	}
	go r.pump()
	return r, nil
}

// pump moves the consumer's messages into r.msgs until Stop or a failure
// (the ordered consumer has already recreated itself where it could),
// which it passes on as the last delivery.
func (r *Reader) pump() {
	defer close(r.pumped)
	for {
		msg, err := r.it.Next()
		select {
		case r.msgs <- delivery{msg: msg, err: err}:
		case <-r.done:
			return
		}
		if err != nil {
			return
		}
	}
}

// Pending returns how many matching messages follow the last one Next
// returned (before the first call: how many the Reader started with), as
// counted by the server when that message was delivered.
func (r *Reader) Pending() uint64 { return r.pending }

// Next returns the next envelopes in stream order, at most max (at least
// one). It waits until one is available or ctx ends, then adds those
// already delivered and keeps waiting for more while the server reports
// more pending, so that a batch is full while catching up, holds whatever
// arrived while the caller was busy, and returns at once at the end of
// the stream. When ctx ends before the first envelope, Next returns ctx's
// error; after it, the batch so far.
//
// A message that does not decode is reported as a *CorruptError on its own
// (after the envelopes before it) and skipped; the Reader stays usable.
// Other failures wrap ErrUnavailable: then Stop the Reader and Read again
// after the last sequence received.
func (r *Reader) Next(ctx context.Context, max int) ([]Envelope, error) {
	if r.stopped {
		return nil, ErrStopped
	}
	if err := r.next; err != nil {
		r.next = nil
		return nil, err
	}
	if r.failed != nil {
		return nil, r.failed
	}
	max = clamp(max, 1, 1<<16)
	batch := make([]Envelope, 0, min(max, int(r.pending)+1+len(r.msgs)))
	for len(batch) < max {
		wait := len(batch) == 0 || r.pending > 0
		if !wait && len(r.msgs) == 0 {
			break // nothing delivered, nothing pending: the end for now
		}
		env, err := r.read(ctx)
		if err != nil {
			var cerr *CorruptError
			switch {
			case len(batch) == 0:
				return nil, err
			case errors.As(err, &cerr):
				r.next = err // report it on the next call
			}
			return batch, nil
		}
		batch = append(batch, env)
	}
	return batch, nil
}

// read returns the next envelope, waiting for pump's next delivery.
func (r *Reader) read(ctx context.Context) (Envelope, error) {
	var d delivery
	select {
	case d = <-r.msgs:
	case <-ctx.Done():
		return Envelope{}, ctx.Err()
	}
	msg, err := d.msg, d.err
	if err != nil {
		r.failed = unavailable("read", err)
		return Envelope{}, r.failed
	}
	meta, err := msg.Metadata()
	if err != nil {
		return Envelope{}, unavailable("read", err)
	}
	r.pending = meta.NumPending
	env, err := Decode(msg.Data())
	if err != nil {
		return Envelope{}, &CorruptError{Seq: meta.Sequence.Stream, Err: err}
	}
	env.Seq = meta.Sequence.Stream
	if h := msg.Headers(); h != nil {
		env.Key = engine.KeyInDedupeKey(h.Get(jetstream.MsgIDHeader), env.Source, env.Issuer, env.TransferID)
	}
	return env, nil
}

// Stop ends the Reader and deletes its consumer on the server (waiting at
// most Config.Timeout); Next then returns ErrStopped. Stop is idempotent.
func (r *Reader) Stop() {
	if r.stopped {
		return
	}
	r.stopped = true
	close(r.done)
	r.it.Stop()
	// The iterator's Next returns once its subscription is closed; do not
	// hang on it should it not.
	t := time.NewTimer(r.j.cfg.Timeout)
	select {
	case <-r.pumped:
	case <-t.C:
	}
	t.Stop()
	r.deleteConsumer()
}

// deleteConsumer deletes the current consumer now rather than leaving it
// to expire: a Scan per history request would pile them up.
func (r *Reader) deleteConsumer() {
	if info := r.cons.CachedInfo(); info != nil {
		ctx, cancel := context.WithTimeout(context.Background(), r.j.cfg.Timeout)
		defer cancel()
		_ = r.j.js.DeleteConsumer(ctx, StreamEvents, info.Name)
	}
}

// Scan yields, in stream order, every message matching filter that was
// stored when Scan began, and then stops: a transfer's history with
// TransferEventsFilter. Breaking out of the loop stops the scan. A failure
// is yielded once as the last element, with a zero Envelope; a message that
// does not decode is yielded as a *CorruptError (with its Seq) and the scan
// goes on.
//
// A filtered scan reads as many messages as its consumer counted pending
// when it was created: MIGRATIONS denies deletes, so those are exactly the
// matching ones stored by then. An unfiltered scan (an audit's) reads up to
// the stream's last sequence, asked for first, and so does not rest on that
// count alone: once, after JetStream came back from a full disk, a
// consumer of a non-empty stream counted 0 pending and the scan came out
// empty with no error. Should the messages not come, the scan ends with
// ctx's error rather than short.
func (j *Journal) Scan(ctx context.Context, filter string) iter.Seq2[Envelope, error] {
	return func(yield func(Envelope, error) bool) {
		var last uint64 // an unfiltered scan's end; 0 for a filtered one
		if filter == "" {
			var err error
			if last, err = j.LastSeq(ctx); err != nil {
				yield(Envelope{}, fmt.Errorf("journal: scan: %w", err))
				return
			}
			if last == 0 {
				return
			}
		}
		r, err := j.Read(ctx, 0, filter)
		if err != nil {
			yield(Envelope{}, err)
			return
		}
		defer r.Stop()
		more := func(seq uint64) bool { return seq < last }
		if filter != "" {
			n := r.Pending()
			more = func(uint64) bool { n--; return n > 0 }
			if n == 0 {
				return
			}
		}
		for {
			batch, err := r.Next(ctx, 256)
			var cerr *CorruptError
			switch {
			case errors.As(err, &cerr):
				if !yield(Envelope{Seq: cerr.Seq}, err) || !more(cerr.Seq) {
					return
				}
				continue
			case err != nil:
				yield(Envelope{}, fmt.Errorf("journal: scan %s: %w", filter, err))
				return
			}
			for _, env := range batch {
				if !yield(env, nil) || !more(env.Seq) {
					return
				}
			}
		}
	}
}

func clamp(n, lo, hi int) int { return max(lo, min(n, hi)) }
