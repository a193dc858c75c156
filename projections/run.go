package projections

import (
	"context"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/transferd/transferd/engine"
)

// Runs: a rebuild folds consecutive batches into one transaction
// (ProjectorOptions.runEvents), so that it commits, and writes each page,
// once per rebuildRunEvents events, while it holds only rebuildMaxBatch
// of them in memory at a time.

// runs reports whether consume folds runs of batches: only without a feed
// or Notify, which are handed a commit's changed transfers (a run keeps
// none of them), and not while the batches of a run that failed to fold
// are applied again one by one.
func (p *Projector) runs() bool {
	return p.opts.runEvents > 0 && p.feed == nil && p.opts.Notify == nil && p.s.Checkpoint() >= p.singleUntil
}

// runFault is a run that could not be folded (a foldFault in one of its
// batches); its transaction was rolled back.
type runFault struct {
	last uint64 // the last sequence of the batch that failed
	err  error
}

func (f *runFault) Error() string {
	return fmt.Sprintf("projections: cannot fold the batches up to sequence %d: %v", f.last, f.err)
}

func (f *runFault) Unwrap() error { return f.err }

// applyRun folds first, and the batches that follow it on more, in one
// transaction, until it holds opts.runEvents events, a batch was read with
// nothing pending after it or reaches opts.until, more is closed, or the
// projector is told to end; then it commits. Each batch is let go once
// folded. A batch that is the reader's failure ends the run unfolded and
// is returned, for consume to handle; otherwise applyRun returns nil. A
// fold fault rolls the whole run back and is a *runFault.
func (p *Projector) applyRun(ctx context.Context, first *batch, more <-chan *batch) (*batch, error) {
	if first.err != nil {
		return first, nil
	}
	var (
		rest      *batch
		cur       *batch        // the batch being folded
		done      uint64        // the last sequence folded; 0: none yet
		pending   uint64        // the last batch's pending count
		events    int           // events folded
		lastEvent *engine.Event // the last event folded
	)
	err := p.s.update(func(tx *bolt.Tx) (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = &foldFault{reason: fmt.Sprintf("panic: %v", r)}
			}
		}()
		for b := first; ; {
			p.trim(b)
			if b.last > max(done, p.s.Checkpoint()) {
				cur = b
				if _, err := p.fold(tx, b, nil); err != nil {
					return err
				}
				done, pending, events = b.last, b.pending, events+len(b.events)
				if n := len(b.events); n > 0 {
					lastEvent = b.events[n-1]
				}
			}
			if events >= p.opts.runEvents || b.pending == 0 || (p.opts.until > 0 && b.last >= p.opts.until) {
				break
			}
			var ok bool
			select {
			case b, ok = <-more:
			case <-p.stopCh:
			case <-p.drainCh:
			case <-ctx.Done():
			}
			if !ok {
				break
			}
			if b.err != nil {
				rest = b
				break
			}
		}
		if p.opts.onCommit != nil {
			return p.opts.onCommit(tx)
		}
		return nil
	})
	if err != nil {
		var fault *foldFault
		if errors.As(err, &fault) && cur != nil {
			return nil, &runFault{last: cur.last, err: err}
		}
		return nil, fmt.Errorf("projections: commit batches up to sequence %d: %w", done, err)
	}
	if done > 0 {
		summary := &batch{last: done, pending: pending}
		if lastEvent != nil {
			summary.events = []*engine.Event{lastEvent}
		}
		p.committed(summary, nil, nil)
	}
	return rest, nil
}

// runFailed says how consume ends after applyRun failed with err. After a
// fold fault the run is read again from the checkpoint and applied batch
// by batch (see runs), where apply finds and parks the culprit; any other
// failure stops the projector.
func (p *Projector) runFailed(err error) ending {
	var fault *runFault
	if !errors.As(err, &fault) {
		p.fail(err)
		return endFatal
	}
	p.log.Error("projections: a run of batches failed to fold; folding them one batch at a time",
		"from", p.s.Checkpoint()+1, "to", fault.last, "err", fault.err)
	p.singleUntil = fault.last
	return endReadError
}
