package journal

import (
	"context"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/transferd/transferd/engine"
)

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
			jetstream.MsgIDHeader:          []string{e.ID},
			jetstream.ExpectedStreamHeader: []string{StreamEvents},
		},
		Data: Encode(e),
	})
	if err != nil {
		return Ack{}, unavailable("publish", err)
	}
	return Ack{Seq: pa.Sequence, Duplicate: pa.Duplicate}, nil
}
