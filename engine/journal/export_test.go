package journal

import (
	"context"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/transferd/transferd/engine"
)

// JetStream returns j's JetStream context.
func JetStream(j *Journal) jetstream.JetStream { return j.js }

// Buckets returns j's tenants and bindings buckets as nats.go serves them.
func Buckets(j *Journal) []jetstream.KeyValue { return []jetstream.KeyValue{j.tenants, j.bindings} }

// ShutdownServer stops j's embedded server under it, as a crash would
// from the journal's point of view.
func ShutdownServer(j *Journal) { j.srv.Shutdown() }

// AppendSync is Append through the synchronous PublishMsg, kept here only
// so that BenchmarkAppend can compare it with the asynchronous path Append
// takes.
func AppendSync(ctx context.Context, j *Journal, e *engine.Event) (Ack, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, j.cfg.Timeout)
		defer cancel()
	}
	pa, err := j.js.PublishMsg(ctx, &nats.Msg{
		Subject: EventSubject(e.Source, e.TransferID, e.Kind),
		Header: nats.Header{
			jetstream.MsgIDHeader:          []string{e.DedupeKey()},
			jetstream.ExpectedStreamHeader: []string{StreamEvents},
		},
		Data: Encode(e),
	})
	if err != nil {
		return Ack{}, unavailable("publish", err)
	}
	return Ack{Seq: pa.Sequence, Duplicate: pa.Duplicate}, nil
}

// HoldCommits keeps j's appends committer from taking its next batch until
// release is called, so that a test can queue a batch of its choosing.
func HoldCommits(j *Journal) (release func()) {
	j.appends.pause.Lock()
	return j.appends.pause.Unlock
}

// QueuedAppends returns the number of appends waiting for the committer.
func QueuedAppends(j *Journal) int {
	j.appends.mu.Lock()
	defer j.appends.mu.Unlock()
	return len(j.appends.queue)
}

// Committing reports whether j's appends go through an atomic batch
// committer.
func Committing(j *Journal) bool { return j.appends != nil }

// Delivered returns how many messages r has received from the server and
// not yet returned.
func Delivered(r *Reader) int { return len(r.msgs) }
