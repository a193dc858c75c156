package engine_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/transferd/transferd/engine"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// lifecycle is one transfer's events in the platform's usual order.
func lifecycle(tb testing.TB, base time.Time) []*engine.Event {
	tb.Helper()
	details := `"migrationDetails":{"migrationId":"m-1","migrationScopeId":"s-1","name":"Plan <1>","createdAt":1723111376499,"cloudUrl":"https://site.atlassian.net"}`
	bodies := []string{
		`{"eventType":"avi:ecosystem.migration:triggered:listener","transferId":"t-2","messageId":"e1","originalTransferId":"t-1",` + details + `}`,
		`{"eventType":"avi:ecosystem.migration:uploaded:app_data","transferId":"t-2","messageId":"e2","key":"k-b","label":"second",` + details + `}`,
		`{"payload":{"eventType":"avi:ecosystem.migration:uploaded:app_data","transferId":"t-2","messageId":"e3","key":"k-a","label":"first",` + details + `}}`,
		`{"eventType":"avi:ecosystem.migration:uploaded:event_file_list","transferId":"t-2","messageId":"e4","key":"k-c","label":"MAPPINGS"}`,
		`{"eventType":"avi:ecosystem.migration:completed:export_phase","transferId":"t-2","messageId":"e5"}`,
		`{"eventType":"avi:ecosystem.migration:errored:listener","transferId":"t-2","messageId":"e6","transferError":{"exceptionType":"java.lang.NullPointerException","safeStackTrace":"at X.y(X.java:1)"}}`,
		`{"eventType":"avi:ecosystem.migration:requested:transfer_cancellation","transferId":"t-2","messageId":"e7"}`,
		`{"eventType":"avi:ecosystem.migration:some:future_event","transferId":"t-2","messageId":"e8"}`,
	}
	var events []*engine.Event
	for i, b := range bodies {
		e := mustParse(tb, engine.SourceForge, b)
		e.Issuer = "install-1"
		e.ReceivedAt = base.Add(time.Duration(i) * time.Second)
		events = append(events, e)
	}
	// transferd's own calls: a progress report taken, a settle that
	// exhausted its attempts.
	for i, b := range []string{
		`{"eventType":"platform-called","transferId":"t-2","messageId":"a1","op":"progress","status":"IN_PROGRESS","percent":40,"outcome":"ok","httpStatus":200,"attempts":1,"at":"2026-11-23T10:00:09Z"}`,
		`{"eventType":"platform-called","transferId":"t-2","messageId":"a2","op":"settle","status":"INCOMPLETE","message":"cancellation requested","outcome":"exhausted","httpStatus":503,"attempts":8,"error":"platform: 503","at":"2026-11-23T10:00:10Z"}`,
		`{"eventType":"upload-reported","transferId":"t-2","messageId":"a3","key":"k-a","status":"failed","attempt":1,"message":"timeout","by":"importer","at":"2026-11-23T10:00:11Z"}`,
		`{"eventType":"upload-reported","transferId":"t-2","messageId":"a4","key":"k-a","status":"done","attempt":2,"final":true,"by":"importer","at":"2026-11-23T10:00:12Z"}`,
		`{"eventType":"upload-reported","transferId":"t-2","messageId":"a5","key":"k-b","status":"failed","attempt":1,"final":true,"message":"bad file","by":"importer","at":"2026-11-23T10:00:13Z"}`,
		`{"eventType":"platform-called","transferId":"t-2","messageId":"a6","op":"forge.status","status":"SUCCESS","messageIds":["e3"],"outcome":"ok","httpStatus":200,"attempts":1,"at":"2026-11-23T10:00:14Z"}`,
	} {
		e := mustParse(tb, engine.SourceApp, b)
		e.Issuer = "install-1"
		e.ReceivedAt = base.Add(time.Duration(10+i) * time.Second)
		events = append(events, e)
	}
	return events
}

// TestFoldAppSettled: transferd's settle, as the platform took it, ends
// the need to act; the phase and receipt times stay the platform's.
func TestFoldAppSettled(t *testing.T) {
	base := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	events := lifecycle(t, base)
	before := engine.Fold("t-2", events)
	for i, outcome := range []string{"settled", "ok"} {
		e := mustParse(t, engine.SourceApp, fmt.Sprintf(`{"eventType":"platform-called","transferId":"t-2","messageId":"s%d","op":"settle","status":"INCOMPLETE","outcome":%q,"httpStatus":200,"at":"2026-11-23T10:0%d:00Z"}`, i, outcome, 5-i))
		e.Issuer = "install-1"
		e.ReceivedAt = base.Add(time.Hour)
		events = append(events, e)
	}
	tr := engine.Fold("t-2", events)
	want := engine.AppSettlement{Status: "INCOMPLETE", Outcome: "ok", At: base.Add(4 * time.Minute)}
	if tr.AppSettled == nil || *tr.AppSettled != want {
		t.Fatalf("appSettled %+v, want %+v", tr.AppSettled, want)
	}
	if tr.NeedsAction() != "" || tr.Phase != before.Phase || !tr.LastReceivedAt.Equal(before.LastReceivedAt) || tr.Source != engine.SourceForge {
		t.Errorf("needsAction %q phase %s lastReceivedAt %s source %s", tr.NeedsAction(), tr.Phase, tr.LastReceivedAt, tr.Source)
	}
	if tr.Progress == nil || tr.Progress.Percent != 40 || tr.AppSettleFailure == nil || tr.AppSettleFailure.Outcome != "exhausted" {
		t.Errorf("progress %+v failure %+v", tr.Progress, tr.AppSettleFailure)
	}
}

func TestFoldGolden(t *testing.T) {
	base := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	tr := engine.Fold("t-2", lifecycle(t, base))
	got, err := json.MarshalIndent(tr.View(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "golden", "transfer-view.json")
	if *update {
		if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./engine -run TestFoldGolden -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("view differs from %s:\n%s", golden, got)
	}
	if tr.Phase != engine.PhaseCancellationRequested || tr.Version != 14 || tr.NeedsAction() != "settle" {
		t.Errorf("phase %s version %d needsAction %q", tr.Phase, tr.Version, tr.NeedsAction())
	}
	if d := tr.Deadlines(); d.SettleBy == nil || !d.SettleBy.Equal(base.Add(6*time.Second+time.Hour)) {
		t.Errorf("settleBy %v", d.SettleBy)
	}
}

func TestFoldPhaseOnlyMovesUp(t *testing.T) {
	settled := mustParse(t, engine.SourceConnect, `{"eventType":"transfer-settled","transferId":"t"}`)
	triggered := mustParse(t, engine.SourceConnect, `{"eventType":"listener-triggered","transferId":"t"}`)
	tr := engine.Fold("t", []*engine.Event{settled, triggered})
	if tr.Phase != engine.PhaseSettled {
		t.Errorf("phase %s after settled then triggered", tr.Phase)
	}
	if tr.NeedsAction() != "" {
		t.Errorf("settled transfer needs action %q", tr.NeedsAction())
	}
}

func TestMachineAdvance(t *testing.T) {
	m := engine.NewMachine()
	for _, from := range engine.Phases {
		for _, k := range engine.Kinds {
			got := m.Advance(from, k)
			want := from
			if p, ok := k.Phase(); ok && p.Rank() > from.Rank() {
				want = p
			}
			if got != want {
				t.Errorf("Advance(%s, %s) = %s, want %s", from, k, got, want)
			}
		}
	}
}

func TestTransferRoundTrip(t *testing.T) {
	tr := engine.Fold("t-2", lifecycle(t, time.Unix(1_800_000_000, 123).UTC()))
	b := tr.MarshalCanonical()
	back, err := engine.UnmarshalTransfer(b)
	if err != nil {
		t.Fatal(err)
	}
	if got := back.MarshalCanonical(); !bytes.Equal(got, b) {
		t.Errorf("round trip changed the encoding:\n%s\n%s", b, got)
	}
}

// genEvents draws the events of a few transfers, re-runs among them, from
// small pools of values so that events of one transfer often disagree.
func genEvents(t *rapid.T) []*engine.Event {
	nTransfers := rapid.IntRange(1, 4).Draw(t, "transfers")
	kinds := engine.Kinds
	var events []*engine.Event
	seen := map[string]bool{}
	for i := range nTransfers {
		id := fmt.Sprintf("t-%d", i)
		src := rapid.SampledFrom([]engine.Source{engine.SourceConnect, engine.SourceForge}).Draw(t, "source")
		original := ""
		if i > 0 && rapid.Bool().Draw(t, "rerun") {
			original = fmt.Sprintf("t-%d", rapid.IntRange(0, i-1).Draw(t, "original"))
		}
		n := rapid.IntRange(1, 12).Draw(t, "events")
		for j := range n {
			k := rapid.SampledFrom(kinds).Draw(t, "kind")
			p := map[string]any{"transferId": id}
			evSrc := src
			switch {
			case k == engine.KindPlatformCalled || k == engine.KindUploadReported || k == engine.KindUploadDiscovered:
				evSrc = engine.SourceApp
				p["eventType"] = string(k)
			case src == engine.SourceConnect:
				p["eventType"] = engine.ConnectEventType(k)
			default:
				p["eventType"] = engine.ForgeEventType(k)
			}
			if k == engine.KindUnknown {
				p["eventType"] = rapid.SampledFrom([]string{"new-thing", "avi:ecosystem.migration:new:thing"}).Draw(t, "newType")
			}
			if rapid.Bool().Draw(t, "hasMessageId") {
				p["messageId"] = fmt.Sprintf("%s-m%d", id, j)
			}
			if original != "" {
				p["originalTransferId"] = original
			}
			if rapid.Bool().Draw(t, "details") {
				p["migrationDetails"] = map[string]any{
					"migrationId": rapid.SampledFrom([]string{"m-1", "m-2"}).Draw(t, "migrationId"),
					"name":        rapid.SampledFrom([]string{"", "plan a", "plan b"}).Draw(t, "name"),
					"createdAt":   rapid.SampledFrom([]int64{1597211035, 1723111376499}).Draw(t, "createdAt"),
					"cloudUrl":    "https://site.atlassian.net",
				}
			}
			switch k {
			case engine.KindAppDataUploaded, engine.KindEventFileListUploaded:
				key := rapid.SampledFrom([]string{"k1", "k2", "k3"}).Draw(t, "key")
				p["s3Key"], p["key"] = key, key
				p["label"] = rapid.SampledFrom([]string{"", "l1", "l2"}).Draw(t, "label")
			case engine.KindListenerErrored:
				if rapid.Bool().Draw(t, "errorDetail") {
					p["transferError"] = map[string]any{
						"exceptionType":  rapid.SampledFrom([]string{"A", "B"}).Draw(t, "exception"),
						"safeStackTrace": rapid.SampledFrom([]string{"", "at x"}).Draw(t, "stack"),
					}
				}
			case engine.KindTransferSettled:
				p["status"] = rapid.SampledFrom([]string{"", "SUCCESS", "FAILED"}).Draw(t, "status")
			case engine.KindPlatformCalled:
				p["op"] = rapid.SampledFrom([]string{"settle", "progress", "forge.status"}).Draw(t, "op")
				p["status"] = rapid.SampledFrom([]string{"", "FAILED", "INCOMPLETE"}).Draw(t, "callStatus")
				p["percent"] = rapid.IntRange(0, 3).Draw(t, "percent") * 30
				p["outcome"] = rapid.SampledFrom([]string{"ok", "settled", "rejected", "exhausted", "invalid"}).Draw(t, "outcome")
				p["httpStatus"] = rapid.SampledFrom([]int{0, 200, 403, 503}).Draw(t, "httpStatus")
				p["error"] = rapid.SampledFrom([]string{"", "e1", "e2"}).Draw(t, "callError")
				p["at"] = time.Unix(1_800_000_000+int64(rapid.IntRange(0, 3).Draw(t, "callAt")), 0).UTC()
				if p["op"] == "forge.status" {
					p["status"] = rapid.SampledFrom([]string{"SUCCESS", "FAILED"}).Draw(t, "ackStatus")
					p["messageIds"] = []string{fmt.Sprintf("%s-m%d", id, rapid.IntRange(0, 3).Draw(t, "ackOf"))}
				}
			case engine.KindUploadDiscovered:
				// Reconciliation's finds, often of uploads a webhook also announces.
				p["key"] = rapid.SampledFrom([]string{"k1", "k2", "k3"}).Draw(t, "discoveredKey")
				p["label"] = rapid.SampledFrom([]string{"", "l1", "l2"}).Draw(t, "discoveredLabel")
			case engine.KindUploadReported:
				// Importers' reports, often on the same upload and attempt.
				p["key"] = rapid.SampledFrom([]string{"k1", "k2", "k3"}).Draw(t, "reportKey")
				p["status"] = rapid.SampledFrom([]string{"progress", "done", "failed", "requeued"}).Draw(t, "workStatus")
				p["attempt"] = rapid.IntRange(1, 3).Draw(t, "attempt")
				if p["status"] == "progress" {
					p["percent"] = rapid.IntRange(0, 4).Draw(t, "workPercent") * 25
				} else {
					p["final"] = rapid.Bool().Draw(t, "final")
				}
				p["message"] = rapid.SampledFrom([]string{"", "m1", "m2"}).Draw(t, "workMessage")
				p["by"] = rapid.SampledFrom([]string{"importer", "operator"}).Draw(t, "by")
				p["at"] = time.Unix(1_800_000_000+int64(rapid.IntRange(0, 2).Draw(t, "reportAt")), 0).UTC()
			}
			body, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			e, err := engine.Parse(evSrc, body)
			if err != nil {
				t.Fatalf("Parse(%s): %v", body, err)
			}
			e.Issuer = "tenant-" + string(src)
			e.ReceivedAt = time.Unix(1_800_000_000+int64(rapid.IntRange(0, 1000).Draw(t, "at")), 0).UTC()
			// Identical content without a messageId is the same event:
			// a transfer's state is a function of its first copy of each
			// identity, and re-deliveries are drawn below.
			if !seen[e.ID] {
				seen[e.ID] = true
				events = append(events, e)
			}
		}
	}
	return events
}

// foldAll folds a delivery sequence the way the projector does: one
// transfer value per transferId, events applied in delivery order.
func foldAll(events []*engine.Event) map[string][]byte {
	transfers := map[string]*engine.Transfer{}
	for _, e := range events {
		tr, ok := transfers[e.TransferID]
		if !ok {
			tr = engine.NewTransfer(e.TransferID)
			transfers[e.TransferID] = tr
		}
		tr.Apply(e)
	}
	out := map[string][]byte{}
	for id, tr := range transfers {
		out[id] = tr.MarshalCanonical()
	}
	return out
}

func TestFoldOrderIndependence(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		events := genEvents(t)
		want := foldAll(events)

		// Deliver again: shuffled, with re-deliveries of arbitrary events.
		delivery := append([]*engine.Event(nil), events...)
		for range rapid.IntRange(0, len(events)).Draw(t, "duplicates") {
			delivery = append(delivery, rapid.SampledFrom(events).Draw(t, "duplicate"))
		}
		delivery = rapid.Permutation(delivery).Draw(t, "order")
		got := foldAll(delivery)

		if len(got) != len(want) {
			t.Fatalf("%d transfers, want %d", len(got), len(want))
		}
		for id, w := range want {
			if !bytes.Equal(got[id], w) {
				t.Fatalf("transfer %s differs by order:\n in order: %s\nshuffled: %s", id, w, got[id])
			}
		}
	})
}

func TestApplyIsIdempotent(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		events := genEvents(t)
		id := events[0].TransferID
		tr := engine.NewTransfer(id)
		for _, e := range events {
			tr.Apply(e)
		}
		before := tr.MarshalCanonical()
		again := rapid.SampledFrom(events).Draw(t, "again")
		if again.TransferID != id {
			return
		}
		if tr.Apply(again) {
			t.Fatalf("re-applying %s reported a change", again.ID)
		}
		if after := tr.MarshalCanonical(); !bytes.Equal(before, after) {
			t.Fatalf("re-applying %s changed the transfer:\n%s\n%s", again.ID, before, after)
		}
	})
}

func BenchmarkFold(b *testing.B) {
	events := lifecycle(b, time.Unix(1_800_000_000, 0).UTC())
	b.ReportAllocs()
	for b.Loop() {
		engine.Fold("t-2", events)
	}
	b.ReportMetric(float64(b.N*len(events))/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkParse(b *testing.B) {
	raw := readPayload(b, "forge-uploaded-app-data.json")
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := engine.Parse(engine.SourceForge, raw); err != nil {
			b.Fatal(err)
		}
	}
}

// TestFoldUploadWork: an upload's work is the greatest report: a later
// attempt beats an earlier one, a requeue beats the dead letter of its
// attempt, done beats failed within an attempt, whatever the order; a
// report of a key never announced is not an announced upload.
func TestFoldUploadWork(t *testing.T) {
	report := func(id, status string, attempt int, final bool) *engine.Event {
		e := mustParse(t, engine.SourceApp, fmt.Sprintf(`{"eventType":"upload-reported","transferId":"t","messageId":%q,"key":"k","status":%q,"attempt":%d,"final":%t,"at":"2026-11-23T10:00:00Z"}`, id, status, attempt, final))
		e.Issuer = "tenant-a"
		return e
	}
	progress := func(id string, attempt, percent int) *engine.Event {
		e := mustParse(t, engine.SourceApp, fmt.Sprintf(`{"eventType":"upload-reported","transferId":"t","messageId":%q,"key":"k","status":"progress","attempt":%d,"percent":%d,"at":"2026-11-23T10:00:00Z"}`, id, attempt, percent))
		e.Issuer = "tenant-a"
		return e
	}
	up := mustParse(t, engine.SourceConnect, `{"eventType":"app-data-uploaded","transferId":"t","messageId":"u","s3Key":"k","label":"l"}`)
	up.Issuer, up.ReceivedAt = "tenant-a", time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		events  []*engine.Event
		status  string
		attempt int
		dead    bool
		percent int
	}{
		{"greatest percent", []*engine.Event{progress("p1", 1, 60), progress("p2", 1, 30)}, "progress", 1, false, 60},
		{"failed beats progress", []*engine.Event{progress("p1", 1, 90), report("f", "failed", 1, false)}, "failed", 1, false, 0},
		{"next attempt restarts", []*engine.Event{progress("p1", 1, 90), report("f", "failed", 1, false), progress("p2", 2, 10)}, "progress", 2, false, 10},
		{"dead", []*engine.Event{report("r1", "failed", 1, false), report("r2", "failed", 2, true)}, "failed", 2, true, 0},
		{"requeued", []*engine.Event{report("r2", "failed", 2, true), report("q", "requeued", 2, false)}, "requeued", 2, false, 0},
		{"after requeue", []*engine.Event{report("q", "requeued", 2, false), report("r3", "failed", 3, false), report("r2", "failed", 2, true)}, "failed", 3, false, 0},
		{"done beats failed", []*engine.Event{report("d", "done", 1, true), report("f", "failed", 1, true)}, "done", 1, false, 0},
	} {
		for _, order := range [][]*engine.Event{append([]*engine.Event{up}, tc.events...), append(slices.Clone(tc.events), up)} {
			tr := engine.Fold("t", order)
			if len(tr.Uploads) != 1 || tr.Uploads[0].ReceivedAt == nil || tr.Uploads[0].Label != "l" {
				t.Fatalf("%s: uploads %+v", tc.name, tr.Uploads)
			}
			w := tr.Uploads[0].Work
			if w == nil || w.Status != tc.status || w.Attempt != tc.attempt || w.Dead() != tc.dead || w.Percent != tc.percent {
				t.Errorf("%s: work %+v, want %s attempt %d dead %t", tc.name, w, tc.status, tc.attempt, tc.dead)
			}
		}
	}
	tr := engine.Fold("t", []*engine.Event{report("r", "done", 1, true)})
	if len(tr.Uploads) != 1 || tr.Uploads[0].ReceivedAt != nil {
		t.Errorf("a report alone: %+v", tr.Uploads)
	}
	if e := mustParse(t, engine.SourceConnect, `{"eventType":"upload-reported","transferId":"t","key":"k","status":"done","attempt":1,"at":"2026-11-23T10:00:00Z"}`); e.Kind != engine.KindUnknown || e.Report != nil {
		t.Errorf("a Connect payload passed for a report: kind %s", e.Kind)
	}
	for _, bad := range []string{
		`{"eventType":"upload-reported","transferId":"t","key":"","status":"done","attempt":1,"at":"2026-11-23T10:00:00Z"}`,
		`{"eventType":"upload-reported","transferId":"t","key":"k","status":"lost","attempt":1,"at":"2026-11-23T10:00:00Z"}`,
		`{"eventType":"upload-reported","transferId":"t","key":"k","status":"done","attempt":0,"at":"2026-11-23T10:00:00Z"}`,
		`{"eventType":"upload-reported","transferId":"t","key":"k","status":"done","attempt":1,"since":2,"at":"2026-11-23T10:00:00Z"}`,
		`{"eventType":"upload-reported","transferId":"t","key":"k","status":"done","attempt":1}`,
		`{"eventType":"upload-reported","transferId":"t","key":"k","status":"progress","percent":101,"attempt":1,"at":"2026-11-23T10:00:00Z"}`,
		`{"eventType":"upload-reported","transferId":"t","key":"k","status":"done","percent":50,"attempt":1,"at":"2026-11-23T10:00:00Z"}`,
		`{"eventType":"upload-reported","transferId":"t","key":"k","status":"progress","final":true,"attempt":1,"at":"2026-11-23T10:00:00Z"}`,
	} {
		if _, err := engine.Parse(engine.SourceApp, []byte(bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

// TestFoldUploadDiscovered: an upload-discovered event (reconciliation)
// adds an announced upload marked discovered; the webhook of the same key,
// before or after, fills the rest, and reports apply to it as to any
// upload. Only SourceApp may carry the kind.
func TestFoldUploadDiscovered(t *testing.T) {
	disc := mustParse(t, engine.SourceApp, `{"eventType":"upload-discovered","transferId":"t","messageId":"disc-1","key":"k","label":"DATABASE"}`)
	disc.Issuer, disc.ReceivedAt = "tenant-a", time.Date(2026, 11, 23, 9, 30, 0, 0, time.UTC)
	if disc.Kind != engine.KindUploadDiscovered || disc.Upload == nil || !disc.Upload.Discovered {
		t.Fatalf("parsed %+v", disc)
	}
	alone := engine.Fold("t", []*engine.Event{disc})
	if len(alone.Uploads) != 1 || !alone.Uploads[0].Discovered || !alone.Uploads[0].Announced() || alone.Uploads[0].ReceivedAt != nil ||
		alone.Uploads[0].Label != "DATABASE" || alone.Phase != engine.NewTransfer("t").Phase || !alone.FirstReceivedAt.IsZero() {
		t.Fatalf("discovered alone: %+v", alone)
	}
	up := mustParse(t, engine.SourceConnect, `{"eventType":"app-data-uploaded","transferId":"t","messageId":"u","s3Key":"k","label":"DATABASE"}`)
	up.Issuer, up.ReceivedAt = "tenant-a", time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	done := mustParse(t, engine.SourceApp, `{"eventType":"upload-reported","transferId":"t","messageId":"r","key":"k","status":"done","attempt":1,"final":true,"at":"2026-11-23T10:05:00Z"}`)
	done.Issuer = "tenant-a"
	a := engine.Fold("t", []*engine.Event{disc, up, done, disc}).MarshalCanonical()
	b := engine.Fold("t", []*engine.Event{done, up, disc}).MarshalCanonical()
	if !bytes.Equal(a, b) {
		t.Fatalf("order matters:\n%s\n%s", a, b)
	}
	tr := engine.Fold("t", []*engine.Event{up, disc, done})
	if u := tr.Uploads[0]; len(tr.Uploads) != 1 || !u.Discovered || u.ReceivedAt == nil || len(u.MessageIDs) != 1 || u.Work == nil || u.Work.Status != engine.WorkDone {
		t.Errorf("discovered and announced: %+v", tr.Uploads)
	}
	for _, src := range []engine.Source{engine.SourceConnect, engine.SourceForge} {
		if e := mustParse(t, src, string(disc.Payload)); e.Kind != engine.KindUnknown || e.Upload != nil {
			t.Errorf("%s passed for a discovery: kind %s upload %+v", src, e.Kind, e.Upload)
		}
	}
	for _, bad := range []string{
		`{"eventType":"upload-discovered","transferId":"t","key":""}`,
		`{"eventType":"upload-discovered","transferId":"t","key":7}`,
	} {
		if _, err := engine.Parse(engine.SourceApp, []byte(bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}
