package projections

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"time"

	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/engine/journal"
)

// Reading: a goroutine per journal reader gathers consecutive stream
// messages into batches and decodes them, while the projector commits the
// previous batch (see model.go for how a batch is written).

// batch is a run of consecutive stream messages, decoded.
type batch struct {
	events     []*engine.Event // in stream order
	unparsable []uint64        // sequences of events whose payload no longer parses
	corrupt    []uint64        // sequences of messages that are not envelopes
	last       uint64          // the last sequence covered
	pending    uint64          // messages after it when it was read
	err        error           // the reader failed; nothing else is set
}

// read feeds decoded batches from r to out until ctx ends or r fails, then
// stops r and closes out.
func (p *Projector) read(ctx context.Context, r *journal.Reader, out chan<- *batch) {
	defer close(out)
	defer r.Stop()
	for {
		b, err := p.next(ctx, r)
		if err != nil {
			if ctx.Err() == nil {
				select {
				case out <- &batch{err: err}:
				case <-ctx.Done():
				}
			}
			return
		}
		select {
		case out <- b:
		case <-ctx.Done():
			return
		}
	}
}

// next reads one batch: up to MaxBatch events, ending when the stream has
// none pending (after BatchWait), and decodes it.
func (p *Projector) next(ctx context.Context, r *journal.Reader) (*batch, error) {
	b := &batch{}
	var envs []journal.Envelope
	var deadline time.Time
	for len(envs) < p.opts.MaxBatch {
		nctx, cancel := ctx, context.CancelFunc(func() {})
		if b.last != 0 && r.Pending() == 0 {
			if p.opts.BatchWait <= 0 {
				break
			}
			if deadline.IsZero() {
				deadline = time.Now().Add(p.opts.BatchWait)
			}
			nctx, cancel = context.WithDeadline(ctx, deadline)
		}
		got, err := r.Next(nctx, p.opts.MaxBatch-len(envs))
		cancel()
		var cerr *journal.CorruptError
		switch {
		case errors.As(err, &cerr):
			p.log.Warn("projections: skipping a stream message that is not an envelope", "seq", cerr.Seq, "err", cerr.Err)
			b.corrupt = append(b.corrupt, cerr.Seq)
			b.last = max(b.last, cerr.Seq)
			continue
		case err != nil && b.last != 0:
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			// The BatchWait deadline, or a failure that the next call
			// reports again: commit what we have.
		case err != nil:
			return nil, err
		}
		if len(got) == 0 {
			break
		}
		envs = append(envs, got...)
		b.last = max(b.last, got[len(got)-1].Seq)
	}
	b.pending = r.Pending()
	b.events = make([]*engine.Event, len(envs))
	bad := make([]bool, len(envs))
	parallel(len(envs), func(i int) {
		var err error
		b.events[i], err = envs[i].Event()
		bad[i] = err != nil
	})
	// Parking logs the event with the reason; nothing to say here.
	for i, e := range b.events {
		if bad[i] {
			b.unparsable = append(b.unparsable, e.Seq)
		}
	}
	return b, nil
}

// parallel calls fn(0..n-1) spread over GOMAXPROCS goroutines.
func parallel(n int, fn func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), (n+63)/64)
	if workers <= 1 {
		for i := range n {
			fn(i)
		}
		return
	}
	var wg sync.WaitGroup
	chunk := (n + workers - 1) / workers
	for lo := 0; lo < n; lo += chunk {
		hi := min(n, lo+chunk)
		wg.Go(func() {
			for i := lo; i < hi; i++ {
				fn(i)
			}
		})
	}
	wg.Wait()
}
