package projections_test

import (
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/engine/journal"
	"github.com/transferd/transferd/engine/journal/journaltest"
	"github.com/transferd/transferd/projections"
)

func TestProjectionEqualsFold(t *testing.T) {
	j := journaltest.Open(t)
	events := generate(1, 2000)
	appendFast(t, j, events)
	s := newStore(t)
	mustCatchUp(t, j, s, projections.ProjectorOptions{MaxBatch: 500, NoPublish: true})

	assertMatchesFold(t, j, s)
	last, err := j.LastSeq(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Checkpoint != last || s.Checkpoint() != last {
		t.Errorf("checkpoint %d (Stats %d), stream ends at %d", s.Checkpoint(), st.Checkpoint, last)
	}
	if st.Events != uint64(len(events)) || st.Duplicates != 0 {
		t.Errorf("events %d duplicates %d, want %d and 0", st.Events, st.Duplicates, len(events))
	}
	var inPhases uint64
	for _, n := range st.Phases {
		inPhases += n
	}
	if inPhases != st.Transfers {
		t.Errorf("phase counters add up to %d, %d transfers", inPhases, st.Transfers)
	}
	if !st.LastEventAt.Equal(events[len(events)-1].ReceivedAt) {
		t.Errorf("LastEventAt %v, want %v", st.LastEventAt, events[len(events)-1].ReceivedAt)
	}
}

// TestDuplicatesBeyondDedupeWindow stores every event a second time under
// another Nats-Msg-Id, as a re-delivery after JetStream's duplicate window
// would be: the projection must not change at all.
func TestDuplicatesBeyondDedupeWindow(t *testing.T) {
	j := journaltest.Open(t)
	events := generate(2, 1000)
	appendFast(t, j, events)
	s := newStore(t)
	mustCatchUp(t, j, s, projections.ProjectorOptions{})
	before := snapshot(t, s, events)
	feedBefore := feedCount(t, j)

	// Half of them again, later in the stream, then all of them again.
	appendFastIDs(t, j, events[:500], func(e *engine.Event) string { return "again-1-" + e.ID })
	appendFastIDs(t, j, events, func(e *engine.Event) string { return "again-2-" + e.ID })
	commits := s.Commits()
	mustCatchUp(t, j, s, projections.ProjectorOptions{MaxBatch: 333})
	// 1,500 messages in batches of at most 333: at least 5 transactions.
	if n := s.Commits() - commits; n < 5 || n > 1500 {
		t.Errorf("catching up on 1500 messages with MaxBatch 333 took %d commits", n)
	}

	if after := snapshot(t, s, events); !mapsEqual(before, after) {
		t.Error("re-delivered events changed transfers")
	}
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Events != 1000 || st.Duplicates != 1500 {
		t.Errorf("events %d duplicates %d, want 1000 and 1500", st.Events, st.Duplicates)
	}
	if n := feedCount(t, j); n != feedBefore {
		t.Errorf("re-deliveries published %d transfer states", n-feedBefore)
	}
	assertMatchesFold(t, j, s)
}

func snapshot(t *testing.T, s *projections.Store, events []*engine.Event) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, e := range events {
		b, err := s.TransferJSON(e.TransferID)
		if err != nil {
			t.Fatal(err)
		}
		out[e.TransferID] = string(b)
	}
	return out
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestBatchingDoesNotMatter projects the same stream in one run and in
// many small runs stopped in between: the stores are identical.
func TestBatchingDoesNotMatter(t *testing.T) {
	j := journaltest.Open(t)
	events := generate(3, 1000)
	appendFast(t, j, events)
	appendFastIDs(t, j, events[100:300], func(e *engine.Event) string { return "dup-" + e.ID })

	one := newStore(t)
	mustCatchUp(t, j, one, projections.ProjectorOptions{NoPublish: true})

	many := newStore(t)
	for _, size := range []int{1, 7, 100} {
		p, err := projections.Start(testContext(t), j, many, projections.ProjectorOptions{MaxBatch: size, NoPublish: true})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		p.Stop()
		<-p.Closed()
		if err := p.Err(); err != nil {
			t.Fatal(err)
		}
	}
	mustCatchUp(t, j, many, projections.ProjectorOptions{MaxBatch: 37, NoPublish: true})
	diffs, err := projections.CompareStores(one, many)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffs {
		t.Error(d)
	}
}

func TestProjectorLive(t *testing.T) {
	j := journaltest.Open(t)
	s := newStore(t)
	var mu sync.Mutex
	notified := map[string]int{} // transferId → highest version notified
	p, err := projections.Start(testContext(t), j, s, projections.ProjectorOptions{
		Notify: func(cs []projections.Change) {
			mu.Lock()
			defer mu.Unlock()
			for _, c := range cs {
				notified[c.Transfer.TransferID] = max(notified[c.Transfer.TransferID], c.Transfer.Version)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		p.Drain()
		<-p.Closed()
		if err := p.Err(); err != nil {
			t.Error(err)
		}
	}()
	if _, err := projections.Start(testContext(t), j, s, projections.ProjectorOptions{}); !errors.Is(err, projections.ErrRunning) {
		t.Errorf("second projector: %v, want ErrRunning", err)
	}

	events := generate(4, 200)
	for _, e := range events {
		seq := mustAppend(t, j, e)
		if err := s.Wait(testContext(t), seq); err != nil {
			t.Fatal(err)
		}
		tr, err := s.Transfer(e.TransferID)
		if err != nil {
			t.Fatal(err)
		}
		if !tr.Applied(e.Key()) && tr.LastReceivedAt.Before(e.ReceivedAt) {
			t.Fatalf("after Wait(%d), transfer %s does not reflect event %s", seq, e.TransferID, e.ID)
		}
	}
	lag, err := p.Lag(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	if lag.Behind != 0 || lag.Checkpoint != lag.LastSeq || lag.Delay(time.Now()) != 0 {
		t.Errorf("lag %+v", lag)
	}
	if !lag.LastEventAt.Equal(events[len(events)-1].ReceivedAt) || lag.CommittedAt.IsZero() {
		t.Errorf("lag times %+v", lag)
	}
	mu.Lock()
	defer mu.Unlock()
	for id, want := range folded(t, j) {
		if notified[id] != want.Version {
			t.Errorf("transfer %s: notified up to version %d, want %d", id, notified[id], want.Version)
		}
	}
}

func TestProjectorRefusesAStoreAheadOfTheStream(t *testing.T) {
	j := journaltest.Open(t)
	appendFast(t, j, generate(5, 10))
	path := filepath.Join(t.TempDir(), "p.db")
	s := mustOpen(t, path)
	mustCatchUp(t, j, s, projections.ProjectorOptions{NoPublish: true})

	other := journaltest.Open(t) // an empty stream
	if _, err := projections.Start(testContext(t), other, s, projections.ProjectorOptions{}); !errors.Is(err, projections.ErrAhead) {
		t.Errorf("Start on an empty stream: %v, want ErrAhead", err)
	}
}

// TestUnparsableAndCorrupt: a payload the engine rejects is parked (kept
// in the journal, folded into nothing); a message that is not an envelope
// is skipped; neither stops the projector.
func TestUnparsableAndCorrupt(t *testing.T) {
	j := journaltest.Open(t)
	at := genEpoch
	good := event(t, engine.SourceConnect, `{"eventType":"listener-triggered","transferId":"t-1","messageId":"m1"}`, at)
	mustAppend(t, j, good)
	bad := *good
	bad.ID, bad.Payload = "m2", []byte(`{"eventType":"app-data-uploaded","transferId":"t-1","messageId":"m2"}`) // no s3Key
	mustAppend(t, j, &bad)
	if _, err := journaltest.JetStream(j).Publish(testContext(t), journal.EventSubject(engine.SourceConnect, "t-1", engine.KindUnknown), []byte("not an envelope")); err != nil {
		t.Fatal(err)
	}
	last := mustAppend(t, j, event(t, engine.SourceConnect, `{"eventType":"transfer-settled","transferId":"t-1","messageId":"m3"}`, at.Add(time.Second)))

	s := newStore(t)
	mustCatchUp(t, j, s, projections.ProjectorOptions{NoPublish: true})
	tr, err := s.Transfer("t-1")
	if err != nil {
		t.Fatal(err)
	}
	if tr.Version != 2 || tr.Phase != engine.PhaseSettled {
		t.Errorf("version %d phase %s, want 2 and settled", tr.Version, tr.Phase)
	}
	st, _ := s.Stats()
	if st.Unparsable != 1 || st.Parked != 1 || st.Corrupt != 1 || st.Checkpoint != last {
		t.Errorf("stats %+v", st)
	}
}

func TestStoreWaitHonoursContext(t *testing.T) {
	s := newStore(t)
	ctx, cancel := contextWithTimeout(t, 50*time.Millisecond)
	defer cancel()
	if err := s.Wait(ctx, 1); err == nil {
		t.Error("Wait returned nil for a sequence never reached")
	}
}
