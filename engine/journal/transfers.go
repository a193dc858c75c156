package journal

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/transferd/transferd/engine"
)

// transferReaderInactive is how long the server keeps a TransferReader's
// consumer without pull requests, should deleting it on Stop fail.
const transferReaderInactive = 30 * time.Second

// TransferChange is one message of TRANSFERS: a transfer's state after a
// change, as the projector published it on TransferSubject.
type TransferChange struct {
	Seq        uint64 // the message's stream sequence
	TransferID string
	Phase      engine.Phase
	Data       []byte // the state as published
}

// TransferReader follows TRANSFERS in stream order through an ordered
// consumer (no durable state on the server). It is not safe for
// concurrent use; Stop it when done.
type TransferReader struct {
	j       *Journal
	cons    jetstream.Consumer
	it      jetstream.MessagesContext
	stopped bool
}

// ReadTransfers opens a TransferReader of the messages with a sequence
// greater than after (0 for the beginning) whose subject matches filter
// (empty for all; see TransferFilter). Failures wrap ErrUnavailable.
func (j *Journal) ReadTransfers(ctx context.Context, after uint64, filter string) (*TransferReader, error) {
	cfg := jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   after + 1,
		// A backstop: Stop deletes the consumer.
		InactiveThreshold: transferReaderInactive,
	}
	if filter != "" {
		cfg.FilterSubjects = []string{filter}
	}
	cons, err := j.js.OrderedConsumer(ctx, StreamTransfers, cfg)
	if err != nil {
		return nil, unavailable("read "+StreamTransfers, err)
	}
	r := &TransferReader{j: j, cons: cons}
	if r.it, err = cons.Messages(); err != nil {
		r.deleteConsumer()
		return nil, unavailable("read "+StreamTransfers, err)
	}
	return r, nil
}

// Next waits for the next message and returns it. When ctx ends first it
// returns ctx's error; other failures wrap ErrUnavailable (Stop the
// reader, and read again after the last sequence received).
func (r *TransferReader) Next(ctx context.Context) (TransferChange, error) {
	if r.stopped {
		return TransferChange{}, ErrStopped
	}
	m, err := r.it.Next(jetstream.NextContext(ctx))
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return TransferChange{}, err
		}
		return TransferChange{}, unavailable("read "+StreamTransfers, err)
	}
	meta, err := m.Metadata()
	if err != nil {
		return TransferChange{}, unavailable("read "+StreamTransfers, err)
	}
	c := TransferChange{Seq: meta.Sequence.Stream, Data: m.Data()}
	c.TransferID, c.Phase, _ = ParseTransferSubject(m.Subject())
	return c, nil
}

// Stop ends the reader and deletes its consumer on the server (waiting at
// most Config.Timeout); Next then returns ErrStopped. Stop is idempotent.
func (r *TransferReader) Stop() {
	if r.stopped {
		return
	}
	r.stopped = true
	r.it.Stop()
	r.deleteConsumer()
}

func (r *TransferReader) deleteConsumer() {
	if info := r.cons.CachedInfo(); info != nil {
		ctx, cancel := context.WithTimeout(context.Background(), r.j.cfg.Timeout)
		defer cancel()
		_ = r.j.js.DeleteConsumer(ctx, StreamTransfers, info.Name)
	}
}
