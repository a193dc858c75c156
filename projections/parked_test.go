package projections_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/engine/journal"
	"github.com/transferd/transferd/engine/journal/journaltest"
	"github.com/transferd/transferd/projections"
)

// hostileEvents appends, directly to the journal (no ingest validation),
// ordinary events for t-1 and t-2 and events whose createdAt no JSON
// deadline can follow: one on t-1, and the only event of t-3.
func hostileEvents(t *testing.T, j *journal.Journal) (parked []uint64) {
	t.Helper()
	at := genEpoch
	details := `"migrationDetails":{"migrationId":"m-1","migrationScopeId":"s","name":"n","createdAt":%s,"cloudUrl":"https://a.atlassian.net"}`
	ev := func(id, tid, kind, createdAt string, i int) *engine.Event {
		body := `{"eventType":"` + kind + `","transferId":"` + tid + `","messageId":"` + id + `"`
		if createdAt == "" {
			return event(t, engine.SourceConnect, body+"}", at.Add(time.Duration(i)*time.Second))
		}
		// Parse a plausible twin and store the hostile bytes, as if
		// stored before ingest refused such times.
		e := event(t, engine.SourceConnect, body+","+strings.Replace(details, "%s", `"2026-01-01T00:00:00Z"`, 1)+"}", at.Add(time.Duration(i)*time.Second))
		e.Payload = []byte(body + "," + strings.Replace(details, "%s", createdAt, 1) + "}")
		return e
	}
	mustAppend(t, j, ev("a1", "t-1", "listener-triggered", `"2026-01-01T00:00:00Z"`, 0))
	parked = append(parked, mustAppend(t, j, ev("bad1", "t-1", "export-phase-completed", `"9999-12-31T23:59:59Z"`, 1)))
	mustAppend(t, j, ev("b1", "t-2", "listener-triggered", `"2026-01-02T00:00:00Z"`, 2))
	parked = append(parked, mustAppend(t, j, ev("bad2", "t-3", "listener-triggered", `3e14`, 3)))
	mustAppend(t, j, ev("a2", "t-1", "transfer-settled", "", 4))
	return parked
}

func assertParked(t *testing.T, s *projections.Store, want []uint64) {
	t.Helper()
	got, total, err := s.Parked(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if total != uint64(len(want)) || len(got) != len(want) {
		t.Fatalf("parked %d (%+v), want %d", total, got, len(want))
	}
	for i, pe := range got {
		if pe.Seq != want[i] || pe.TransferID == "" || pe.Kind == "" || !strings.Contains(pe.Reason, "createdAt") {
			t.Errorf("parked[%d] = %+v, want seq %d with transfer, kind and reason", i, pe, want[i])
		}
	}
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Parked != uint64(len(want)) {
		t.Errorf("Stats.Parked = %d, want %d", st.Parked, len(want))
	}
}

// Finding 10.A: an event whose 14-day deadline passes year 9999, stored
// behind ingest's back, crashed the projector at every start. It is
// parked instead; everything else is projected, across a restart of the
// journal and the store, and a rebuild agrees.
func TestUnfoldableEventIsParked(t *testing.T) {
	dir := t.TempDir()
	j := journaltest.OpenConfig(t, journal.Config{DataDir: filepath.Join(dir, "nats")})
	want := hostileEvents(t, j)
	path := filepath.Join(dir, "projections.db")
	s, err := projections.Open(path, projections.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := projections.Start(testContext(t), j, s, projections.ProjectorOptions{})
	if err != nil {
		t.Fatal(err)
	}
	last, _ := j.LastSeq(testContext(t))
	if err := s.Wait(testContext(t), last); err != nil {
		t.Fatalf("projector stuck: %v (err %v)", err, p.Err())
	}
	assertParked(t, s, want)
	assertMatchesFold(t, j, s)
	if _, err := s.Transfer("t-3"); !errors.Is(err, projections.ErrNotFound) {
		t.Errorf("t-3, whose only event is parked: %v, want ErrNotFound", err)
	}
	// Still live: a later event is applied.
	seq := mustAppend(t, j, event(t, engine.SourceConnect, `{"eventType":"listener-triggered","transferId":"t-4","messageId":"c1"}`, genEpoch))
	if err := s.Wait(testContext(t), seq); err != nil {
		t.Fatal(err)
	}
	if diffs, err := projections.VerifyStore(testContext(t), j, s, nil); err != nil || len(diffs) != 0 {
		t.Fatalf("VerifyStore: %v %v", diffs, err)
	}
	p.Drain()
	<-p.Closed()
	if err := p.Err(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	j.Close()

	// Restart: the journal and the store reopened, the projector resumes.
	j = journaltest.OpenConfig(t, journal.Config{DataDir: filepath.Join(dir, "nats")})
	s = mustOpen(t, path)
	seq = mustAppend(t, j, event(t, engine.SourceConnect, `{"eventType":"transfer-settled","transferId":"t-2","messageId":"b2"}`, genEpoch))
	mustCatchUp(t, j, s, projections.ProjectorOptions{})
	if s.Checkpoint() != seq {
		t.Fatalf("checkpoint %d, want %d", s.Checkpoint(), seq)
	}
	assertParked(t, s, want)
	assertMatchesFold(t, j, s)
	if tr, _ := s.Transfer("t-2"); tr == nil || tr.Phase != engine.PhaseSettled {
		t.Errorf("t-2 after restart: %+v", tr)
	}

	// A rebuild from the journal arrives at the same projection.
	rebuilt := filepath.Join(dir, "rebuilt.db")
	if err := projections.Rebuild(testContext(t), j, rebuilt, nil); err != nil {
		t.Fatal(err)
	}
	r := mustOpen(t, rebuilt)
	assertParked(t, r, want)
	if diffs, err := projections.CompareStores(s, r); err != nil || len(diffs) != 0 {
		t.Fatalf("live and rebuilt differ: %v %v", diffs, err)
	}
}

// Defence in depth: a panic while folding one event parks that event;
// the rest of its batch is applied, and the projector keeps running.
func TestPanicWhileFoldingParks(t *testing.T) {
	j := journaltest.Open(t)
	var events []*engine.Event
	for i, id := range []string{"e1", "e2", "boom", "e3"} {
		events = append(events, event(t, engine.SourceConnect,
			`{"eventType":"listener-triggered","transferId":"t-`+id+`","messageId":"`+id+`"}`, genEpoch.Add(time.Duration(i)*time.Second)))
	}
	mustAppend(t, j, events...)
	s := newStore(t)
	opts := projections.WithBeforeApply(projections.ProjectorOptions{NoPublish: true}, func(e *engine.Event) {
		if e.ID == "boom" {
			panic("injected")
		}
	})
	mustCatchUp(t, j, s, opts)
	got, total, err := s.Parked(0, 0)
	if err != nil || total != 1 || len(got) != 1 || got[0].ID != "boom" || !strings.Contains(got[0].Reason, "injected") {
		t.Fatalf("parked %+v total %d err %v", got, total, err)
	}
	for _, id := range []string{"t-e1", "t-e2", "t-e3"} {
		if _, err := s.Transfer(id); err != nil {
			t.Errorf("%s: %v", id, err)
		}
	}
	if _, err := s.Transfer("t-boom"); !errors.Is(err, projections.ErrNotFound) {
		t.Errorf("t-boom: %v", err)
	}
}
