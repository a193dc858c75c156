package projections

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/engine/journal"
)

// ProjectorOptions configures a Projector. The zero value is the live
// projector of transferd serve.
type ProjectorOptions struct {
	// MaxBatch bounds the events folded and committed in one bbolt
	// transaction; default DefaultMaxBatch. Larger batches catch up
	// faster (fewer fsyncs, each transfer loaded fewer times).
	MaxBatch int
	// BatchWait is how long a batch may wait for more events once the
	// stream has none pending; default 0: commit what is there at once.
	// A few milliseconds trade latency for fewer fsyncs under a trickle.
	BatchWait time.Duration
	// NoPublish leaves the TRANSFERS feed alone: changed transfers stay in
	// the outbox, for a later projector to publish.
	NoPublish bool
	// PublishConcurrency bounds the feed's unacknowledged publishes;
	// default 64.
	PublishConcurrency int
	// DrainTimeout bounds how long Drain waits for the feed to publish
	// the last changes; default 10 seconds.
	DrainTimeout time.Duration
	// Notify, when set, is called after every commit with the transfers
	// it changed, from the projector's goroutine: it must return quickly
	// (hand off to a channel without blocking) and must not modify them.
	Notify func([]Change)
	// Logger receives warnings (unreadable messages, an unreachable
	// journal, failed publishes); nil means slog.Default().
	Logger *slog.Logger

	until       uint64                                                            // stop once the checkpoint reaches it; 0: never
	outboxAfter uint64                                                            // only events after it put transfers in the outbox
	progress    func(cp uint64)                                                   // called after each commit
	release     bool                                                              // let the mapped pages go every releaseStep of growth (Store.release)
	runEvents   int                                                               // > 0: fold consecutive batches in one transaction up to this many events (applyRun)
	onCommit    func(*bolt.Tx) error                                              // extra writes in each batch's transaction
	beforeApply func(*engine.Event)                                               // tests: called before each event is applied
	feedSync    func(ctx context.Context, sync func(context.Context) error) error // tests: wraps the feed's sync
}

// DefaultMaxBatch is ProjectorOptions.MaxBatch's default: the live
// projector's. Under a shuffled load nearly every event of a batch dirties
// pages of its own, and bbolt keeps a commit's dirty pages in memory (and
// its page pool afterwards): 2,000 events hold serve's peak memory about
// 100 MB below 10,000 at no cost in catch-up speed (docs/performance.md,
// Memory). A rebuild, which runs alone, folds runs of rebuildMaxBatch
// batches up to rebuildRunEvents per commit.
const DefaultMaxBatch = 2000

// releaseStep is how much a rebuild's file grows between two releases of
// its mapped pages (Store.release).
const releaseStep = 8 << 20

// A rebuild reads batches of rebuildMaxBatch events and folds
// consecutive ones in one transaction until it holds rebuildRunEvents
// (applyRun): fewer, larger commits write each page for more events (30%
// faster than DefaultMaxBatch at 100k events), while only the batch being
// folded and the one read ahead are in memory, not a whole commit's
// events (peak RSS 170 → 110 MB at 175,000 events, docs/performance.md).
const (
	rebuildMaxBatch  = 2500
	rebuildRunEvents = 10000
)

func (o ProjectorOptions) withDefaults() ProjectorOptions {
	if o.MaxBatch <= 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	o.MaxBatch = min(o.MaxBatch, 1<<16)
	if o.PublishConcurrency <= 0 {
		o.PublishConcurrency = 64
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Change is a transfer changed by a committed batch.
type Change struct {
	// Transfer is the new state. It is shared: read it, never modify it.
	// FeedMessage(Transfer) is what the TRANSFERS feed publishes for it.
	Transfer *engine.Transfer
	// Seq is the checkpoint of the commit: every event up to it is in.
	Seq uint64
}

// Projector folds the MIGRATIONS stream into a Store, from the store's
// checkpoint on, and publishes every changed transfer's new state on the
// TRANSFERS feed. Its lifecycle follows jetstream.ConsumeContext: Stop,
// Drain, Closed.
//
// Each batch of events is folded and committed in one bbolt transaction
// together with the checkpoint, so a crash at any moment resumes from the
// last commit without skipping or applying anything twice. An event whose
// identity was already applied to its transfer is skipped, however long
// after the first delivery it comes back.
//
// Feed. Every committed batch records its changed transfers in the
// store's outbox (row → version) in the same transaction. A publisher
// goroutine publishes the current state of each outbox entry on
// journal.TransferSubject(id, phase) with Nats-Msg-Id "<id>:<version>",
// and the entry is removed in a later transaction once JetStream
// acknowledged it. The feed is therefore at least once and coalescing:
// every transfer's latest state is published; intermediate versions
// replaced before they were published (within a batch, or while the feed
// lagged) are not. After a crash the outbox is published again from the
// start: entries acknowledged but not yet removed are republished with the
// same Nats-Msg-Id, which JetStream drops within its duplicate window (2
// minutes by default); after a longer outage a consumer may see a state
// twice and must treat (transferId, version) as idempotent. A failing
// publish is retried with backoff and never holds up or rolls back the
// projection.
type Projector struct {
	j    *journal.Journal
	s    *Store
	opts ProjectorOptions
	log  *slog.Logger
	feed *feed // nil with NoPublish

	stopCh, drainCh     chan struct{}
	stopOnce, drainOnce sync.Once
	closed              chan struct{}

	errMu sync.Mutex
	err   error

	lastEventAt atomic.Int64 // Unix nanoseconds
	committedAt atomic.Int64 // Unix nanoseconds
	lastKick    time.Time    // when a commit last woke the feed
	released    int64        // the store's size when its mapped pages were last let go (opts.release)
	singleUntil uint64       // after a run's fold fault: apply batches one by one up to this sequence
}

// Start starts a projector on s reading from j. It fails with ErrRunning
// if s already has one, and with ErrAhead if s is ahead of the stream.
// Cancelling ctx has the effect of Stop.
func Start(ctx context.Context, j *journal.Journal, s *Store, opts ProjectorOptions) (*Projector, error) {
	if !s.projecting.CompareAndSwap(false, true) {
		return nil, ErrRunning
	}
	opts = opts.withDefaults()
	p := &Projector{
		j: j, s: s, opts: opts, log: opts.Logger,
		stopCh: make(chan struct{}), drainCh: make(chan struct{}), closed: make(chan struct{}),
	}
	if last, err := j.LastSeq(ctx); err == nil && last < s.Checkpoint() {
		s.projecting.Store(false)
		return nil, fmt.Errorf("%w: %s is at sequence %d, MIGRATIONS ends at %d", ErrAhead, s.path, s.Checkpoint(), last)
	}
	if err := s.view(func(tx *bolt.Tx) error {
		p.lastEventAt.Store(int64(getU64(tx.Bucket(bucketMeta).Get(metaLastEventAt))))
		return nil
	}); err != nil {
		s.projecting.Store(false)
		return nil, err
	}
	if !opts.NoPublish {
		p.feed = newFeed(j, s, opts.PublishConcurrency, p.log)
		if hook, sync := opts.feedSync, p.feed.syncStates; hook != nil {
			p.feed.syncStates = func(ctx context.Context) error { return hook(ctx, sync) }
		}
	}
	go p.run(ctx)
	return p, nil
}

// Run runs a projector until ctx ends, then drains it and returns its
// error: nil after a clean shutdown.
func Run(ctx context.Context, j *journal.Journal, s *Store, opts ProjectorOptions) error {
	p, err := Start(context.WithoutCancel(ctx), j, s, opts)
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		p.Drain()
	case <-p.Closed():
	}
	<-p.Closed()
	return p.Err()
}

// CatchUp projects every event the stream holds when it is called, waits
// for the feed to publish the changes (unless opts.NoPublish), and
// returns. If ctx ends first, it stops and returns ctx's error.
func CatchUp(ctx context.Context, j *journal.Journal, s *Store, opts ProjectorOptions) error {
	last, err := j.LastSeq(ctx)
	if err != nil {
		return fmt.Errorf("projections: catch up: %w", err)
	}
	return catchUpTo(ctx, j, s, last, opts)
}

func catchUpTo(ctx context.Context, j *journal.Journal, s *Store, until uint64, opts ProjectorOptions) error {
	opts.until = max(until, 1)
	p, err := Start(context.WithoutCancel(ctx), j, s, opts)
	if err != nil {
		return err
	}
	if until <= s.Checkpoint() {
		p.Drain()
	}
	select {
	case <-p.Closed():
		return p.Err()
	case <-ctx.Done():
		p.Stop()
		<-p.Closed()
		return fmt.Errorf("projections: catch up: %w", ctx.Err())
	}
}

// Stop stops the projector soon: a batch being committed completes, read
// but uncommitted events are left for the next start, and feed entries not
// yet published stay in the outbox. Stop returns at once; wait on Closed.
func (p *Projector) Stop() { p.stopOnce.Do(func() { close(p.stopCh) }) }

// Drain stops reading, commits the events already read, waits (at most
// DrainTimeout) for the feed to publish every change, and stops. Drain
// returns at once; wait on Closed.
func (p *Projector) Drain() { p.drainOnce.Do(func() { close(p.drainCh) }) }

// Closed is closed when the projector has stopped and will not touch the
// store again; the store may then be closed.
func (p *Projector) Closed() <-chan struct{} { return p.closed }

// Err returns the error that stopped the projector (a failed bbolt
// commit, a corrupt stored transfer), or nil. It is final once Closed is
// closed.
func (p *Projector) Err() error {
	p.errMu.Lock()
	defer p.errMu.Unlock()
	return p.err
}

func (p *Projector) fail(err error) {
	p.errMu.Lock()
	defer p.errMu.Unlock()
	if p.err == nil {
		p.err = err
	}
}

// Lag is how far a projector is behind the stream.
type Lag struct {
	// Checkpoint is the last sequence committed to the store.
	Checkpoint uint64
	// LastSeq is the last sequence in MIGRATIONS.
	LastSeq uint64
	// Behind is LastSeq - Checkpoint: events stored but not yet projected.
	Behind uint64
	// LastEventAt is the receive time of the last event projected.
	LastEventAt time.Time
	// CommittedAt is when this projector last committed (zero before).
	CommittedAt time.Time
}

// Delay is how long the oldest unprojected event has waited at most, at
// now: zero when nothing is behind, else the time since LastEventAt
// (events are received in roughly stream order). /readyz compares it with
// a bound.
func (l Lag) Delay(now time.Time) time.Duration {
	if l.Behind == 0 || l.LastEventAt.IsZero() {
		return 0
	}
	return max(0, now.Sub(l.LastEventAt))
}

// Lag asks the journal for the stream's last sequence and compares it with
// the checkpoint. Failing to reach the journal wraps journal.ErrUnavailable.
func (p *Projector) Lag(ctx context.Context) (Lag, error) {
	last, err := p.j.LastSeq(ctx)
	if err != nil {
		return Lag{}, err
	}
	l := Lag{Checkpoint: p.s.Checkpoint(), LastSeq: last}
	if last > l.Checkpoint {
		l.Behind = last - l.Checkpoint
	}
	if ns := p.lastEventAt.Load(); ns != 0 {
		l.LastEventAt = time.Unix(0, ns).UTC()
	}
	if ns := p.committedAt.Load(); ns != 0 {
		l.CommittedAt = time.Unix(0, ns).UTC()
	}
	return l, nil
}

// Reconnection backoff when the journal cannot be read.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 10 * time.Second
	// ackFlushDelay is how long published feed entries may wait for a
	// batch to carry their removal from the outbox before a transaction
	// of their own does.
	ackFlushDelay = 200 * time.Millisecond
	// feedMaxDelay bounds how long a projector that is catching up keeps
	// changes from the feed.
	feedMaxDelay = 2 * time.Second
)

// ending says why the read loop ended.
type ending int

const (
	endStop ending = iota
	endDrain
	endReadError
	endFatal
)

func (p *Projector) run(ctx context.Context) {
	defer close(p.closed)
	defer p.s.projecting.Store(false)
	feedCtx, stopFeed := context.WithCancel(context.WithoutCancel(ctx))
	defer stopFeed()
	var feedDone chan struct{}
	if p.feed != nil {
		feedDone = make(chan struct{})
		go func() {
			defer close(feedDone)
			p.feed.run(feedCtx)
		}()
		p.feed.kick() // publish what a previous run left in the outbox
	}

	end := p.project(ctx)

	if p.feed != nil {
		if end == endDrain {
			wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.opts.DrainTimeout)
			if err := p.feed.flush(wctx); err != nil {
				p.log.Warn("projections: feed not fully published at drain; the outbox keeps the rest", "err", err)
			}
			cancel()
		}
		stopFeed()
		<-feedDone
		if end != endFatal {
			if err := p.commitAcks(); err != nil {
				p.fail(err)
			}
		}
	}
}

// project reads and applies batches until stopped, drained or failed,
// reopening the reader after journal failures.
func (p *Projector) project(ctx context.Context) ending {
	backoff := minBackoff
	for {
		if p.done() {
			return endDrain
		}
		r, err := p.j.Read(ctx, p.s.Checkpoint(), "")
		if err == nil {
			from := p.s.Checkpoint()
			end := p.consume(ctx, r)
			if end != endReadError {
				return end
			}
			if p.s.Checkpoint() > from {
				backoff = minBackoff
			}
		} else if ctx.Err() == nil { // a shutdown is no journal failure
			p.log.Warn("projections: cannot read the journal; retrying", "err", err, "retry", backoff)
		}
		if end, ok := p.sleep(ctx, backoff); ok {
			return end
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// done reports whether the projector has reached opts.until.
func (p *Projector) done() bool { return p.opts.until > 0 && p.s.Checkpoint() >= p.opts.until }

// sleep waits d, or returns how the projector should end if told to.
func (p *Projector) sleep(ctx context.Context, d time.Duration) (ending, bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return 0, false
	case <-p.stopCh:
		return endStop, true
	case <-ctx.Done():
		return endStop, true
	case <-p.drainCh:
		return endDrain, true
	}
}

// consume applies the batches of one reader until it fails or the
// projector is told to end.
func (p *Projector) consume(ctx context.Context, r *journal.Reader) ending {
	rctx, cancel := context.WithCancel(ctx)
	// Unbuffered: the reader holds one batch ready while a commit runs,
	// and what arrives meanwhile waits for that commit only, not for a
	// batch queued behind it as well.
	batches := make(chan *batch)
	go p.read(rctx, r, batches)
	defer func() {
		cancel()
		for range batches { // let the reader goroutine finish and stop r
		}
	}()

	var acked <-chan struct{}
	if p.feed != nil {
		acked = p.feed.acked
	}
	var flush <-chan time.Time
	for {
		select {
		case <-p.stopCh:
			return endStop
		case <-ctx.Done():
			return endStop
		case <-p.drainCh:
			cancel()
			for b := range batches {
				if b.err != nil {
					break
				}
				if err := p.apply(b); err != nil {
					p.fail(err)
					return endFatal
				}
			}
			return endDrain
		case b, ok := <-batches:
			if !ok {
				// The reader closes batches without an error only when
				// ctx ended; select may pick this case before ctx.Done.
				return endStop
			}
			if p.runs() {
				var err error
				if b, err = p.applyRun(ctx, b, batches); err != nil {
					return p.runFailed(err)
				}
				if b == nil {
					if p.done() {
						return endDrain
					}
					continue
				}
			}
			if b.err != nil {
				p.log.Warn("projections: reading the journal failed; reconnecting", "err", b.err)
				return endReadError
			}
			if err := p.apply(b); err != nil {
				p.fail(err)
				return endFatal
			}
			if p.done() {
				return endDrain
			}
		case <-acked:
			if flush == nil {
				flush = time.After(ackFlushDelay)
			}
		case <-flush:
			flush = nil
			if err := p.commitAcks(); err != nil {
				p.fail(err)
				return endFatal
			}
		}
	}
}
