package journal_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/engine/journal"
	"github.com/transferd/transferd/engine/journal/journaltest"
)

// The filters and parsers are the subjects Append and the projector write.
func TestFiltersAndParsers(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{journal.EventFilter("", ""), ""},
		{journal.EventFilter("t-1", ""), journal.TransferEventsFilter("t-1")},
		{journal.EventFilter("", engine.KindAppDataUploaded), journal.KindFilter(engine.KindAppDataUploaded)},
		{journal.EventFilter("t-1", engine.KindAppDataUploaded), "migrations.events.*.t-1.app-data-uploaded"},
		{journal.TransferFilter("", ""), ""},
		{journal.TransferFilter("t-1", ""), "migrations.transfers.t-1.*"},
		{journal.TransferFilter("", engine.PhaseSettled), "migrations.transfers.*." + string(engine.PhaseSettled)},
		{journal.TransferFilter("t-1", engine.PhaseSettled), journal.TransferSubject("t-1", engine.PhaseSettled)},
	} {
		if tc.got != tc.want {
			t.Errorf("filter %q, want %q", tc.got, tc.want)
		}
	}
	if id, phase, ok := journal.ParseTransferSubject(journal.TransferSubject("t-1", engine.PhaseSettled)); !ok || id != "t-1" || phase != engine.PhaseSettled {
		t.Errorf("ParseTransferSubject = %q, %q, %v", id, phase, ok)
	}
	src, id, kind, ok := journal.ParseEventSubject(journal.EventSubject(engine.SourceForge, "t-2", engine.KindTransferSettled))
	if !ok || src != engine.SourceForge || id != "t-2" || kind != engine.KindTransferSettled {
		t.Errorf("ParseEventSubject = %q, %q, %q, %v", src, id, kind, ok)
	}
	for _, s := range []string{"", "migrations.transfers.", "migrations.transfers.t-1", "migrations.events.connect.t-1.x", "other.t-1.settled"} {
		if _, _, ok := journal.ParseTransferSubject(s); ok {
			t.Errorf("ParseTransferSubject(%q) ok", s)
		}
	}
	for _, s := range []string{"migrations.events.connect.t-1", "migrations.events.connect..x", "migrations.transfers.t-1.settled"} {
		if _, _, _, ok := journal.ParseEventSubject(s); ok {
			t.Errorf("ParseEventSubject(%q) ok", s)
		}
	}
}

func TestTenantsBucket(t *testing.T) {
	j := journaltest.OpenConfig(t, journal.Config{SyncAlways: true})
	ctx := testContext(t)
	tn := j.Tenants()
	if _, err := tn.Get(ctx, "a"); !errors.Is(err, journal.ErrNotFound) {
		t.Fatalf("Get of a missing key: %v", err)
	}
	w, err := tn.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if e := <-w.Updates(); e != nil {
		t.Fatalf("first update of an empty bucket = %+v, want the end of the initial values", e)
	}
	rev, err := tn.Create(ctx, "a", []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tn.Create(ctx, "a", []byte("2")); !errors.Is(err, journal.ErrConflict) {
		t.Errorf("Create of an existing key: %v", err)
	}
	if _, err := tn.Update(ctx, "a", []byte("2"), rev+100); !errors.Is(err, journal.ErrConflict) {
		t.Errorf("Update at a stale revision: %v", err)
	}
	rev2, err := tn.Update(ctx, "a", []byte("2"), rev)
	if err != nil || rev2 <= rev {
		t.Fatalf("Update = %d, %v", rev2, err)
	}
	if e, err := tn.Get(ctx, "a"); err != nil || string(e.Value) != "2" || e.Revision != rev2 || e.Key != "a" {
		t.Errorf("Get = %+v, %v", e, err)
	}
	if _, err := tn.Put(ctx, "b", []byte("3")); err != nil {
		t.Fatal(err)
	}
	keys, err := tn.Keys(ctx)
	slices.Sort(keys)
	if err != nil || !slices.Equal(keys, []string{"a", "b"}) {
		t.Errorf("Keys = %q, %v", keys, err)
	}
	if err := tn.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := tn.Get(ctx, "a"); !errors.Is(err, journal.ErrNotFound) {
		t.Errorf("Get of a deleted key: %v", err)
	}
	if _, err := tn.Get(ctx, "a.*"); !errors.Is(err, journal.ErrInvalid) {
		t.Errorf("Get of a wildcard: %v", err)
	}
	var seen []string
	for len(seen) < 4 {
		select {
		case e, ok := <-w.Updates():
			switch {
			case !ok:
				t.Fatalf("watch closed after %q", seen)
			case e == nil:
				t.Fatalf("a second end-of-initial-values marker after %q", seen)
			}
			if e.Deleted {
				seen = append(seen, "-"+e.Key)
			} else {
				seen = append(seen, e.Key+"="+string(e.Value))
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("watch saw only %q", seen)
		}
	}
	if want := []string{"a=1", "a=2", "b=3", "-a"}; !slices.Equal(seen, want) {
		t.Errorf("watch saw %q, want %q", seen, want)
	}
	w.Stop()
	w.Stop()
	for range w.Updates() { // closed after Stop
	}
}

func TestOwner(t *testing.T) {
	j := journaltest.Open(t)
	ctx := testContext(t)
	if _, err := j.Owner(ctx, "t1"); !errors.Is(err, journal.ErrNotFound) {
		t.Errorf("Owner of a transfer without events: %v", err)
	}
	first := event(t, "t1", 0)
	if _, owner, err := j.AppendOwned(ctx, first); err != nil || owner != "connect:client-key-1" {
		t.Fatalf("AppendOwned = %q, %v", owner, err)
	}
	// The owner is the first event's, whatever was stored after it.
	later := event(t, "t1", 1)
	later.Source, later.Issuer = engine.SourceForge, "installation-2"
	mustAppend(t, j, later)
	if owner, err := j.Owner(ctx, "t1"); err != nil || owner != "connect:client-key-1" {
		t.Errorf("Owner = %q, %v", owner, err)
	}
	for _, id := range []string{"", "t 1", "a.b", "t*"} {
		if _, err := j.Owner(ctx, id); !errors.Is(err, journal.ErrInvalid) {
			t.Errorf("Owner of %q: %v", id, err)
		}
	}
}

func TestReadTransfersAndState(t *testing.T) {
	j := journaltest.Open(t)
	ctx := testContext(t)
	pub := func(id string, phase engine.Phase, data string) journal.Ack {
		ack, err := j.Publish(ctx, journal.TransferSubject(id, phase), "", []byte(data))
		if err != nil {
			t.Fatal(err)
		}
		return ack
	}
	first := pub("t-1", engine.PhaseDataUploaded, "1")
	pub("t-2", engine.PhaseSettled, "2")
	last := pub("t-1", engine.PhaseSettled, "3")

	st, err := j.State(ctx, journal.StreamTransfers)
	if err != nil || st.LastSeq != last.Seq || st.Msgs != 3 || st.Consumers != 0 {
		t.Fatalf("State = %+v, %v", st, err)
	}
	r, err := j.ReadTransfers(ctx, first.Seq, journal.TransferFilter("t-1", ""))
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := j.State(ctx, journal.StreamTransfers); st.Consumers != 1 {
		t.Errorf("consumers while reading = %d", st.Consumers)
	}
	c, err := r.Next(ctx)
	if err != nil || c.Seq != last.Seq || c.TransferID != "t-1" || c.Phase != engine.PhaseSettled || string(c.Data) != "3" {
		t.Errorf("Next = %+v, %v", c, err)
	}
	r.Stop()
	r.Stop()
	if _, err := r.Next(ctx); !errors.Is(err, journal.ErrStopped) {
		t.Errorf("Next after Stop: %v", err)
	}
	if st, _ := j.State(ctx, journal.StreamTransfers); st.Consumers != 0 {
		t.Errorf("consumers after Stop = %d", st.Consumers)
	}
	if _, err := j.State(ctx, "OTHER"); !errors.Is(err, journal.ErrInvalid) {
		t.Errorf("State of another stream: %v", err)
	}

	before := time.Now()
	ack := mustAppend(t, j, event(t, "t-3", 1))
	at, err := j.StoredAt(ctx, ack.Seq)
	if err != nil || at.Before(before.Add(-time.Minute)) || at.After(time.Now().Add(time.Minute)) {
		t.Errorf("StoredAt = %v, %v", at, err)
	}
	if _, err := j.StoredAt(ctx, ack.Seq+10); !errors.Is(err, journal.ErrUnavailable) {
		t.Errorf("StoredAt of a sequence not stored: %v", err)
	}
}

func TestAppendAll(t *testing.T) {
	j := journaltest.OpenConfig(t, journal.Config{SyncAlways: true})
	ctx := testContext(t)
	var events []*engine.Event
	for i := range 1500 { // more than one window
		events = append(events, event(t, "t-all", i))
	}
	acks, err := j.AppendAll(ctx, events)
	if err != nil || len(acks) != len(events) {
		t.Fatalf("AppendAll = %d acks, %v", len(acks), err)
	}
	for i := range acks {
		if acks[i].Seq != uint64(i+1) || acks[i].Duplicate {
			t.Fatalf("ack %d = %+v", i, acks[i])
		}
	}
	again, err := j.AppendAll(ctx, events[:2])
	if err != nil || !again[0].Duplicate || again[1].Seq != 2 {
		t.Errorf("AppendAll again = %+v, %v", again, err)
	}
	got := readAll(t, mustRead(t, j), 2000)
	if len(got) != len(events) || got[7].ID != events[7].ID {
		t.Errorf("read %d envelopes", len(got))
	}
	bad := *events[0]
	bad.TransferID = "a.b"
	if _, err := j.AppendAll(ctx, []*engine.Event{events[0], &bad}); !errors.Is(err, journal.ErrInvalid) {
		t.Errorf("AppendAll with an invalid event: %v", err)
	}
	if last := mustLastSeq(t, j); last != uint64(len(events)) {
		t.Errorf("LastSeq = %d after a refused AppendAll", last)
	}
}

func mustRead(t *testing.T, j *journal.Journal) *journal.Reader {
	t.Helper()
	r, err := j.Read(testContext(t), 0, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	return r
}
