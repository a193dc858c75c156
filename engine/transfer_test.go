package engine_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/transferd/transferd/engine"
)

// Finding 10.A: a createdAt near the end of year 9999 made the 14-day
// deadline overflow what JSON can write, and encoding the view panicked.
func TestDeadlinesNeverUnrepresentable(t *testing.T) {
	for _, at := range []time.Time{
		time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		time.UnixMilli(3e14).UTC(), // year 11476
		time.Date(-5, 1, 1, 0, 0, 0, 0, time.UTC),
	} {
		tr := engine.NewTransfer("t-1")
		tr.Migration = &engine.Migration{MigrationID: "m", CreatedAt: at}
		tr.CancellationRequested = true
		tr.CancellationRequestedAt = &at
		d := tr.Deadlines()
		if d.TimesOutAt != nil || d.SettleBy != nil {
			t.Errorf("createdAt %v: deadlines %v %v, want them omitted", at, d.TimesOutAt, d.SettleBy)
		}
		var err error
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("createdAt %v: encoding panicked: %v", at, r)
				}
			}()
			_, err = json.Marshal(tr.View())
		}()
		if engine.Representable(at) && err != nil {
			t.Errorf("createdAt %v: view does not encode: %v", at, err)
		}
		if _, err := tr.EncodeCanonical(); engine.Representable(at) != (err == nil) {
			t.Errorf("createdAt %v: EncodeCanonical error %v", at, err)
		}
	}
}

func TestFoldIgnoresUnfoldableEvents(t *testing.T) {
	base := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	events := lifecycle(t, base)
	good := engine.Fold("t-2", events)
	want := good.MarshalCanonical()

	// The parser refuses such times now; events stored before it did still
	// carry them.
	for _, createdAt := range []time.Time{time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC), time.UnixMilli(3e14).UTC()} {
		bad := mustParse(t, engine.SourceForge, `{"eventType":"avi:ecosystem.migration:completed:export_phase","transferId":"t-2","messageId":"bad",`+
			`"migrationDetails":{"migrationId":"m-1","createdAt":"2026-01-01T00:00:00Z"}}`)
		bad.Migration.CreatedAt = createdAt
		bad.Issuer, bad.ReceivedAt = "install-1", base
		if err := engine.Foldable(bad); !errors.Is(err, engine.ErrUnfoldable) {
			t.Fatalf("createdAt %s: Foldable = %v, want ErrUnfoldable", createdAt, err)
		}
		tr := engine.Fold("t-2", append([]*engine.Event{bad}, events...))
		got, err := tr.EncodeCanonical()
		if err != nil {
			t.Fatalf("createdAt %s: %v", createdAt, err)
		}
		if string(got) != string(want) {
			t.Errorf("createdAt %s: the unfoldable event changed the fold:\n got %s\nwant %s", createdAt, got, want)
		}
	}
	for _, e := range events {
		if err := engine.Foldable(e); err != nil {
			t.Errorf("ordinary event %s: %v", e.ID, err)
		}
	}
}

// Issue 12.3: the platform's 14-day clock starts at the first trigger, not
// at migrationDetails.createdAt (a migration planned weeks before it runs,
// or a re-run of an old plan, would otherwise look timed out already).
func TestTimesOutAtStartsAtTheFirstTrigger(t *testing.T) {
	created := time.Date(2025, 10, 1, 9, 0, 0, 0, time.UTC)
	first := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	event := func(kind, msg string, at time.Time) *engine.Event {
		e := mustParse(t, engine.SourceConnect, `{"eventType":"`+kind+`","transferId":"t-9","messageId":"`+msg+`",`+
			`"migrationDetails":{"migrationId":"m-9","createdAt":1759309200}}`)
		e.Issuer, e.ReceivedAt = "ck-1", at
		return e
	}
	upload := event("export-phase-completed", "u", first.Add(time.Minute))
	if d := engine.Fold("t-9", []*engine.Event{upload}).Deadlines(); d.TimesOutAt == nil || !d.TimesOutAt.Equal(created.Add(engine.TransferTimeout)) {
		t.Fatalf("before any trigger: %v, want createdAt + 14 days (%v), the early estimate", d.TimesOutAt, created.Add(engine.TransferTimeout))
	}
	// The trigger, re-delivered later as another message: the earliest counts.
	events := []*engine.Event{upload, event("listener-triggered", "t2", first.Add(time.Hour)), event("listener-triggered", "t1", first)}
	for _, order := range [][]int{{0, 1, 2}, {2, 1, 0}, {1, 0, 2}} {
		var in []*engine.Event
		for _, i := range order {
			in = append(in, events[i])
		}
		tr := engine.Fold("t-9", in)
		if tr.TriggeredAt == nil || !tr.TriggeredAt.Equal(first) {
			t.Fatalf("order %v: triggeredAt %v, want %v", order, tr.TriggeredAt, first)
		}
		if d := tr.Deadlines(); d.TimesOutAt == nil || !d.TimesOutAt.Equal(first.Add(engine.TransferTimeout)) {
			t.Fatalf("order %v: timesOutAt %v, want the first trigger + 14 days", order, d.TimesOutAt)
		}
	}
}

func TestNearDeadline(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { v := now.Add(d); return &v }
	for _, c := range []struct {
		name      string
		trigger   *time.Time
		cancelAt  *time.Time
		settled   bool
		want      string
		wantAt    time.Time
		wantFound bool
	}{
		{name: "far", trigger: at(-time.Hour)},
		{name: "times out within the window", trigger: at(-14*24*time.Hour + time.Hour), want: "timesOutAt", wantAt: now.Add(time.Hour), wantFound: true},
		{name: "cancellation", trigger: at(-time.Hour), cancelAt: at(-10 * time.Minute), want: "settleBy", wantAt: now.Add(50 * time.Minute), wantFound: true},
		{name: "the earlier of both", trigger: at(-14*24*time.Hour + 10*time.Minute), cancelAt: at(-10 * time.Minute), want: "timesOutAt", wantAt: now.Add(10 * time.Minute), wantFound: true},
		{name: "settled", trigger: at(-14 * 24 * time.Hour), cancelAt: at(-time.Hour), settled: true},
	} {
		tr := engine.NewTransfer("t")
		tr.TriggeredAt, tr.CancellationRequestedAt = c.trigger, c.cancelAt
		tr.CancellationRequested = c.cancelAt != nil
		if c.settled {
			tr.Settled = &engine.Settlement{At: now}
		}
		name, got, ok := tr.NearDeadline(now, engine.NearWindow)
		if name != c.want || ok != c.wantFound || !got.Equal(c.wantAt) {
			t.Errorf("%s: %q %v %v, want %q %v %v", c.name, name, got, ok, c.want, c.wantAt, c.wantFound)
		}
	}
}
