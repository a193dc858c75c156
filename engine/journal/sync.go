package journal

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// GroupCommitSync rests on two facts of nats-server's file store (2.15),
// which the power-cut test (engine/journal/internal/powercut) checks:
// a single-replica stream writes a message to its current block file,
// <JetStream store>/<account>/streams/<stream>/msgs/<index>.blk, before it
// acknowledges it; and the server recovers a stream from its block files
// (it rebuilds a missing or stale index). Syncing those files therefore
// makes durable every message acknowledged before the sync began.

// kvStream is the name of a KV bucket's stream.
func kvStream(bucket string) string { return "KV_" + bucket }

// streamMsgsDir returns where the embedded server whose JetStream store is
// storeDir (Server.StoreDir) keeps the message blocks of stream.
func streamMsgsDir(storeDir, stream string) string {
	return filepath.Join(storeDir, server.DEFAULT_GLOBAL_ACCOUNT, "streams", stream, "msgs")
}

// syncer makes the embedded store's acknowledged writes durable. A writer
// waits for a sync of the stream it wrote to; the syncer syncs, in rounds,
// the files of every stream waited for since the previous round began. Up
// to maxSyncRounds rounds overlap: the next gathers, and starts, while one
// is syncing, so a write waits for about one round, not for the rest of
// the one in progress and then its own. The calls made while
// maxSyncRounds rounds run share the next.
type syncer struct {
	streams map[string]*streamFiles // fixed at newSyncer
	stats   *commitCounters
	log     *slog.Logger // told of a failed sync; nil for none

	mu     sync.Mutex
	dirty  map[string]bool // streams to sync in the next round
	next   *round          // answers the calls made since then
	cur    *epoch          // the writes begun since the last round began
	closed bool
	// failed is set when a sync fails, or the store is being recovered:
	// nothing more is acknowledged until resume (see recovery).
	failed error
	onFail func(error) // told of a failed sync; nil for none
	wake   chan struct{}
	done   chan struct{}

	took   atomic.Int64   // how long the last round's syncs took, in ns
	rounds sync.WaitGroup // the rounds syncing
	slots  chan struct{}  // one per round syncing, up to maxSyncRounds
	// syncing, when set (by tests), is called as a round begins to sync a
	// stream's files.
	syncing func(stream string)

	// files is held shared while a round syncs the streams' files, and
	// exclusively by the recovery while it rewrites them.
	files sync.RWMutex
}

// maxSyncRounds is how many rounds sync at the same time at most.
const maxSyncRounds = 2

// epoch counts the writes begun between two rounds and not yet waiting
// for a sync. A round lets the writes begun before it join it, for at most
// as long as the previous round's syncs took (and maxGather): a sync costs
// about 0.2 ms of CPU here, and under load the writes still in flight are
// the ones about to wait. On an idle journal there are none, and no wait.
type epoch struct {
	n      int
	sealed bool          // the round after it has begun
	joined chan struct{} // closed once sealed with n == 0
}

// maxGather bounds how long a round waits for writes to join it.
const maxGather = 2 * time.Millisecond

func newEpoch() *epoch { return &epoch{joined: make(chan struct{})} }

// leave takes one write off e. s.mu is held.
func (e *epoch) leave() {
	e.n--
	if e.sealed && e.n == 0 {
		close(e.joined)
	}
}

// streamFiles are the message blocks of one stream, synced by the
// syncer's rounds (maxSyncRounds at a time at most).
type streamFiles struct {
	dir   string
	every bool // sync every block, not only the newest: the stream rewrites old ones (a KV bucket)

	mu     sync.Mutex
	blocks []uint64 // the block indexes known synced, with the directory
}

func (f *streamFiles) known() []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.blocks
}

// round is one sync, and the calls it answers.
type round struct {
	done  chan struct{}
	calls uint64
	err   error
}

// newSyncer starts a syncer of the streams named in every (true for those
// whose old blocks are rewritten) of the embedded server whose JetStream
// store is storeDir.
func newSyncer(storeDir string, every map[string]bool, stats *commitCounters, log *slog.Logger) (*syncer, error) {
	s := &syncer{
		streams: map[string]*streamFiles{},
		stats:   stats,
		log:     log,
		dirty:   map[string]bool{},
		cur:     newEpoch(),
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		slots:   make(chan struct{}, maxSyncRounds),
	}
	for name, e := range every {
		f := &streamFiles{dir: streamMsgsDir(storeDir, name), every: e}
		// The blocks there now were synced by syncTree.
		var err error
		if f.blocks, err = listBlocks(f.dir); err != nil {
			return nil, fmt.Errorf("journal: %s: %w", name, err)
		}
		s.streams[name] = f
	}
	go s.loop()
	return s, nil
}

// begin records that a write is about to be published; pass its epoch to
// sync, or to abandon if the write fails.
func (s *syncer) begin() *epoch {
	s.mu.Lock()
	e := s.cur
	e.n++
	s.mu.Unlock()
	return e
}

// abandon takes a failed write off its epoch.
func (s *syncer) abandon(e *epoch) {
	s.mu.Lock()
	e.leave()
	s.mu.Unlock()
}

// sync waits until every write to stream acknowledged before the call is
// on disk, or ctx ends. e is the write's epoch (from begin), or nil.
func (s *syncer) sync(ctx context.Context, stream string, e *epoch) error {
	s.mu.Lock()
	if e != nil {
		e.leave()
	}
	if err := s.failed; err != nil {
		s.mu.Unlock()
		return err
	}
	if s.closed {
		s.mu.Unlock()
		return errClosed
	}
	s.dirty[stream] = true
	r := s.next
	if r == nil {
		r = &round{done: make(chan struct{})}
		s.next = r
	}
	r.calls++
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// suspend makes every sync fail with err until resume, and waits for a
// round syncing files to end.
func (s *syncer) suspend(err error) {
	s.mu.Lock()
	s.failed = err
	s.mu.Unlock()
	s.files.Lock()
	s.files.Unlock() //nolint:staticcheck // waits for the rounds in progress
}

// resume lets syncs succeed again, once the recovery has rewritten every
// block that may hold a write made since the last good round: the blocks
// there now are all on disk.
func (s *syncer) resume() {
	s.files.Lock()
	for _, f := range s.streams {
		if blocks, err := listBlocks(f.dir); err == nil {
			f.mu.Lock()
			f.blocks = blocks
			f.mu.Unlock()
		}
	}
	s.files.Unlock()
	s.mu.Lock()
	s.failed = nil
	s.mu.Unlock()
}

// close runs the round already asked for, then stops the syncer.
func (s *syncer) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	<-s.done
}

func (s *syncer) loop() {
	defer close(s.done)
	defer s.rounds.Wait()
	gather := time.NewTimer(time.Hour)
	gather.Stop()
	for {
		s.mu.Lock()
		asked, closed := s.next != nil, s.closed
		s.mu.Unlock()
		if !asked {
			if closed {
				return
			}
			<-s.wake
			continue
		}
		s.slots <- struct{}{} // wait while maxSyncRounds rounds sync
		s.mu.Lock()
		e := s.cur
		s.cur = newEpoch()
		e.sealed = true
		if e.n == 0 {
			close(e.joined)
		}
		s.mu.Unlock()
		if wait := min(time.Duration(s.took.Load()), maxGather); wait > 0 && !closed {
			gather.Reset(wait)
			select {
			case <-e.joined:
			case <-gather.C:
			}
			gather.Stop()
		}

		s.mu.Lock()
		r, dirty, failed := s.next, s.dirty, s.failed
		s.next, s.dirty = nil, map[string]bool{}
		s.mu.Unlock()
		if failed != nil {
			<-s.slots
			r.err = failed
			close(r.done)
			continue
		}
		s.rounds.Add(1)
		go func() {
			defer s.rounds.Done()
			s.round(r, dirty)
			<-s.slots
		}()
	}
}

// round syncs the files of the dirty streams, then answers r's calls.
func (s *syncer) round(r *round, dirty map[string]bool) {
	start := time.Now()
	s.files.RLock()
	for _, name := range slices.Sorted(maps.Keys(dirty)) {
		if s.syncing != nil {
			s.syncing(name)
		}
		f := s.streams[name]
		if err := f.sync(); err != nil {
			// After a failed fsync the kernel may have dropped the dirty
			// pages: a later fsync could succeed without them. Refuse
			// until the recovery has rewritten what may be lost (see
			// recovery).
			r.err = fmt.Errorf("sync %s: %w", f.dir, err)
			s.mu.Lock()
			if s.failed == nil {
				s.failed = r.err
			}
			onFail := s.onFail
			s.mu.Unlock()
			if s.log != nil {
				s.log.Error("journal: a sync to disk failed; every append fails until the store is recovered", "err", err)
			}
			if onFail != nil {
				onFail(r.err)
			}
			break
		}
	}
	s.files.RUnlock()
	s.took.Store(int64(time.Since(start)))
	s.stats.syncs.Add(1)
	s.stats.synced.Add(r.calls)
	close(r.done)
}

// sync syncs the blocks that may hold messages written since the last
// round, and the directory when blocks came or went. A stream that only
// appends writes to its newest block and then to new ones, numbered on:
// those are synced, found without listing the directory. With every,
// every block is.
func (f *streamFiles) sync() error {
	known := f.known()
	if f.every || len(known) == 0 {
		return f.syncAll()
	}
	last := known[len(known)-1]
	if err := syncPath(f.blockPath(last)); err != nil {
		if errors.Is(err, fs.ErrNotExist) { // purged or compacted
			return f.syncAll()
		}
		return err
	}
	var added []uint64
	for b := last + 1; ; b++ {
		err := syncPath(f.blockPath(b))
		if errors.Is(err, fs.ErrNotExist) {
			break
		}
		if err != nil {
			return err
		}
		added = append(added, b)
	}
	if len(added) == 0 {
		return nil
	}
	if err := syncPath(f.dir); err != nil {
		return err
	}
	// Another round may have found some of them too.
	f.mu.Lock()
	for _, b := range added {
		if n := len(f.blocks); n == 0 || b > f.blocks[n-1] {
			f.blocks = append(f.blocks, b)
		}
	}
	f.mu.Unlock()
	return nil
}

// syncAll syncs every block, and the directory when blocks came or went.
func (f *streamFiles) syncAll() error {
	blocks, err := listBlocks(f.dir)
	if err != nil {
		return err
	}
	changed := !slices.Equal(blocks, f.known())
	for _, b := range blocks {
		err := syncPath(f.blockPath(b))
		if errors.Is(err, fs.ErrNotExist) { // removed since the listing
			changed = true
			continue
		}
		if err != nil {
			return err
		}
	}
	if changed {
		if err := syncPath(f.dir); err != nil {
			return err
		}
	}
	f.mu.Lock()
	f.blocks = blocks
	f.mu.Unlock()
	return nil
}

func (f *streamFiles) blockPath(index uint64) string {
	return filepath.Join(f.dir, strconv.FormatUint(index, 10)+".blk")
}

// listBlocks returns the indexes of the message blocks in dir, in order.
func listBlocks(dir string) ([]uint64, error) {
	list, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var blocks []uint64
	for _, e := range list {
		name, ok := strings.CutSuffix(e.Name(), ".blk")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(name, 10, 64); err == nil {
			blocks = append(blocks, n)
		}
	}
	slices.Sort(blocks)
	return blocks, nil
}

// syncPath syncs the file or directory at p.
func syncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncTree syncs every file and directory under root, and root: the store
// as the server left it when it created the streams, which a server that
// does not sync wrote without syncing.
func syncTree(root string) error {
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil // removed by the server meanwhile
		case err != nil:
			return err
		case d.IsDir():
			dirs = append(dirs, p)
			return nil
		case !d.Type().IsRegular():
			return nil
		}
		if err := syncPath(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Deepest first, so that each directory entry is synced after what it
	// names.
	for _, d := range slices.Backward(dirs) {
		if err := syncPath(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// durableKV is a bucket whose writes return only once they are on disk
// (GroupCommitSync): each waits for a sync of the bucket's stream.
type durableKV struct {
	jetstream.KeyValue
	s *syncer
}

func (kv durableKV) synced(ctx context.Context, err error) error {
	if err != nil {
		return err
	}
	if err := kv.s.sync(ctx, kvStream(kv.Bucket()), nil); err != nil {
		return unavailable("sync bucket "+kv.Bucket(), err)
	}
	return nil
}

func (kv durableKV) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	rev, err := kv.KeyValue.Put(ctx, key, value)
	return rev, kv.synced(ctx, err)
}

func (kv durableKV) PutString(ctx context.Context, key string, value string) (uint64, error) {
	rev, err := kv.KeyValue.PutString(ctx, key, value)
	return rev, kv.synced(ctx, err)
}

func (kv durableKV) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	rev, err := kv.KeyValue.Create(ctx, key, value, opts...)
	return rev, kv.synced(ctx, err)
}

func (kv durableKV) Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error) {
	rev, err := kv.KeyValue.Update(ctx, key, value, revision)
	return rev, kv.synced(ctx, err)
}

func (kv durableKV) Delete(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error {
	return kv.synced(ctx, kv.KeyValue.Delete(ctx, key, opts...))
}

func (kv durableKV) Purge(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error {
	return kv.synced(ctx, kv.KeyValue.Purge(ctx, key, opts...))
}

func (kv durableKV) PurgeDeletes(ctx context.Context, opts ...jetstream.KVPurgeOpt) error {
	return kv.synced(ctx, kv.KeyValue.PurgeDeletes(ctx, opts...))
}
