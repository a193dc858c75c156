package powercut_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/engine/journal"
	"github.com/transferd/transferd/engine/journal/internal/faultfs"
	"github.com/transferd/transferd/engine/journal/journaltest"
	"github.com/transferd/transferd/projections"
)

// Environment of the child process that appends.
const (
	envDir   = "TRANSFERD_POWERCUT_DIR"   // the journal's data directory (on the mount)
	envSync  = "TRANSFERD_POWERCUT_SYNC"  // a key of modes
	envRound = "TRANSFERD_POWERCUT_ROUND" // tells the rounds' event ids apart
	envSeed  = "TRANSFERD_POWERCUT_SEED"  // reproduces the parent's random cut moments
)

// The child's load: appenders concurrent callers, each re-sending one in
// resend of its acknowledged events (a platform retry), and starting a
// transfer, bound to issuer, every perTransfer events.
const (
	appenders   = 32
	resend      = 8
	perTransfer = 6
	issuer      = "client-key-1"
)

// modes are the journal configurations under test, by name.
var modes = map[string]journal.Config{
	"always":        {SyncAlways: true}, // transferd serve's default: group sync
	"always-atomic": {SyncAlways: true, GroupCommit: journal.GroupCommitAtomic},
	"interval":      {},
}

func TestMain(m *testing.M) {
	if dir := os.Getenv(envDir); dir != "" {
		os.Exit(child(dir))
	}
	os.Exit(m.Run())
}

// TestPowerCut cuts the power under a journal appending in each mode:
// syncing every write, no acknowledged event may be lost, over three cuts
// with group sync (transferd serve's default) and two with atomic batches;
// syncing by interval, some must be.
func TestPowerCut(t *testing.T) {
	if err := faultfs.Available(); err != nil {
		t.Skipf("the power-cut test needs FUSE: %v", err)
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(envSeed); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (set %s to repeat)", seed, envSeed)
	rng := rand.New(rand.NewPCG(seed, 0))

	for _, tc := range []struct {
		mode string
		cuts int
	}{{"always", 3}, {"always-atomic", 2}} {
		t.Run(tc.mode, func(t *testing.T) {
			r := newRun(t, tc.mode)
			for round := 1; round <= tc.cuts; round++ {
				if lost := r.cut(t, round, rng); lost > 0 {
					t.Errorf("round %d: %d acknowledged events lost", round, lost)
				}
			}
		})
	}
	t.Run("interval", func(t *testing.T) {
		r := newRun(t, "interval")
		if lost := r.cut(t, 1, rng); lost == 0 {
			t.Errorf("no acknowledged event lost by a power cut with the sync interval: the test cannot tell the modes apart")
		}
	})
}

// run is a series of power cuts on one store.
type run struct {
	sync    string
	backing string
	acked   map[string]ack // over all rounds
}

type ack struct {
	seq uint64
	dup bool
}

func newRun(t *testing.T, sync string) *run {
	return &run{sync: sync, backing: t.TempDir(), acked: map[string]ack{}}
}

// cut runs one round: mount, append in a child, kill it at a random
// moment, throw away what was not durable, and check the store. It
// returns how many acknowledged events are gone.
func (r *run) cut(t *testing.T, round int, rng *rand.Rand) (lost int) {
	mnt := t.TempDir()
	fsys, err := faultfs.Mount(r.backing, mnt)
	if errors.Is(err, faultfs.ErrNoFUSE) {
		t.Skipf("the power-cut test needs FUSE: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fsys.Unmount() })

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envDir+"="+mnt, envSync+"="+r.sync, envRound+"="+strconv.Itoa(round))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		acks  = map[string]ack{}
		ready = make(chan struct{})
		count atomic.Int64
		done  = make(chan error, 1)
		stats string // the child's last CommitStats
	)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			switch {
			case len(f) == 1 && f[0] == "READY":
				close(ready)
			case len(f) == 4 && f[0] == "ACK":
				seq, _ := strconv.ParseUint(f[2], 10, 64)
				mu.Lock()
				acks[f[1]] = ack{seq: seq, dup: f[3] == "true"}
				mu.Unlock()
				count.Add(1)
			case len(f) == 7 && f[0] == "STATS":
				mu.Lock()
				stats = fmt.Sprintf("%s syncs for %s writes, %s batches of %s events, %s single publishes, %s retries",
					f[1], f[2], f[3], f[4], f[5], f[6])
				mu.Unlock()
			}
		}
		done <- sc.Err()
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("round %d: the child did not open its journal: %s", round, stderr.String())
	}
	// Cut at a random moment once appends are flowing.
	for count.Load() < 100 {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(time.Duration(rng.IntN(1500)) * time.Millisecond)
	cmd.Process.Kill()
	cmd.Wait()
	<-done
	if err := fsys.Cut(); err != nil {
		t.Fatal(err)
	}
	reboot(t, filepath.Join(r.backing, projectionDB))

	mu.Lock()
	defer mu.Unlock()
	for id, a := range acks {
		r.acked[id] = a
	}
	st := fsys.Stats()
	lost = r.check(t, round)
	t.Logf("round %d (%s): %d acknowledged this round (%d duplicates), %d lost over all rounds; "+
		"%d writes, %d file syncs, %d directory syncs; group commit: %s",
		round, r.sync, len(acks), countDup(acks), lost, st.Writes, st.Syncs, st.DirSyncs, stats)
	return lost
}

func countDup(acks map[string]ack) (n int) {
	for _, a := range acks {
		if a.dup {
			n++
		}
	}
	return n
}

// check restarts on the backing directory and checks the store: every
// acknowledged event still there is there once, at the acknowledged
// sequence; the stream takes appends; the projection rebuilds and folds
// every stored event. It returns how many acknowledged events are gone.
func (r *run) check(t *testing.T, round int) (lost int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := modes[r.sync]
	cfg.DataDir = r.backing
	j, err := journal.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("round %d: the stream does not recover: %v", round, err)
	}
	defer j.Close()

	stored := map[string]uint64{}
	perTransfer := map[string]int{}
	for env, err := range j.Scan(ctx, "") {
		if err != nil {
			t.Fatalf("round %d: scan: %v", round, err)
		}
		if seq, ok := stored[env.ID]; ok {
			t.Errorf("round %d: %s stored twice, at %d and %d", round, env.ID, seq, env.Seq)
		}
		stored[env.ID] = env.Seq
		perTransfer[env.TransferID]++
	}
	// Every stored transfer has its owner: the first event is the
	// binding, so the two reach the disk together.
	for id := range perTransfer {
		owner, err := j.Owner(ctx, id)
		if want := journal.OwnerOf(engine.SourceConnect, issuer); err != nil || owner != want {
			t.Errorf("round %d: transfer %s: owner %q, %v; want %q", round, id, owner, err, want)
		}
	}
	for id, a := range r.acked {
		seq, ok := stored[id]
		switch {
		case !ok:
			lost++
		case seq != a.seq:
			t.Errorf("round %d: %s acknowledged at %d (duplicate %v), stored at %d", round, id, a.seq, a.dup, seq)
		}
	}
	if lost > 0 {
		// Forget what is gone: later rounds check what was stored since.
		for id := range r.acked {
			if _, ok := stored[id]; !ok {
				delete(r.acked, id)
			}
		}
	}

	last, err := j.LastSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	probe := newEvent(fmt.Sprintf("check%d", round), 0, round)
	if a, _, err := j.AppendOwned(ctx, probe); err != nil || a.Seq != last+1 {
		t.Errorf("round %d: append after recovery: %+v, %v; want seq %d", round, a, err, last+1)
	} else {
		r.acked[probe.ID] = ack{seq: a.Seq}
		perTransfer[probe.TransferID]++
	}

	if cfg.SyncAlways {
		checkFeed(t, ctx, round, j, filepath.Join(r.backing, projectionDB), perTransfer)
	}

	path := filepath.Join(t.TempDir(), "projection.db")
	if err := projections.Rebuild(ctx, j, path, nil); err != nil {
		t.Fatalf("round %d: the projection does not rebuild: %v", round, err)
	}
	s, err := projections.Open(path, projections.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Check(); err != nil {
		t.Errorf("round %d: rebuilt projection: %v", round, err)
	}
	for id, n := range perTransfer {
		tr, err := s.Transfer(id)
		if err != nil || tr.Version != n {
			t.Errorf("round %d: transfer %s in the projection: %+v, %v; want version %d", round, id, tr, err, n)
		}
	}
	return lost
}

// projectionDB is the child's projection, beside its journal.
const projectionDB = "projection.db"

// reboot models what a power cut also does: the machine boots again, with
// another boot id. The projection commits without syncs under a mark
// holding the boot id it was opened in (projections.ErrUnsynced); the cut
// kept the mark, synced before the first commit, and here it names a boot
// that is over.
func reboot(t *testing.T, path string) {
	t.Helper()
	mark := path + ".unsynced"
	if _, err := os.Stat(mark); err != nil {
		return // closed cleanly, or synced commits: no mark
	}
	if err := os.WriteFile(mark, []byte("00000000-0000-4000-8000-00000000dead\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// openProjection opens the projection at path as serve does: a store the
// cut may have torn (ErrUnsynced) is rebuilt from the stream first.
func openProjection(ctx context.Context, j *journal.Journal, path string) (*projections.Store, bool, error) {
	s, err := projections.Open(path, projections.Options{})
	if !errors.Is(err, projections.ErrUnsynced) {
		return s, false, err
	}
	if err := projections.Rebuild(ctx, j, path, nil); err != nil {
		return nil, false, err
	}
	s, err = projections.Open(path, projections.Options{})
	return s, true, err
}

// checkFeed recovers the child's projection at path as serve would
// (rebuilding it if the cut left it ahead of the stream), lets a projector
// publish what its outbox holds, and checks that TRANSFERS then holds the
// current state of every transfer: a state change the projector committed
// may still wait in the outbox, but none may be gone from both the outbox
// and the feed.
func checkFeed(t *testing.T, ctx context.Context, round int, j *journal.Journal, path string, transfers map[string]int) {
	t.Helper()
	s, torn, err := openProjection(ctx, j, path)
	if err != nil {
		t.Fatalf("round %d: the child's projection does not open: %v", round, err)
	}
	last, err := j.LastSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ahead := s.Checkpoint() > last
	if ahead {
		s.Close()
		if err := projections.Rebuild(ctx, j, path, nil); err != nil {
			t.Fatalf("round %d: rebuilding the child's projection: %v", round, err)
		}
		if s, err = projections.Open(path, projections.Options{}); err != nil {
			t.Fatal(err)
		}
	}
	defer s.Close()
	pending := 0
	if st, err := s.Stats(); err == nil {
		pending = st.FeedPending
	}
	if err := projections.CatchUp(ctx, j, s, projections.ProjectorOptions{}); err != nil {
		t.Fatalf("round %d: the child's projection does not catch up: %v", round, err)
	}
	st, err := journaltest.JetStream(j).Stream(ctx, journal.StreamTransfers)
	if err != nil {
		t.Fatal(err)
	}
	for id := range transfers {
		tr, err := s.Transfer(id)
		if err != nil {
			t.Errorf("round %d: transfer %s not in the child's projection: %v", round, id, err)
			continue
		}
		subject, msgID, _ := projections.FeedMessage(tr)
		m, err := st.GetLastMsgForSubject(ctx, subject)
		if err != nil || m.Header.Get(jetstream.MsgIDHeader) != msgID {
			got := ""
			if m != nil {
				got = m.Header.Get(jetstream.MsgIDHeader)
			}
			t.Errorf("round %d: transfer %s: state %s not on TRANSFERS (last there: %q, %v)", round, id, msgID, got, err)
		}
	}
	t.Logf("round %d: projection checkpoint %d of %d (rebuilt as torn: %v, ahead: %v), %d states waited in the outbox, %d transfers on the feed",
		round, s.Checkpoint(), last, torn, ahead, pending, len(transfers))
}

// child appends until killed, printing READY once its journal is open and
// "ACK <id> <seq> <duplicate>" for each acknowledged append.
func child(dir string) int {
	round, _ := strconv.Atoi(os.Getenv(envRound))
	ctx := context.Background()
	cfg, ok := modes[os.Getenv(envSync)]
	if !ok {
		fmt.Fprintf(os.Stderr, "unknown mode %q\n", os.Getenv(envSync))
		return 2
	}
	cfg.DataDir = dir
	j, err := journal.Open(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var mu sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	say := func(format string, args ...any) {
		mu.Lock()
		fmt.Fprintf(w, format+"\n", args...)
		w.Flush() // one line at a time: a kill loses no acknowledgement printed
		mu.Unlock()
	}
	if cfg.SyncAlways {
		// The projector and its TRANSFERS feed run too, as in serve: the
		// parent checks that no state change they committed is lost.
		store, _, err := openProjection(ctx, j, filepath.Join(dir, projectionDB))
		if err == nil {
			_, err = projections.Start(ctx, j, store, projections.ProjectorOptions{})
		}
		if errors.Is(err, projections.ErrAhead) {
			// The last cut left the store past the stream: rebuild it,
			// as serve does.
			store.Close()
			if err = projections.Rebuild(ctx, j, filepath.Join(dir, projectionDB), nil); err == nil {
				if store, err = projections.Open(filepath.Join(dir, projectionDB), projections.Options{}); err == nil {
					_, err = projections.Start(ctx, j, store, projections.ProjectorOptions{})
				}
			}
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	say("READY")
	var wg sync.WaitGroup
	for a := range appenders {
		wg.Go(func() {
			var mine []*engine.Event
			for i := 0; ; i++ {
				// A new transfer every perTransfer events, its first
				// event appended as ingest does, owning the transfer.
				transfer := fmt.Sprintf("r%dw%dt%d", round, a, i/perTransfer)
				e := newEvent(transfer, i, round)
				if i%resend == resend-1 && len(mine) > 0 {
					e = mine[i%len(mine)] // a re-delivery of an acknowledged event
				}
				var (
					ack journal.Ack
					err error
				)
				if i%perTransfer == 0 {
					ack, _, err = j.AppendOwned(ctx, e)
				} else {
					ack, err = j.Append(ctx, e)
				}
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					time.Sleep(10 * time.Millisecond)
					continue
				}
				say("ACK %s %d %v", e.ID, ack.Seq, ack.Duplicate)
				if i%8 == 7 {
					s := j.CommitStats()
					say("STATS %d %d %d %d %d %d", s.Syncs, s.Synced, s.Batches, s.Batched, s.Singles, s.Retries)
				}
				if !ack.Duplicate {
					mine = append(mine, e)
				}
			}
		})
	}
	wg.Wait()
	return 0
}

// newEvent returns the n-th Connect event of transfer id: kinds cycle, and
// the payload is about 700 bytes.
func newEvent(id string, n, round int) *engine.Event {
	types := []string{"listener-triggered", "app-data-uploaded", "listener-errored", "some-future-event"}
	payload := fmt.Sprintf(`{"eventType":%q,"transferId":%q,"messageId":"%s-%d",`+
		`"migrationDetails":{"migrationId":"m-%d","migrationScopeId":"scope-1","name":"power cut",`+
		`"createdAt":1772366400000,"cloudUrl":"https://example.atlassian.net","jiraClientKey":"jira-key"},`+
		`"s3Key":"uploads/%s/%d","label":"attachments","padding":%q}`,
		types[n%len(types)], id, id, n, round, id, n, strings.Repeat("x", 400))
	e, err := engine.Parse(engine.SourceConnect, []byte(payload))
	if err != nil {
		panic(err)
	}
	e.Issuer = issuer
	e.ReceivedAt = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).Add(time.Duration(n) * time.Millisecond)
	return e
}
