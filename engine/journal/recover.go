package journal

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// When the embedded server's store cannot be written (a full disk, an I/O
// error), nats-server 2.15 keeps a sticky write error on the stream (or, on
// some paths, shuts JetStream down) until it restarts, and the syncer keeps
// a failed fsync sticky. The journal's recovery (recovery.run) brings it
// back without a restart of the process:
//
//  1. It learns of the failure from the syncer (a failed fsync) or from
//     the server's health check (a stream write error, JetStream
//     disabled), run at once when the server logs a line telling of a
//     failed write, and every checkEvery as a backstop. From then on Writable reports
//     the cause and the syncer answers every sync with an error: nothing
//     more is acknowledged.
//  2. It shuts JetStream down (publishes fail at once, no responders) and
//     probes the store with backoff (minBackoff doubling to maxBackoff): a
//     file written, synced and removed in <DataDir>/nats.
//  3. With Config.SyncAlways it then rewrites every message block that may
//     hold a write made since the last good sync (see rewriteSuspect), and
//     only then starts JetStream again, which rebuilds each stream, and
//     its duplicate window, from the block files.
//
// Why a later sync is then safe: after a failed fsync the kernel may have
// marked the unsynced pages clean without writing them, so a later fsync
// of the same file succeeds without them; a message in those pages would
// be answered as a duplicate of a copy that is not on disk. A rewrite
// writes the bytes the store reads back into a new file, syncs it and
// renames it over the block, so after it every message the restarted
// JetStream knows (and can answer a duplicate of) is on disk; a message
// whose bytes the kernel threw away is not in the file, is unknown to the
// restarted JetStream, and its retry is stored anew. Blocks older than the
// newest one at the last good sync round were synced after their last
// write by that round, so they hold nothing suspect.

// Recovery's timing.
const (
	checkEvery = 5 * time.Second        // the health check's backstop poll
	minBackoff = 100 * time.Millisecond // the first probe's wait
	maxBackoff = 5 * time.Second        // the longest wait between probes
)

// errNotWritable is what the syncer answers while the store is being
// recovered.
var errNotWritable = errors.New("the store cannot be written")

// recovery watches whether the embedded server's store can be written,
// and brings JetStream back once it can.
type recovery struct {
	srv      *server.Server
	dir      string // <DataDir>/nats, the server's Options.StoreDir
	jsCfg    server.JetStreamConfig
	accounts bool // the global account's JetStream is enabled explicitly
	rewrite  bool // Config.SyncAlways: rewrite the suspect blocks
	log      *slog.Logger

	mu       sync.Mutex
	err      error   // why the store cannot be written; nil when it can
	reported error   // a failure reported and not yet acted on
	syncer   *syncer // nil unless GroupCommitSync
	kick     chan struct{}
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once

	recovered atomic.Uint64
}

func newRecovery(s *server.Server, dir string, cfg Config, accounts bool) *recovery {
	r := &recovery{
		srv:      s,
		dir:      dir,
		accounts: accounts,
		rewrite:  cfg.SyncAlways,
		log:      cfg.Logger,
		kick:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if c := s.JetStreamConfig(); c != nil {
		r.jsCfg = *c
	}
	// EnableJetStream adds the "jetstream" directory itself.
	r.jsCfg.StoreDir = dir
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	go r.run()
	return r
}

// attach lets the recovery suspend and resume s.
func (r *recovery) attach(s *syncer) {
	r.mu.Lock()
	r.syncer = s
	r.mu.Unlock()
	s.mu.Lock()
	s.onFail = r.report
	s.mu.Unlock()
}

// report tells the recovery of a write failure. It never blocks.
func (r *recovery) report(err error) {
	r.mu.Lock()
	if r.reported == nil {
		r.reported = err
	}
	r.mu.Unlock()
	r.wake()
}

// suspect asks for a health check at once: the server logged a line that
// tells of a failed write. The check confirms it (a line is not proof
// enough to restart JetStream). It never blocks: the server calls it with
// its locks held.
func (r *recovery) suspect() { r.wake() }

func (r *recovery) wake() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// writable returns why the store cannot be written, or nil.
func (r *recovery) writable() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

func (r *recovery) close() {
	r.stopOnce.Do(func() { close(r.stop) })
	<-r.done
}

func (r *recovery) run() {
	defer close(r.done)
	t := time.NewTicker(checkEvery)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-r.kick:
		case <-t.C:
		}
		if cause := r.check(); cause != nil {
			r.recover(cause)
		}
	}
}

// check returns the failure the syncer reported since the last check, or
// the one the server's health check finds (a stream's write error,
// JetStream disabled), or nil.
func (r *recovery) check() error {
	r.mu.Lock()
	cause := r.reported
	r.reported = nil
	r.mu.Unlock()
	if !r.srv.Running() { // shut down under the journal: nothing to recover
		return nil
	}
	if cause != nil {
		return cause
	}
	if !r.srv.JetStreamEnabled() {
		return errors.New("JetStream is disabled")
	}
	if hs := r.srv.Healthz(&server.HealthzOptions{}); hs.Status != "ok" && strings.Contains(hs.Error, "write error") {
		return errors.New(hs.Error)
	}
	return nil
}

// recover stops the store being written, waits until it can be, and
// starts JetStream again; see the comment at the top of this file.
func (r *recovery) recover(cause error) {
	start := time.Now()
	r.setErr(fmt.Errorf("%w: %w", errNotWritable, cause))
	r.log.Error("journal: the store cannot be written; appends fail (503) until it can, probing it", "err", cause)
	r.mu.Lock()
	s := r.syncer
	r.mu.Unlock()
	if s != nil {
		s.suspend(r.writable())
	}
	if r.srv.JetStreamEnabled() {
		if err := r.srv.ShutdownJetStream(); err != nil {
			r.log.Warn("journal: stopping JetStream", "err", err)
		}
	}
	for backoff, attempt := minBackoff, 1; ; backoff, attempt = min(2*backoff, maxBackoff), attempt+1 {
		select {
		case <-r.stop:
			return
		case <-time.After(backoff):
		}
		err := r.attempt(s)
		if err == nil {
			break
		}
		r.setErr(fmt.Errorf("%w: %w", errNotWritable, err))
		if attempt%10 == 0 {
			r.log.Warn("journal: the store still cannot be written", "err", err, "for", time.Since(start).Round(time.Second))
		}
	}
	// What was reported while JetStream was down is past: the probe
	// succeeded after it. A failure since is found by the next check.
	r.mu.Lock()
	r.reported = nil
	r.mu.Unlock()
	if s != nil {
		s.resume()
	}
	r.setErr(nil)
	r.recovered.Add(1)
	r.log.Info("journal: the store can be written again; appends resume", "after", time.Since(start).Round(time.Millisecond))
	select { // check at once that it stays so
	case r.kick <- struct{}{}:
	default:
	}
}

// attempt probes the store, rewrites what may not be on disk, and starts
// JetStream.
func (r *recovery) attempt(s *syncer) error {
	if err := r.probe(); err != nil {
		return err
	}
	if r.rewrite {
		if err := r.rewriteSuspect(s); err != nil {
			return err
		}
	}
	if !r.srv.JetStreamEnabled() {
		cfg := r.jsCfg
		if err := r.srv.EnableJetStream(&cfg); err != nil {
			return fmt.Errorf("start JetStream: %w", err)
		}
		if r.accounts {
			if err := r.srv.GlobalAccount().EnableJetStream(nil, nil); err != nil {
				return fmt.Errorf("start JetStream: %w", err)
			}
		}
	}
	if hs := r.srv.Healthz(&server.HealthzOptions{}); hs.Status != "ok" {
		// Stop it again: a stream that failed to load would answer.
		r.srv.ShutdownJetStream()
		return fmt.Errorf("JetStream after a restart: %s", hs.Error)
	}
	return nil
}

// probe writes, syncs and removes a file in the store's directory.
func (r *recovery) probe() error {
	p := filepath.Join(r.dir, ".transferd-probe")
	err := writeSynced(p, []byte("transferd: can the store be written?\n"), 0o600)
	if rerr := os.Remove(p); err == nil && rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = rerr
	}
	if err == nil {
		err = syncPath(r.dir)
	}
	return err
}

// rewriteSuspect rewrites, with JetStream stopped, every block of the
// synced streams that may hold a write made since the last good sync: in a
// stream that only appends, the newest block known to the syncer's last
// good round and every later one; in a stream that rewrites old blocks
// (a KV bucket with updates), every block. Without a syncer (the server
// syncs each write itself, and stops writing a stream at its first failure)
// that is the newest block of each stream.
func (r *recovery) rewriteSuspect(s *syncer) error {
	storeDir := filepath.Join(r.dir, server.JetStreamStoreDir)
	if s == nil {
		for _, name := range []string{StreamEvents, StreamTransfers, kvStream(BucketTenants), kvStream(BucketBindings),
			kvStream(BucketForgeCredentials), kvStream(BucketLeases)} {
			dir := streamMsgsDir(storeDir, name)
			blocks, err := listBlocks(dir)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return err
			}
			if len(blocks) > 0 {
				f := &streamFiles{dir: dir}
				if err := f.rewrite(blocks[len(blocks)-1:]); err != nil {
					return err
				}
			}
		}
		return nil
	}
	s.files.Lock()
	defer s.files.Unlock()
	for _, f := range s.streams {
		blocks, err := listBlocks(f.dir)
		if err != nil {
			return err
		}
		if !f.every && len(f.blocks) > 0 {
			from := f.blocks[len(f.blocks)-1]
			for len(blocks) > 0 && blocks[0] < from {
				blocks = blocks[1:]
			}
		}
		if err := f.rewrite(blocks); err != nil {
			return err
		}
	}
	return nil
}

// rewrite writes each of blocks again into a new file, syncs it, renames
// it over the block and syncs the directory.
func (f *streamFiles) rewrite(blocks []uint64) error {
	for _, b := range blocks {
		p := f.blockPath(b)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		mode := os.FileMode(0o600)
		if st, err := os.Stat(p); err == nil {
			mode = st.Mode().Perm()
		}
		tmp := filepath.Join(f.dir, fmt.Sprintf("transferd-rewrite-%d.tmp", b))
		if err := writeSynced(tmp, data, mode); err != nil {
			os.Remove(tmp)
			return err
		}
		if err := os.Rename(tmp, p); err != nil {
			os.Remove(tmp)
			return err
		}
	}
	if len(blocks) == 0 {
		return nil
	}
	return syncPath(f.dir)
}

// writeSynced writes data to a new file at p and syncs it.
func writeSynced(p string, data []byte, mode os.FileMode) error {
	fh, err := os.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	_, err = fh.Write(data)
	if err == nil {
		err = fh.Sync()
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	return err
}

func (r *recovery) setErr(err error) {
	r.mu.Lock()
	r.err = err
	r.mu.Unlock()
}

// Writable reports whether the journal can store appends now: nil, or why
// not (the embedded server's store cannot be written, and the journal is
// waiting until it can; see docs/design.md §9.3). It is always nil with an
// external NATS, whose store the journal cannot see.
func (j *Journal) Writable() error {
	if j.srv == nil || j.srv.recovery == nil {
		return nil
	}
	return j.srv.recovery.writable()
}

// Recoveries returns how often the embedded server's store has come back
// after it could not be written, since Open.
func (j *Journal) Recoveries() uint64 {
	if j.srv == nil || j.srv.recovery == nil {
		return 0
	}
	return j.srv.recovery.recovered.Load()
}

// writeFailure reports whether a line the embedded server logs at warning
// or error level tells of a write to its store failing.
func writeFailure(line string) bool {
	l := strings.ToLower(line)
	for _, s := range []string{"write error", "no space left", "will be disabled", "disabling jetstream", "permission denied while writing"} {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}
