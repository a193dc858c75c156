package projections

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/engine/journal"
)

// FeedMessage returns what the TRANSFERS feed publishes for t: the subject
// migrations.transfers.<transferId>.<phase>, the Nats-Msg-Id
// "<transferId>:<version>", and the JSON of t.View() (the query API's
// transfer shape). An SSE hub fed by ProjectorOptions.Notify sends the same
// bytes and can use msgID as the event id. data is nil when the view
// cannot be encoded (a time beyond what JSON can write, which the
// projector never stores: see ParkedEvent); it never panics.
func FeedMessage(t *engine.Transfer) (subject, msgID string, data []byte) {
	data, err := json.Marshal(t.View())
	if err != nil {
		data = nil
	}
	return journal.TransferSubject(t.TransferID, t.Phase), t.TransferID + ":" + strconv.Itoa(t.Version), data
}

// outboxEntry is a transfer's row and the version the outbox asks to be
// published.
type outboxEntry struct{ row, version uint64 }

// feedRound bounds the entries one round reads from the outbox.
const feedRound = 1024

// Backoff between failed feed rounds.
const (
	feedMinBackoff = 200 * time.Millisecond
	feedMaxBackoff = 30 * time.Second
)

// feed publishes the outbox (see Projector). It reads the outbox in rounds
// from a read transaction, publishes the current state of each entry it
// has not published yet, and hands the acknowledged entries to the
// projector, which removes them in its next transaction.
type feed struct {
	j           *journal.Journal
	s           *Store
	log         *slog.Logger
	concurrency int
	syncStates  func(context.Context) error // puts published states on disk: Journal.SyncTransfers

	wake  chan struct{} // kick → run
	acked chan struct{} // run → projector: entries to remove

	mu        sync.Mutex
	fresh     map[uint64]*engine.Transfer // row → state just committed, saves reading it back
	published map[uint64]uint64           // row → version acknowledged, not yet removed
	pending   []outboxEntry               // acknowledged, not yet handed to the projector
	kicks     uint64                      // kick calls so far
	idleAt    uint64                      // kicks seen by the last round that found nothing to publish
	idle      chan struct{}               // closed and replaced when idleAt advances

	pos uint64 // where the next round starts reading the outbox
}

func newFeed(j *journal.Journal, s *Store, concurrency int, log *slog.Logger) *feed {
	return &feed{
		j: j, s: s, log: log, concurrency: concurrency, syncStates: j.SyncTransfers,
		wake: make(chan struct{}, 1), acked: make(chan struct{}, 1),
		published: make(map[uint64]uint64), idle: make(chan struct{}),
		fresh: make(map[uint64]*engine.Transfer),
	}
}

// maxFresh bounds the committed states the feed keeps in memory; beyond
// it, the feed reads states back from the store.
const maxFresh = 1 << 13

// offer hands the feed the states a batch committed, and wakes it if
// wake is set.
func (f *feed) offer(changed []*touched, wake bool) {
	f.mu.Lock()
	for _, c := range changed {
		if _, ok := f.fresh[c.row]; ok || len(f.fresh) < maxFresh {
			f.fresh[c.row] = c.t
		}
	}
	f.mu.Unlock()
	if wake {
		f.kick()
	}
}

// kick tells the feed that the outbox may have new entries.
func (f *feed) kick() uint64 {
	f.mu.Lock()
	f.kicks++
	k := f.kicks
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
	return k
}

// flush waits until the feed has published every outbox entry committed
// before the call, or ctx ends.
func (f *feed) flush(ctx context.Context) error {
	k := f.kick()
	for {
		f.mu.Lock()
		done, idle := f.idleAt >= k, f.idle
		f.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-idle:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// takeAcked returns the entries acknowledged since the last call.
func (f *feed) takeAcked() []outboxEntry {
	f.mu.Lock()
	defer f.mu.Unlock()
	acks := f.pending
	f.pending = nil
	return acks
}

// untake gives back entries whose removal was not committed.
func (f *feed) untake(acks []outboxEntry) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pending = append(f.pending, acks...)
}

// removed forgets entries whose removal was committed.
func (f *feed) removed(acks []outboxEntry) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range acks {
		if f.published[a.row] == a.version {
			delete(f.published, a.row)
		}
	}
}

// removeAcked deletes acknowledged entries from the outbox unless their
// transfer changed again since (a newer version waits to be published).
func removeAcked(tx *bolt.Tx, acks []outboxEntry) error {
	b := tx.Bucket(bucketOutbox)
	for _, a := range acks {
		key := rowKey(a.row)
		if getU64(b.Get(key)) == a.version {
			if err := b.Delete(key); err != nil {
				return err
			}
		}
	}
	return nil
}

func (f *feed) run(ctx context.Context) {
	backoff := feedMinBackoff
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.wake:
		}
		for {
			f.mu.Lock()
			k := f.kicks
			f.mu.Unlock()
			n, err := f.round(ctx)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				f.log.Warn("projections: publishing transfer states failed; retrying", "err", err, "retry", backoff)
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, feedMaxBackoff)
				continue
			}
			backoff = feedMinBackoff
			if n == 0 {
				f.mu.Lock()
				f.idleAt = max(f.idleAt, k)
				close(f.idle)
				f.idle = make(chan struct{})
				f.mu.Unlock()
				break
			}
		}
	}
}

// feedItem is an outbox entry with its transfer's state.
type feedItem struct {
	outboxEntry
	t    *engine.Transfer // the state, when the projector handed it over
	data []byte           // else its canonical JSON, copied out of the transaction
}

// round publishes up to feedRound entries not published yet, continuing
// from where the last round stopped and wrapping around once; it returns
// how many it published.
func (f *feed) round(ctx context.Context) (int, error) {
	items, err := f.collect(f.pos)
	if err == nil && len(items) == 0 && f.pos > 0 {
		f.pos = 0
		items, err = f.collect(0)
	}
	if err != nil || len(items) == 0 {
		return 0, err
	}
	f.pos = items[len(items)-1].row + 1

	var wg sync.WaitGroup
	sem := make(chan struct{}, f.concurrency)
	errs := make([]error, len(items))
	for i, it := range items {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = f.publish(ctx, it)
		})
	}
	wg.Wait()
	// The states were published without waiting for a sync each: one sync
	// puts them all on disk before the outbox may forget them, so a power
	// cut loses none (the outbox publishes again what it still holds).
	if err := f.syncStates(ctx); err != nil {
		return 0, err
	}
	var done []outboxEntry
	for i, it := range items {
		if errs[i] == nil {
			done = append(done, it.outboxEntry)
		}
	}
	f.mu.Lock()
	for _, e := range done {
		f.published[e.row] = e.version
	}
	f.pending = append(f.pending, done...)
	f.mu.Unlock()
	if len(done) > 0 {
		select {
		case f.acked <- struct{}{}:
		default:
		}
	}
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	return len(items), nil
}

// collect reads up to feedRound outbox entries from row from on that are
// not published yet. It holds f.mu from before the read transaction
// begins, so an entry that removed() forgets is one whose removal the
// transaction already sees.
func (f *feed) collect(from uint64) ([]feedItem, error) {
	var items []feedItem
	f.mu.Lock()
	defer f.mu.Unlock()
	err := f.s.view(func(tx *bolt.Tx) error {
		rows := tx.Bucket(bucketTransfers)
		c := tx.Bucket(bucketOutbox).Cursor()
		for k, v := c.Seek(rowKey(from)); k != nil && len(items) < feedRound; k, v = c.Next() {
			e := outboxEntry{row: getU64(k), version: getU64(v)}
			if f.published[e.row] == e.version {
				continue
			}
			if t := f.fresh[e.row]; t != nil && uint64(t.Version) == e.version {
				items = append(items, feedItem{outboxEntry: e, t: t})
				continue
			}
			data := rows.Get(k)
			if data == nil {
				return fmt.Errorf("projections: outbox row %d has no transfer", e.row)
			}
			items = append(items, feedItem{outboxEntry: e, data: bytes.Clone(rowJSON(data))})
		}
		return nil
	})
	return items, err
}

func (f *feed) publish(ctx context.Context, it feedItem) error {
	t := it.t
	if t == nil {
		var err error
		if t, err = engine.UnmarshalTransfer(it.data); err != nil {
			return fmt.Errorf("projections: outbox row %d: %w", it.row, err)
		}
	}
	subject, msgID, data := FeedMessage(t)
	if data == nil {
		// Never for a stored transfer; retrying could not help.
		f.log.Error("projections: a transfer state does not encode; not publishing it", "transferId", t.TransferID, "version", t.Version)
	} else if _, err := f.j.PublishTransfer(ctx, subject, msgID, data); err != nil {
		return err
	}
	f.mu.Lock()
	if ft := f.fresh[it.row]; ft != nil && uint64(ft.Version) <= it.version {
		delete(f.fresh, it.row)
	}
	f.mu.Unlock()
	return nil
}
