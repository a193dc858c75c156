package projections

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
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

	until       uint64               // stop once the checkpoint reaches it; 0: never
	outboxAfter uint64               // only events after it put transfers in the outbox
	progress    func(cp uint64)      // called after each commit
	onCommit    func(*bolt.Tx) error // extra writes in each batch's transaction
	beforeApply func(*engine.Event)  // tests: called before each event is applied
}

// DefaultMaxBatch is ProjectorOptions.MaxBatch's default.
const DefaultMaxBatch = 10000

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
	batches := make(chan *batch, 1)
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
	for i, e := range b.events {
		if bad[i] {
			p.log.Warn("projections: payload no longer parses; parking it",
				"seq", e.Seq, "transferId", e.TransferID, "id", e.ID)
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

// touched is a transfer a batch touches, loaded once per batch.
type touched struct {
	id      string
	row     uint64
	isNew   bool
	stored  []byte           // canonical JSON before the batch, valid in the transaction
	t       *engine.Transfer // the state being folded
	old     []string         // index values before the batch, as in indexes
	oldOrig string           // originalTransferId before the batch
	changed bool
	lastSeq uint64 // the last event applied to it
	data    []byte // the new canonical JSON
}

// apply folds b into the store in one transaction, then publishes.
func (p *Projector) apply(b *batch) error {
	if u := p.opts.until; u > 0 && b.last > u {
		b.events = slices.DeleteFunc(b.events, func(e *engine.Event) bool { return e.Seq > u })
		b.unparsable = slices.DeleteFunc(b.unparsable, func(s uint64) bool { return s > u })
		b.corrupt = slices.DeleteFunc(b.corrupt, func(s uint64) bool { return s > u })
		b.last = u
	}
	if b.last <= p.s.Checkpoint() {
		return nil
	}
	err := p.commit(b, nil)
	var fault *foldFault
	if !errors.As(err, &fault) || len(b.events) == 0 {
		return err
	}
	// Defence in depth: something in the batch cannot be folded although
	// engine.Foldable accepted it. Fold it again one event at a time and
	// park the event that fails on its own.
	p.log.Error("projections: a batch failed to fold; folding it one event at a time to park the culprit",
		"from", b.events[0].Seq, "to", b.last, "err", fault)
	for _, one := range split(b) {
		err := p.commit(one, nil)
		if errors.As(err, &fault) && len(one.events) == 1 {
			err = p.commit(one, map[uint64]string{one.events[0].Seq: fault.reason})
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// foldFault is a batch that could not be folded: a panic while folding,
// or a transfer that would not encode. Its transaction is rolled back.
type foldFault struct{ reason string }

func (f *foldFault) Error() string { return "projections: cannot fold: " + f.reason }

// split divides b into batches of one event each, in stream order; the
// corrupt and unparsable sequences go with the event whose range covers
// them, the last batch ending where b ends.
func split(b *batch) []*batch {
	out := make([]*batch, len(b.events))
	prev := uint64(0)
	for i, e := range b.events {
		one := &batch{events: []*engine.Event{e}, last: e.Seq, pending: b.pending}
		if i == len(b.events)-1 {
			one.last = b.last
		}
		for _, s := range b.unparsable {
			if s == e.Seq {
				one.unparsable = append(one.unparsable, s)
			}
		}
		for _, s := range b.corrupt {
			if s > prev && s <= one.last {
				one.corrupt = append(one.corrupt, s)
			}
		}
		prev = one.last
		out[i] = one
	}
	return out
}

// commit folds b into the store in one transaction, parking the events
// of park (sequence → reason) besides those engine.Foldable rejects, and
// then publishes.
func (p *Projector) commit(b *batch, park map[uint64]string) error {
	if b.last <= p.s.Checkpoint() {
		return nil
	}
	var changed []*touched
	var acks []outboxEntry
	if p.feed != nil {
		acks = p.feed.takeAcked()
	}
	err := p.s.update(func(tx *bolt.Tx) (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = &foldFault{reason: fmt.Sprintf("panic: %v", r)}
			}
		}()
		changed, err = p.fold(tx, b, park)
		if err != nil {
			return err
		}
		if err := removeAcked(tx, acks); err != nil {
			return err
		}
		if p.opts.onCommit != nil {
			return p.opts.onCommit(tx)
		}
		return nil
	})
	if err != nil {
		if p.feed != nil {
			p.feed.untake(acks)
		}
		var fault *foldFault
		if errors.As(err, &fault) && len(b.events) > 0 {
			return fault
		}
		return fmt.Errorf("projections: commit batch up to sequence %d: %w", b.last, err)
	}
	p.committed(b, changed, acks)
	return nil
}

// committed publishes a committed batch's effects. The store's checkpoint
// advances last, so that when Store.Wait returns, the lag and the Notify
// callback already reflect the batch.
func (p *Projector) committed(b *batch, changed []*touched, acks []outboxEntry) {
	defer p.s.advance(b.last)
	p.committedAt.Store(time.Now().UnixNano())
	if n := len(b.events); n > 0 {
		p.lastEventAt.Store(b.events[n-1].ReceivedAt.UnixNano())
	}
	if p.feed != nil {
		p.feed.removed(acks)
		if len(changed) > 0 {
			// While catching up, let changes pile up in the outbox (at most
			// feedMaxDelay): the feed then publishes each transfer's
			// latest state once instead of every batch's.
			now := time.Now()
			wake := b.pending < uint64(p.opts.MaxBatch) || now.Sub(p.lastKick) >= feedMaxDelay
			if wake {
				p.lastKick = now
			}
			p.feed.offer(changed, wake)
		}
	}
	if p.opts.Notify != nil && len(changed) > 0 {
		cs := make([]Change, len(changed))
		for i, c := range changed {
			cs[i] = Change{Transfer: c.t, Seq: b.last}
		}
		p.opts.Notify(cs)
	}
	if p.opts.progress != nil {
		p.opts.progress(b.last)
	}
}

// commitAcks removes published feed entries from the outbox in a
// transaction of their own.
func (p *Projector) commitAcks() error {
	if p.feed == nil {
		return nil
	}
	acks := p.feed.takeAcked()
	if len(acks) == 0 {
		return nil
	}
	if err := p.s.update(func(tx *bolt.Tx) error { return removeAcked(tx, acks) }); err != nil {
		p.feed.untake(acks)
		return fmt.Errorf("projections: commit feed acknowledgements: %w", err)
	}
	p.feed.removed(acks)
	return nil
}

// fold applies b's events to the transfers they touch and writes
// everything that changed, with the checkpoint, into tx.
func (p *Projector) fold(tx *bolt.Tx, b *batch, park map[uint64]string) ([]*touched, error) {
	rows := tx.Bucket(bucketTransfers)
	rows.FillPercent = fillRows
	applied := tx.Bucket(bucketApplied)
	meta := tx.Bucket(bucketMeta)

	// Load every touched transfer once, decoding in parallel.
	byID := make(map[string]*touched)
	var all []*touched
	for _, e := range b.events {
		if byID[e.TransferID] != nil {
			continue
		}
		tt := &touched{id: e.TransferID}
		if row, ok := rowOf(tx, e.TransferID); ok {
			tt.row = row
			if tt.stored = rows.Get(rowKey(row)); tt.stored == nil {
				return nil, fmt.Errorf("transfer %s: row %d has no transfer", tt.id, row)
			}
		}
		byID[e.TransferID] = tt
		all = append(all, tt)
	}
	errs := make([]error, len(all))
	parallel(len(all), func(i int) {
		if tt := all[i]; tt.stored != nil {
			tt.t, errs[i] = engine.UnmarshalTransfer(tt.stored)
			tt.stored = nil // bbolt's memory: not to be kept past the transaction
		}
	})
	for i, tt := range all {
		if errs[i] != nil {
			return nil, fmt.Errorf("stored transfer %s (row %d): %w", tt.id, tt.row, errs[i])
		}
		if tt.t != nil {
			tt.old = indexValues(tt.t)
			tt.oldOrig = tt.t.OriginalTransferID
		}
	}

	// Fold in stream order, skipping identities already applied. Writes
	// to the big buckets are sorted before they are made (see writes).
	var c counters
	w := newWrites()
	for _, e := range b.events {
		reason := park[e.Seq]
		if err := engine.Foldable(e); reason == "" && err != nil {
			reason = err.Error()
		}
		if reason != "" {
			p.log.Error("projections: parking an event that cannot be folded; it stays in the journal",
				"seq", e.Seq, "transferId", e.TransferID, "id", e.ID, "kind", e.Kind, "reason", reason)
			w.put(bucketParked, u64(e.Seq), newParked(e, reason).encode())
			c.parked++
			continue
		}
		if p.opts.beforeApply != nil {
			p.opts.beforeApply(e)
		}
		tt := byID[e.TransferID]
		if tt.t == nil {
			tt.t, tt.row, tt.isNew = engine.NewTransfer(tt.id), e.Seq, true
		}
		key := appliedKey(tt.row, e.Key())
		if (!tt.isNew && applied.Get(key) != nil) || !tt.t.Apply(e) {
			c.duplicates++
			continue
		}
		w.put(bucketApplied, key, u64(e.Seq))
		c.events++
		tt.changed, tt.lastSeq = true, e.Seq
	}
	c.unparsable = uint64(len(b.unparsable))
	c.corrupt = uint64(len(b.corrupt))

	var changed []*touched
	for _, tt := range all {
		if tt.changed {
			changed = append(changed, tt)
		}
	}
	encErrs := make([]error, len(changed))
	parallel(len(changed), func(i int) { changed[i].data, encErrs[i] = changed[i].t.EncodeCanonical() })
	if err := errors.Join(encErrs...); err != nil {
		return nil, &foldFault{reason: err.Error()}
	}
	slices.SortFunc(changed, func(a, b *touched) int { return cmp.Compare(a.row, b.row) })
	for _, tt := range changed {
		if err := p.write(tx, tt, w, &c); err != nil {
			return nil, fmt.Errorf("transfer %s: %w", tt.id, err)
		}
	}
	if err := w.apply(tx); err != nil {
		return nil, err
	}

	if err := c.commit(meta); err != nil {
		return nil, err
	}
	if n := len(b.events); n > 0 {
		if err := meta.Put(metaLastEventAt, u64(uint64(b.events[n-1].ReceivedAt.UnixNano()))); err != nil {
			return nil, err
		}
	}
	return changed, meta.Put(metaCheckpoint, u64(b.last))
}

// write stores a changed transfer and moves its index entries, lineage
// edges and counters from its old values to its new ones.
func (p *Projector) write(tx *bolt.Tx, tt *touched, w *writes, c *counters) error {
	key := rowKey(tt.row)
	if err := tx.Bucket(bucketTransfers).Put(key, tt.data); err != nil {
		return err
	}
	if tt.isNew {
		w.put(bucketIDs, []byte(tt.id), key)
		c.transfers++
		tt.old = make([]string, len(indexes))
	}
	for i, v := range indexValues(tt.t) {
		if old := tt.old[i]; old != v {
			if old != "" {
				w.del(indexes[i].bucket, indexKey(old, tt.row))
			}
			if v != "" {
				w.put(indexes[i].bucket, indexKey(v, tt.row), []byte{})
			}
		}
	}
	c.phase(engine.Phase(tt.old[phaseIndex]), -1)
	c.phase(tt.t.Phase, +1)
	if tt.old[actionIndex] != "" {
		c.needsAction--
	}
	if tt.t.NeedsAction() != "" {
		c.needsAction++
	}
	if err := linkOriginal(tx.Bucket(bucketLineage), tt.id, tt.oldOrig, tt.t.OriginalTransferID); err != nil {
		return err
	}
	if tt.lastSeq > p.opts.outboxAfter {
		return tx.Bucket(bucketOutbox).Put(key, u64(uint64(tt.t.Version)))
	}
	return nil
}

// Positions in indexes of the indexes that also have counters.
const (
	phaseIndex  = 3
	actionIndex = 4
)

func indexValues(t *engine.Transfer) []string {
	vs := make([]string, len(indexes))
	for i, ix := range indexes {
		vs[i] = ix.value(t)
	}
	return vs
}

// writes collects a batch's writes to some buckets and makes them in key
// order. bbolt splits pages only at commit, so a leaf receiving a batch's
// inserts grows within the transaction, and inserting into it out of order
// shifts everything inserted after: sorted, each insert shifts at most the
// entries the page already had.
type writes struct {
	ops map[string][]writeOp // bucket → operations
}

type writeOp struct {
	key, value []byte // value nil: delete
}

func newWrites() *writes { return &writes{ops: make(map[string][]writeOp)} }

func (w *writes) put(bucket, key, value []byte) {
	w.ops[string(bucket)] = append(w.ops[string(bucket)], writeOp{key, value})
}

func (w *writes) del(bucket, key []byte) {
	w.ops[string(bucket)] = append(w.ops[string(bucket)], writeOp{key: key})
}

// apply makes the writes, each bucket's in key order. A batch never
// writes one key twice (keys embed the transfer's row).
func (w *writes) apply(tx *bolt.Tx) error {
	for name, ops := range w.ops {
		b := tx.Bucket([]byte(name))
		if name == string(bucketApplied) {
			b.FillPercent = fillAppend
		}
		slices.SortFunc(ops, func(a, b writeOp) int { return bytes.Compare(a.key, b.key) })
		for _, op := range ops {
			var err error
			if op.value == nil {
				err = b.Delete(op.key)
			} else {
				err = b.Put(op.key, op.value)
			}
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	return nil
}

// counters are a batch's changes to the meta counters.
type counters struct {
	transfers, events, duplicates, unparsable, corrupt, parked uint64
	needsAction                                                int64
	phases                                                     map[engine.Phase]int64
}

func (c *counters) phase(p engine.Phase, d int64) {
	if p == "" {
		return
	}
	if c.phases == nil {
		c.phases = make(map[engine.Phase]int64)
	}
	c.phases[p] += d
}

func (c *counters) commit(meta *bolt.Bucket) error {
	add := func(key []byte, d int64) error {
		if d == 0 {
			return nil
		}
		// A counter back at zero is deleted, not kept as zero: a rebuild,
		// which folds in larger batches, never writes it, and the two stores
		// must be equal byte for byte (Verify).
		if v := int64(getU64(meta.Get(key))) + d; v != 0 {
			return meta.Put(key, u64(uint64(v)))
		}
		return meta.Delete(key)
	}
	for key, d := range map[string]int64{
		string(metaTransfers):   int64(c.transfers),
		string(metaEvents):      int64(c.events),
		string(metaDuplicates):  int64(c.duplicates),
		string(metaUnparsable):  int64(c.unparsable),
		string(metaCorrupt):     int64(c.corrupt),
		string(metaParked):      int64(c.parked),
		string(metaNeedsAction): c.needsAction,
	} {
		if err := add([]byte(key), d); err != nil {
			return err
		}
	}
	for ph, d := range c.phases {
		if err := add(metaPhase(ph), d); err != nil {
			return err
		}
	}
	return nil
}
