package projections_test

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/engine/journal/journaltest"
	"github.com/transferd/transferd/projections"
)

func TestRebuild(t *testing.T) {
	j := journaltest.Open(t)
	g := newGenerator(12, 64)
	take := func(n int) []*engine.Event {
		out := make([]*engine.Event, n)
		for i := range out {
			out[i] = g.next()
		}
		return out
	}
	appendFast(t, j, take(1500))
	path := filepath.Join(t.TempDir(), "p.db")
	live, err := projections.Open(path, projections.Options{})
	if err != nil {
		t.Fatal(err)
	}
	mustCatchUp(t, j, live, projections.ProjectorOptions{})
	oldCheckpoint := live.Checkpoint()
	live.Close()

	later := take(300) // in the stream, never projected by the old store
	appendFast(t, j, later)
	last, _ := j.LastSeq(testContext(t))

	var calls int
	var lastDone, lastTotal uint64
	err = projections.Rebuild(testContext(t), j, path, func(done, total uint64) {
		calls++
		lastDone, lastTotal = done, total
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls < 2 || lastDone != last || lastTotal != last {
		t.Errorf("progress: %d calls, last (%d, %d), want (%d, %d)", calls, lastDone, lastTotal, last, last)
	}
	if matches, _ := filepath.Glob(path + ".*"); len(matches) != 0 {
		t.Errorf("temporary files left: %v", matches)
	}

	rebuilt := mustOpen(t, path)
	fresh := newStore(t)
	mustCatchUp(t, j, fresh, projections.ProjectorOptions{NoPublish: true})
	diffs, err := projections.CompareStores(rebuilt, fresh)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffs {
		t.Error(d)
	}
	assertMatchesFold(t, j, rebuilt)

	// The outbox holds exactly the transfers changed after the old
	// checkpoint, for the next projector to publish.
	changed := map[string]bool{}
	for _, e := range later {
		changed[e.TransferID] = true
	}
	if out := projections.Outbox(rebuilt); len(out) != len(changed) {
		t.Errorf("outbox has %d entries, %d transfers changed after checkpoint %d", len(out), len(changed), oldCheckpoint)
	}
}

func TestRebuildWithoutAStore(t *testing.T) {
	j := journaltest.Open(t)
	appendFast(t, j, generate(13, 200))
	path := filepath.Join(t.TempDir(), "p.db")
	if err := projections.Rebuild(testContext(t), j, path, nil); err != nil {
		t.Fatal(err)
	}
	s := mustOpen(t, path)
	assertMatchesFold(t, j, s)
	if st, _ := s.Stats(); st.FeedPending != int(st.Transfers) {
		t.Errorf("outbox %d, want every transfer (%d)", st.FeedPending, st.Transfers)
	}
}

// TestRebuildAStoreAheadOfTheStream: a store past the end of its stream
// (after a power cut, it folded events the stream lost before syncing
// them) is rebuilt from what the stream holds, and every transfer goes to
// the outbox: which of them the lost events had changed, and published, is
// no longer known.
func TestRebuildAStoreAheadOfTheStream(t *testing.T) {
	long, short := journaltest.Open(t), journaltest.Open(t)
	events := generate(15, 400)
	appendFast(t, long, events)
	appendFast(t, short, events[:150])
	path := filepath.Join(t.TempDir(), "p.db")
	s, err := projections.Open(path, projections.Options{})
	if err != nil {
		t.Fatal(err)
	}
	mustCatchUp(t, long, s, projections.ProjectorOptions{})
	if st, _ := s.Stats(); st.FeedPending != 0 {
		t.Fatalf("outbox %d after a drained catch-up", st.FeedPending)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	if err := projections.Rebuild(testContext(t), short, path, nil); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, path)
	assertMatchesFold(t, short, s)
	if st, _ := s.Stats(); st.FeedPending != int(st.Transfers) || st.Transfers == 0 {
		t.Errorf("outbox %d, want every transfer (%d)", st.FeedPending, st.Transfers)
	}
}

func TestRebuildRefusesAStoreInUse(t *testing.T) {
	j := journaltest.Open(t)
	path := filepath.Join(t.TempDir(), "p.db")
	mustOpen(t, path)
	if err := projections.Rebuild(testContext(t), j, path, nil); !errors.Is(err, projections.ErrLocked) {
		t.Errorf("Rebuild of an open store: %v, want ErrLocked", err)
	}
}

func TestVerify(t *testing.T) {
	j := journaltest.Open(t)
	events := generate(14, 1500)
	appendFast(t, j, events)
	appendFastIDs(t, j, events[:100], func(e *engine.Event) string { return "dup-" + e.ID })
	path := filepath.Join(t.TempDir(), "p.db")
	live, err := projections.Open(path, projections.Options{})
	if err != nil {
		t.Fatal(err)
	}
	mustCatchUp(t, j, live, projections.ProjectorOptions{MaxBatch: 100})

	// In use: VerifyStore compares a snapshot.
	diffs, err := projections.VerifyStore(testContext(t), j, live, nil)
	if err != nil || len(diffs) != 0 {
		t.Fatalf("VerifyStore of a healthy store: %v, %v", diffs, err)
	}
	if _, err := projections.Verify(testContext(t), j, path, nil); !errors.Is(err, projections.ErrLocked) {
		t.Errorf("Verify of a store open for writing: %v, want ErrLocked", err)
	}
	victim := events[700].TransferID
	good, err := live.TransferJSON(victim)
	if err != nil {
		t.Fatal(err)
	}
	live.Close()

	// More events after the checkpoint do not matter: Verify rebuilds up
	// to the live checkpoint.
	appendFast(t, j, generate(15, 50))
	diffs, err = projections.Verify(testContext(t), j, path, nil)
	if err != nil || len(diffs) != 0 {
		t.Fatalf("Verify of a healthy store: %v, %v", diffs, err)
	}

	// Corrupt one transfer behind the store's back: its JSON, then (below)
	// its applied identities.
	bad := bytes.Replace(good, []byte(`"version":`), []byte(`"version":1`), 1)
	var goodRow, badRow, victimKey []byte
	corrupt(t, path, func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("transfers"))
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if bytes.HasPrefix(v, append(bytes.Clone(good), 0)) {
				goodRow, victimKey = bytes.Clone(v), bytes.Clone(k)
				badRow = append(bytes.Clone(bad), v[len(good):]...)
				return b.Put(victimKey, badRow)
			}
		}
		t.Fatal("victim not found")
		return nil
	})
	diffs, err = projections.Verify(testContext(t), j, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(diffs) != 1 {
		t.Fatalf("diffs %v, want one", diffs)
	}
	if d := diffs[0]; d.Bucket != "transfers" || d.TransferID != victim || !bytes.Equal(d.Live, badRow) || !bytes.Equal(d.Rebuilt, goodRow) {
		t.Errorf("diff %v", d)
	}
	// An identity lost: the event would be applied again.
	corrupt(t, path, func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("transfers")).Put(victimKey, goodRow[:len(goodRow)-16])
	})
	diffs, err = projections.Verify(testContext(t), j, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(diffs) != 1 || diffs[0].TransferID != victim || !strings.Contains(diffs[0].String(), "applied identities") {
		t.Fatalf("diffs %v, want the transfer's applied identities", diffs)
	}

	// Indexes and lineage are compared too.
	corrupt(t, path, func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("by_phase"))
		k, _ := b.Cursor().First()
		return b.Delete(bytes.Clone(k))
	})
	diffs, err = projections.Verify(testContext(t), j, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(diffs) != 2 || diffs[1].Bucket != "by_phase" || diffs[1].Live != nil || diffs[1].Rebuilt == nil {
		t.Errorf("diffs %v, want the transfer and a missing by_phase entry", diffs)
	}
}

// corrupt changes a closed store's file directly.
func corrupt(t *testing.T, path string, fn func(*bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyAfterPhasesEmpty: a live projector that sees a transfer enter
// a phase in one batch and leave it in the next keeps no zero counter for
// that phase, so a rebuild (which folds both events in one batch) verifies
// clean. Before, the live store kept count.phase.pending = 0 and Verify
// reported a difference on healthy data.
func TestVerifyAfterPhasesEmpty(t *testing.T) {
	j := journaltest.Open(t)
	path := filepath.Join(t.TempDir(), "p.db")
	live, err := projections.Open(path, projections.Options{})
	if err != nil {
		t.Fatal(err)
	}
	at := genEpoch
	mustAppend(t, j, event(t, engine.SourceConnect, `{"eventType":"listener-triggered","transferId":"t-1","messageId":"m1"}`, at))
	mustCatchUp(t, j, live, projections.ProjectorOptions{NoPublish: true})
	mustAppend(t, j, event(t, engine.SourceConnect, `{"eventType":"transfer-settled","transferId":"t-1","messageId":"m2"}`, at.Add(time.Second)))
	mustCatchUp(t, j, live, projections.ProjectorOptions{NoPublish: true})
	live.Close()
	diffs, err := projections.Verify(testContext(t), j, path, nil)
	if err != nil || len(diffs) != 0 {
		t.Fatalf("Verify of a healthy store: %v, %v", diffs, err)
	}
}

// TestVerifyIgnoresZeroCounters: stores written before zero counters were
// dropped still verify clean: a zero counter equals a missing one.
func TestVerifyIgnoresZeroCounters(t *testing.T) {
	j := journaltest.Open(t)
	path := filepath.Join(t.TempDir(), "p.db")
	live, err := projections.Open(path, projections.Options{})
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, j, event(t, engine.SourceConnect, `{"eventType":"listener-triggered","transferId":"t-1","messageId":"m1"}`, genEpoch))
	mustCatchUp(t, j, live, projections.ProjectorOptions{NoPublish: true})
	live.Close()
	corrupt(t, path, func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte("count.phase.failed"), make([]byte, 8))
	})
	diffs, err := projections.Verify(testContext(t), j, path, nil)
	if err != nil || len(diffs) != 0 {
		t.Fatalf("Verify with a zero counter: %v, %v", diffs, err)
	}
	// A non-zero counter that differs is still reported.
	corrupt(t, path, func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte("count.phase.failed"), []byte{0, 0, 0, 0, 0, 0, 0, 3})
	})
	diffs, err = projections.Verify(testContext(t), j, path, nil)
	if err != nil || len(diffs) != 1 || diffs[0].Bucket != "meta" {
		t.Fatalf("Verify with a wrong counter: %v, %v", diffs, err)
	}
	if s := diffs[0].String(); strings.ContainsRune(s, 0) || !strings.Contains(s, "3") {
		t.Errorf("Diff.String() = %q: want the counter as a number, no raw bytes", s)
	}
}

// TestReleaseKeepsTheData: letting the store's mapped pages go (what a
// rebuild does after every batch, to keep its resident set from growing
// with the file) loses nothing: what is read next, and what is written on
// top of it, is what the stream says.
func TestReleaseKeepsTheData(t *testing.T) {
	j := journaltest.Open(t)
	events := generate(19, 1200)
	appendFast(t, j, events[:600])
	s := newStore(t)
	mustCatchUp(t, j, s, projections.ProjectorOptions{NoPublish: true})
	projections.Release(s)
	assertMatchesFold(t, j, s)
	appendFast(t, j, events[600:])
	mustCatchUp(t, j, s, projections.ProjectorOptions{NoPublish: true})
	projections.Release(s)
	assertMatchesFold(t, j, s)
	fresh := newStore(t)
	mustCatchUp(t, j, fresh, projections.ProjectorOptions{NoPublish: true})
	diffs, err := projections.CompareStores(s, fresh)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffs {
		t.Error(d)
	}
}
