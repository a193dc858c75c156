package projections

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/transferd/transferd/engine"
)

// The write model: how a batch is folded into the store's buckets (see
// schema.go for the layout) in one bbolt transaction, and what a commit
// hands on to the feed and Notify.

// touched is a transfer a batch touches, loaded once per batch.
type touched struct {
	id      string
	row     uint64
	isNew   bool
	stored  []byte           // the row before the batch, valid in the transaction
	t       *engine.Transfer // the state being folded
	applied []identity       // identities applied before the batch, ascending
	added   []identity       // identities applied by the batch
	old     []string         // index key prefixes before the batch, as in indexes
	oldOrig string           // originalTransferId before the batch
	// Before the batch: the phase and whether the transfer needed action.
	oldPhase  engine.Phase
	oldAction bool
	changed   bool
	lastSeq   uint64 // the last event applied to it
	data      []byte // the new row: canonical JSON and identities
}

// apply folds b into the store in one transaction, then publishes.
func (p *Projector) apply(b *batch) error {
	p.trim(b)
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

// trim drops what b holds past opts.until.
func (p *Projector) trim(b *batch) {
	if u := p.opts.until; u > 0 && b.last > u {
		b.events = slices.DeleteFunc(b.events, func(e *engine.Event) bool { return e.Seq > u })
		b.unparsable = slices.DeleteFunc(b.unparsable, func(s uint64) bool { return s > u })
		b.corrupt = slices.DeleteFunc(b.corrupt, func(s uint64) bool { return s > u })
		b.last = u
	}
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
	p.s.commits.Add(1)
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
	if p.opts.release {
		p.released = p.s.release(p.released, releaseStep)
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
			if tt.t, errs[i] = engine.UnmarshalTransfer(rowJSON(tt.stored)); errs[i] == nil {
				tt.applied, errs[i] = rowIdentities(tt.stored)
			}
			tt.stored = nil // bbolt's memory: not to be kept past the transaction
		}
	})
	for i, tt := range all {
		if errs[i] != nil {
			return nil, fmt.Errorf("stored transfer %s (row %d): %w", tt.id, tt.row, errs[i])
		}
		if tt.t != nil {
			tt.old = indexPrefixes(tt.t)
			tt.oldOrig = tt.t.OriginalTransferID
			tt.oldPhase, tt.oldAction = tt.t.Phase, tt.t.NeedsAction() != ""
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
		id := identityOf(e.Key())
		if hasIdentity(tt.applied, id) || !tt.t.Apply(e) {
			c.duplicates++
			continue
		}
		tt.added = append(tt.added, id)
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
	parallel(len(changed), func(i int) {
		tt := changed[i]
		var js []byte
		if js, encErrs[i] = tt.t.EncodeCanonical(); encErrs[i] == nil {
			tt.data = encodeRow(js, append(tt.applied, tt.added...))
		}
	})
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
	for i, v := range indexPrefixes(tt.t) {
		if old := tt.old[i]; old != v {
			if old != "" {
				w.del(indexes[i].bucket, rowed(old, tt.row))
			}
			if v != "" {
				w.put(indexes[i].bucket, rowed(v, tt.row), []byte{})
			}
		}
	}
	c.phase(tt.oldPhase, -1)
	c.phase(tt.t.Phase, +1)
	if tt.oldAction {
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

// indexPrefixes returns t's key prefix in each of indexes ("" where it
// has no entry).
func indexPrefixes(t *engine.Transfer) []string {
	ps := make([]string, len(indexes))
	for i, ix := range indexes {
		ps[i] = ix.prefix(t)
	}
	return ps
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
