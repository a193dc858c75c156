package journal_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/engine/journal"
	"github.com/transferd/transferd/engine/journal/journaltest"
)

// openGrouped opens an embedded journal syncing every write whose appends
// are committed in atomic batches.
func openGrouped(t *testing.T) *journal.Journal {
	t.Helper()
	j := journaltest.OpenConfig(t, journal.Config{SyncAlways: true, GroupCommit: journal.GroupCommitAtomic})
	if !journal.Committing(j) {
		t.Fatal("GroupCommitAtomic does not commit in batches")
	}
	return j
}

// TestGroupSyncCoalesces appends from many callers at once to a journal
// syncing every write (transferd serve's default): they share fsyncs.
func TestGroupSyncCoalesces(t *testing.T) {
	j := journaltest.OpenConfig(t, journal.Config{SyncAlways: true})
	if d := j.Durability(); d.GroupCommit != journal.GroupCommitSync || !d.SyncAlways {
		t.Fatalf("durability %+v, want group sync", d)
	}
	want := appendConcurrently(t, j, 64, 16)
	assertStored(t, j, want)
	s := j.CommitStats()
	t.Logf("%+v", s)
	if s.Syncs == 0 || s.Syncs >= uint64(len(want)) || s.Synced != uint64(len(want)) {
		t.Errorf("%d appends: %+v; want fewer syncs than appends", len(want), s)
	}

	// A bucket write returns once synced too, and so does an AppendOwned,
	// also a duplicate.
	before := j.CommitStats().Syncs
	if _, err := j.Tenants().Put(testContext(t), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	first := event(t, "t-owned", 0)
	for range 2 {
		if _, o, err := j.AppendOwned(testContext(t), first); err != nil || o != "connect:client-key-1" {
			t.Fatalf("AppendOwned = %q, %v", o, err)
		}
	}
	if s := j.CommitStats(); s.Syncs != before+3 {
		t.Errorf("syncs for a Put and two AppendOwned: %d, want 3", s.Syncs-before)
	}
}

// TestGroupSyncSameID: appends of one event at the same time all answer
// its one sequence, once as new and otherwise as duplicates.
func TestGroupSyncSameID(t *testing.T) {
	j := journaltest.OpenConfig(t, journal.Config{SyncAlways: true})
	e := event(t, "t1", 1)
	acks := make([]journal.Ack, 16)
	var wg sync.WaitGroup
	for i := range acks {
		wg.Go(func() { acks[i] = mustAppend(t, j, e) })
	}
	wg.Wait()
	fresh := 0
	for _, a := range acks {
		if a.Seq != acks[0].Seq {
			t.Errorf("acks %+v: different sequences", acks)
			break
		}
		if !a.Duplicate {
			fresh++
		}
	}
	if fresh != 1 {
		t.Errorf("acks %+v: %d not duplicates, want 1", acks, fresh)
	}
	assertStored(t, j, map[string]uint64{e.ID: acks[0].Seq})
}

// appendConcurrently appends each events from callers callers at once and
// returns the acknowledged sequences by event ID.
func appendConcurrently(t *testing.T, j *journal.Journal, callers, each int) map[string]uint64 {
	t.Helper()
	acks := make([][]journal.Ack, callers)
	var wg sync.WaitGroup
	for c := range callers {
		wg.Go(func() {
			for i := range each {
				acks[c] = append(acks[c], mustAppend(t, j, event(t, fmt.Sprintf("c%d", c), i)))
			}
		})
	}
	wg.Wait()
	want := map[string]uint64{}
	for c := range callers {
		for i, ack := range acks[c] {
			if ack.Duplicate {
				t.Errorf("c%d-%d: duplicate", c, i)
			}
			want[fmt.Sprintf("c%d-%d", c, i)] = ack.Seq
		}
	}
	return want
}

// TestGroupCommitCoalesces appends from many callers at once: they share
// atomic batches, and every caller's sequence is its own message's.
func TestGroupCommitCoalesces(t *testing.T) {
	j := openGrouped(t)
	const callers, each = 64, 16
	want := appendConcurrently(t, j, callers, each)
	assertStored(t, j, want)
	s := j.CommitStats()
	t.Logf("%+v", s)
	if s.Batches == 0 || s.Batches+s.Singles >= callers*each || s.Batched+s.Singles != callers*each {
		t.Errorf("%d appends from %d callers: %+v; want batches of more than one", callers*each, callers, s)
	}
}

// TestGroupCommitSameID: two appends of one message ID in one batch get
// the same answer, and one message is stored.
func TestGroupCommitSameID(t *testing.T) {
	j := openGrouped(t)
	e := event(t, "t1", 1)
	again := *e
	again.ReceivedAt = e.ReceivedAt.Add(time.Second)
	batch := []*engine.Event{e, event(t, "t2", 1), event(t, "t2", 2), &again, event(t, "t2", 3), event(t, "t2", 4)}
	got := appendBatch(t, j, batch)
	for _, r := range got {
		if r.err != nil {
			t.Fatal(r.err)
		}
	}
	if got[0].ack != got[3].ack || got[0].ack.Duplicate {
		t.Errorf("same ID in one batch: %+v and %+v; want the same first answer", got[0].ack, got[3].ack)
	}
	want := map[string]uint64{}
	for i, ev := range batch {
		want[ev.ID] = got[i].ack.Seq
	}
	assertStored(t, j, want)
	if s := j.CommitStats(); s.Batches != 1 || s.Coalesced != 1 {
		t.Errorf("stats %+v; want one batch and one coalesced append", s)
	}
}

// TestGroupCommitDuplicateStored: a batch holding a message ID stored
// before is committed again without it, and that caller is told duplicate
// with the sequence stored first.
func TestGroupCommitDuplicateStored(t *testing.T) {
	testDuplicateStored(t, openGrouped(t))
}

func testDuplicateStored(t *testing.T, j *journal.Journal) {
	first := mustAppend(t, j, event(t, "t1", 1))
	mustAppend(t, j, event(t, "t0", 0))
	batch := []*engine.Event{event(t, "t2", 1), event(t, "t2", 2), event(t, "t1", 1), event(t, "t2", 3), event(t, "t2", 4), event(t, "t2", 5)}
	got := appendBatch(t, j, batch)
	want := map[string]uint64{"t1-1": first.Seq, "t0-0": first.Seq + 1}
	for i, r := range got {
		if r.err != nil {
			t.Fatal(r.err)
		}
		if dup := i == 2; r.ack.Duplicate != dup {
			t.Errorf("%s: %+v, want duplicate %v", batch[i].ID, r.ack, dup)
		}
		want[batch[i].ID] = r.ack.Seq
	}
	if got[2].ack.Seq != first.Seq {
		t.Errorf("duplicate answered seq %d, want %d", got[2].ack.Seq, first.Seq)
	}
	assertStored(t, j, want)
	if s := j.CommitStats(); s.Retries != 1 || s.Batches != 1 || s.Batched != 5 {
		t.Errorf("stats %+v; want one retry and one batch of 5", s)
	}
}

// TestGroupCommitCluster runs group commit against a three-node cluster,
// where a batch is one replication round: concurrent appends, and a batch
// refused for a duplicate (whose probes must not leave the other message
// IDs staged on the replicated stream).
func TestGroupCommitCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	url := journaltest.Cluster(t, 3)
	j := journaltest.OpenConfig(t, journal.Config{URL: url, Replicas: 3})
	if d := j.Durability(); d.Replicas != 3 || d.GroupCommit != journal.GroupCommitAtomic || d.Warning != "" {
		t.Fatalf("durability %+v", d)
	}
	testDuplicateStored(t, j)
	before := j.CommitStats()
	want := appendConcurrently(t, j, 32, 8)
	if s := j.CommitStats(); s.Batches == before.Batches {
		t.Errorf("stats %+v: no batch", s)
	}
	for id, seq := range want {
		if seq <= 7 {
			t.Fatalf("%s at seq %d, among the first test's", id, seq)
		}
	}
}

// TestGroupCommitServerDown: a batch the server never acknowledges
// acknowledges no one.
func TestGroupCommitServerDown(t *testing.T) {
	j := journaltest.OpenConfig(t, journal.Config{SyncAlways: true, GroupCommit: journal.GroupCommitAtomic, Timeout: time.Second})
	mustAppend(t, j, event(t, "t0", 0))
	release := journal.HoldCommits(j)
	results := queueAppends(t, j, events(t, "t1", 8))
	journal.ShutdownServer(j)
	release()
	for i, ch := range results {
		if r := <-ch; !errors.Is(r.err, journal.ErrUnavailable) {
			t.Errorf("append %d with the server down: %+v, want ErrUnavailable", i, r)
		}
	}
	deadline := time.Now().Add(3 * time.Second)
	for j.CommitStats().Failures != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if s := j.CommitStats(); s.Failures != 1 || s.Batches != 0 {
		t.Errorf("stats %+v; want one failed commit", s)
	}
}

// TestGroupCommitFallback: when the stream stops accepting atomic batches
// the committer publishes one message at a time, with the same answers.
func TestGroupCommitFallback(t *testing.T) {
	j := openGrouped(t)
	first := mustAppend(t, j, event(t, "t1", 1))
	ctx := testContext(t)
	s, err := journal.JetStream(j).Stream(ctx, journal.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.AllowAtomicPublish = false
	if _, err := journal.JetStream(j).UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	batch := append(events(t, "t2", 6), event(t, "t1", 1))
	got := appendBatch(t, j, batch)
	want := map[string]uint64{"t1-1": first.Seq}
	for i, r := range got {
		if r.err != nil {
			t.Fatal(r.err)
		}
		want[batch[i].ID] = r.ack.Seq
	}
	if last := got[len(got)-1].ack; !last.Duplicate || last.Seq != first.Seq {
		t.Errorf("re-delivery: %+v, want a duplicate of %d", last, first.Seq)
	}
	assertStored(t, j, want)
	if st := j.CommitStats(); st.Batches != 0 || st.Singles < uint64(len(batch)) {
		t.Errorf("stats %+v; want single publishes only", st)
	}
}

// TestGroupCommitOff: without group commit appends are published one by
// one.
func TestGroupCommitOff(t *testing.T) {
	j := journaltest.OpenConfig(t, journal.Config{SyncAlways: true, GroupCommit: journal.GroupCommitOff})
	if d := j.Durability(); d.GroupCommit != journal.GroupCommitOff || !d.SyncAlways || !d.AtomicBatches {
		t.Errorf("durability %+v", d)
	}
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() { mustAppend(t, j, event(t, "t1", i)) })
	}
	wg.Wait()
	if got := mustLastSeq(t, j); got != 16 {
		t.Errorf("LastSeq = %d, want 16", got)
	}
}

// TestGroupCommitCancel: a caller whose context ends while its append is
// queued gets ErrUnavailable at once, and its message is not sent.
func TestGroupCommitCancel(t *testing.T) {
	j := openGrouped(t)
	release := journal.HoldCommits(j)
	ctx, cancel := context.WithCancel(context.Background())
	gone := make(chan error, 1)
	go func() {
		_, err := j.Append(ctx, event(t, "gone", 1))
		gone <- err
	}()
	waitQueued(t, j, 1)
	cancel()
	if err := <-gone; !errors.Is(err, journal.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled append: %v, want ErrUnavailable and Canceled", err)
	}
	kept := queueAppends(t, j, []*engine.Event{event(t, "kept", 1)})
	release()
	if r := <-kept[0]; r.err != nil {
		t.Fatal(r.err)
	}
	assertStored(t, j, map[string]uint64{"kept-1": 1})
}

// TestGroupCommitClose: Close fails the queued appends and stops the
// committer.
func TestGroupCommitClose(t *testing.T) {
	j := openGrouped(t)
	release := journal.HoldCommits(j)
	results := queueAppends(t, j, events(t, "t1", 5))
	closed := make(chan struct{})
	go func() {
		j.Close()
		close(closed)
	}()
	for i, ch := range results {
		if r := <-ch; !errors.Is(r.err, journal.ErrUnavailable) {
			t.Errorf("queued append %d at Close: %+v, want ErrUnavailable", i, r)
		}
	}
	release()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	if _, err := j.Append(testContext(t), event(t, "late", 1)); !errors.Is(err, journal.ErrUnavailable) {
		t.Errorf("append after Close: %v, want ErrUnavailable", err)
	}
}

// TestDurability: what the journal says an acknowledgement survives.
func TestDurability(t *testing.T) {
	for _, tc := range []struct {
		name            string
		cfg             journal.Config
		sync            bool
		grouped         journal.GroupCommit
		embedded, warns bool
	}{
		{"always", journal.Config{SyncAlways: true}, true, journal.GroupCommitSync, true, false},
		{"always-atomic", journal.Config{SyncAlways: true, GroupCommit: journal.GroupCommitAtomic}, true, journal.GroupCommitAtomic, true, false},
		{"interval", journal.Config{}, false, journal.GroupCommitOff, true, true},
		{"external", journal.Config{URL: journaltest.Server(t)}, false, journal.GroupCommitAtomic, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var log lockedBuilder
			tc.cfg.Logger = slog.New(slog.NewTextHandler(&log, nil))
			d := journaltest.OpenConfig(t, tc.cfg).Durability()
			if d.SyncAlways != tc.sync || d.GroupCommit != tc.grouped || d.Embedded != tc.embedded ||
				(d.Warning != "") != tc.warns || d.Replicas != 1 || !d.AtomicBatches || d.Guarantee == "" {
				t.Errorf("%+v", d)
			}
			// Open says at start what an acknowledgement means, and warns.
			if !strings.Contains(log.String(), "journal durability") ||
				strings.Contains(log.String(), "level=WARN") != tc.warns {
				t.Errorf("log at Open:\n%s", log.String())
			}
		})
	}
}

// lockedBuilder is a strings.Builder safe for concurrent use.
type lockedBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuilder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuilder) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type appendResult struct {
	ack journal.Ack
	err error
}

// events returns n events of transfer id.
func events(tb testing.TB, id string, n int) []*engine.Event {
	tb.Helper()
	var es []*engine.Event
	for i := range n {
		es = append(es, event(tb, id, i))
	}
	return es
}

// appendBatch appends batch as one group commit: it holds the committer
// until every append is queued.
func appendBatch(t *testing.T, j *journal.Journal, batch []*engine.Event) []appendResult {
	t.Helper()
	release := journal.HoldCommits(j)
	chans := queueAppends(t, j, batch)
	release()
	got := make([]appendResult, len(batch))
	for i, ch := range chans {
		got[i] = <-ch
	}
	return got
}

// queueAppends starts an append of each event and waits until all are
// queued (the committer must be held).
func queueAppends(t *testing.T, j *journal.Journal, batch []*engine.Event) []chan appendResult {
	t.Helper()
	before := journal.QueuedAppends(j)
	chans := make([]chan appendResult, len(batch))
	for i, e := range batch {
		chans[i] = make(chan appendResult, 1)
		go func() {
			ack, err := j.Append(context.Background(), e)
			chans[i] <- appendResult{ack, err}
		}()
		// One at a time, so that the batch keeps this order.
		waitQueued(t, j, before+i+1)
	}
	return chans
}

func waitQueued(t *testing.T, j *journal.Journal, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for journal.QueuedAppends(j) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d appends queued, want %d", journal.QueuedAppends(j), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// assertStored checks that MIGRATIONS holds exactly the messages of want,
// each once, at its sequence.
func assertStored(t *testing.T, j *journal.Journal, want map[string]uint64) {
	t.Helper()
	ctx := testContext(t)
	got := map[string]uint64{}
	for env, err := range j.Scan(ctx, "") {
		if err != nil {
			t.Fatal(err)
		}
		if seq, ok := got[env.ID]; ok {
			t.Errorf("%s stored at %d and %d", env.ID, seq, env.Seq)
		}
		got[env.ID] = env.Seq
	}
	for id, seq := range want {
		if got[id] != seq {
			t.Errorf("%s acknowledged at seq %d, stored at %d", id, seq, got[id])
		}
	}
	if len(got) != len(want) {
		t.Errorf("stream holds %d messages, want %d", len(got), len(want))
	}
	s, err := journal.JetStream(j).Stream(ctx, journal.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	for id, seq := range want {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		env, err := journal.Decode(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		e, _ := env.Event()
		if env.ID != id || m.Header.Get(jetstream.MsgIDHeader) != e.DedupeKey() {
			t.Errorf("seq %d holds %s with Nats-Msg-Id %s, want %s with %s", seq, env.ID, m.Header.Get(jetstream.MsgIDHeader), id, e.DedupeKey())
		}
	}
}

// TestPublishTransferSyncsOnRequest: with group sync, PublishTransfer
// stores a state without a sync round of its own and SyncTransfers puts
// every state stored before it on disk in one; Publish syncs each.
func TestPublishTransferSyncsOnRequest(t *testing.T) {
	j := journaltest.OpenConfig(t, journal.Config{SyncAlways: true})
	ctx := testContext(t)
	before := j.CommitStats().Syncs
	for i := range 10 {
		id := fmt.Sprintf("t-%d", i)
		ack, err := j.PublishTransfer(ctx, journal.TransferSubject(id, engine.PhaseListenerTriggered), id+":1", []byte(`{}`))
		if err != nil || ack.Seq == 0 || ack.Duplicate {
			t.Fatalf("PublishTransfer %s = %+v, %v", id, ack, err)
		}
	}
	if ack, err := j.PublishTransfer(ctx, journal.TransferSubject("t-0", engine.PhaseListenerTriggered), "t-0:1", []byte(`{}`)); err != nil || !ack.Duplicate {
		t.Fatalf("PublishTransfer of a stored state = %+v, %v; want a duplicate", ack, err)
	}
	if n := j.CommitStats().Syncs - before; n != 0 {
		t.Errorf("%d sync rounds for unsynced publishes", n)
	}
	if err := j.SyncTransfers(ctx); err != nil {
		t.Fatal(err)
	}
	if n := j.CommitStats().Syncs - before; n != 1 {
		t.Errorf("SyncTransfers: %d sync rounds, want 1", n)
	}
	if _, err := j.Publish(ctx, journal.TransferSubject("t-x", engine.PhaseListenerTriggered), "t-x:1", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if n := j.CommitStats().Syncs - before; n != 2 {
		t.Errorf("Publish: %d sync rounds in all, want 2", n)
	}
}
