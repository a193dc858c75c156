package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/transferd/transferd/api"
	"github.com/transferd/transferd/api/apitest"
	"github.com/transferd/transferd/api/httperr"
	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/engine/journal"
)

// fixture is a small world: t-1 triggered, uploaded and errored in mig-1
// (tenant-a); t-2 triggered in mig-2 (tenant-b, another site); t-3 a
// re-run of t-1, triggered. seqs are the stream sequences in that order.
type fixture struct {
	env    *apitest.Env
	events []*engine.Event
	seqs   []uint64
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	env := apitest.New(t, apitest.Options{})
	sec := func(n int) time.Time { return apitest.Epoch.Add(time.Duration(n) * time.Second) }
	events := []*engine.Event{
		apitest.Event(t, apitest.Spec{TransferID: "t-1", MessageID: "m-1", ReceivedAt: sec(0),
			Extra: `"note":"<a&b> \u00e9 é \"q\"",   "spaced" :  [ 1, 2 ]`}),
		apitest.Event(t, apitest.Spec{TransferID: "t-1", Kind: engine.KindAppDataUploaded, MessageID: "m-2", ReceivedAt: sec(1)}),
		apitest.Event(t, apitest.Spec{TransferID: "t-1", Kind: engine.KindListenerErrored, MessageID: "m-3", ReceivedAt: sec(2)}),
		apitest.Event(t, apitest.Spec{TransferID: "t-2", MessageID: "m-4", ReceivedAt: sec(3), MigrationID: "mig-2",
			Issuer: "tenant-b", CloudURL: "https://b.atlassian.net"}),
		apitest.Event(t, apitest.Spec{TransferID: "t-3", MessageID: "m-5", ReceivedAt: sec(4), Original: "t-1"}),
	}
	f := &fixture{env: env, events: events}
	for _, ack := range env.Append(events...) {
		f.seqs = append(f.seqs, ack.Seq)
	}
	env.Sync()
	return f
}

func TestGetTransfer(t *testing.T) {
	f := newFixture(t)
	var v engine.View
	body := mustGet(t, f.env, "/v1/transfers/t-1", &v)
	if v.TransferID != "t-1" || v.Phase != engine.PhaseListenerErrored || v.Version != 3 || len(v.Uploads) != 1 {
		t.Errorf("t-1 = %s", body)
	}
	if v.NeedsAction == nil || *v.NeedsAction != "settle" || v.Deadlines.TimesOutAt == nil {
		t.Errorf("derived fields of t-1 = %s", body)
	}
	if v.Migration == nil || v.Migration.MigrationID != "mig-1" || v.Issuer != "tenant-a" {
		t.Errorf("facts of t-1 = %s", body)
	}
	// The reply is exactly the engine's view of the projected transfer.
	stored, err := f.env.Store.TransferJSON("t-1")
	if err != nil {
		t.Fatal(err)
	}
	tr, err := engine.UnmarshalTransfer(stored)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(tr.View())
	if !bytes.Equal(bytes.TrimSpace(body), want) {
		t.Errorf("body\n%s\nwant json.Marshal(View())\n%s", body, want)
	}

	tests := []struct {
		name, path  string
		status      int
		code, param string
	}{
		{"unknown transfer", "/v1/transfers/nope", 404, httperr.CodeNotFound, ""},
		{"impossible id", "/v1/transfers/a.b", 400, httperr.CodeInvalidRequest, "id"},
		{"wildcard id", "/v1/transfers/*", 400, httperr.CodeInvalidRequest, "id"},
		{"unknown parameter", "/v1/transfers/t-1?as=1", 400, httperr.CodeInvalidRequest, "as"},
		{"repeated parameter", "/v1/transfers/t-1?at=1&at=2", 400, httperr.CodeInvalidRequest, "at"},
		{"bad at", "/v1/transfers/t-1?at=yesterday", 400, httperr.CodeInvalidRequest, "at"},
		{"at before the first event", "/v1/transfers/t-1?at=2020-01-01T00:00:00Z", 404, httperr.CodeNotFound, ""},
		{"at seq 0", "/v1/transfers/t-1?at=0", 404, httperr.CodeNotFound, ""},
		{"at before t-2 existed", "/v1/transfers/t-2?at=3", 404, httperr.CodeNotFound, ""},
		{"unknown route", "/v1/transfer/t-1", 404, httperr.CodeNotFound, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := get(t, f.env, tc.path)
			wantError(t, status, body, tc.status, tc.code, tc.param)
		})
	}
}

func TestTransferAt(t *testing.T) {
	f := newFixture(t)
	ts := func(d time.Duration, loc *time.Location) string {
		return url.QueryEscape(apitest.Epoch.Add(d).In(loc).Format(time.RFC3339Nano))
	}
	plus1 := time.FixedZone("+01", 3600)
	tests := []struct {
		name, at string
		phase    engine.Phase
		version  int
	}{
		{"seq of the first event", strconv.FormatUint(f.seqs[0], 10), engine.PhaseListenerTriggered, 1},
		{"seq of the second event", strconv.FormatUint(f.seqs[1], 10), engine.PhaseDataUploaded, 2},
		{"seq between", strconv.FormatUint(f.seqs[3], 10), engine.PhaseListenerErrored, 3},
		{"time of the first event", ts(0, time.UTC), engine.PhaseListenerTriggered, 1},
		{"time just before the second", ts(time.Second-time.Nanosecond, time.UTC), engine.PhaseListenerTriggered, 1},
		{"time of the second, other zone", ts(time.Second, plus1), engine.PhaseDataUploaded, 2},
		{"time with an unescaped +", apitest.Epoch.Add(time.Second).In(plus1).Format(time.RFC3339), engine.PhaseDataUploaded, 2},
		{"time after all", ts(time.Hour, time.UTC), engine.PhaseListenerErrored, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var v engine.View
			body := mustGet(t, f.env, "/v1/transfers/t-1?at="+tc.at, &v)
			if v.Phase != tc.phase || v.Version != tc.version {
				t.Errorf("at %s: phase %s version %d, want %s %d: %s", tc.at, v.Phase, v.Version, tc.phase, tc.version, body)
			}
			if wantAction := tc.phase == engine.PhaseListenerErrored; (v.NeedsAction != nil) != wantAction {
				t.Errorf("at %s: needsAction %v", tc.at, v.NeedsAction)
			}
		})
	}
	// At the last sequence the fold equals the projection, byte for byte.
	last := strconv.FormatUint(f.seqs[len(f.seqs)-1], 10)
	for _, id := range []string{"t-1", "t-2", "t-3"} {
		now := mustGet(t, f.env, "/v1/transfers/"+id, nil)
		then := mustGet(t, f.env, "/v1/transfers/"+id+"?at="+last, nil)
		if !bytes.Equal(now, then) {
			t.Errorf("%s now\n%s\nat %s\n%s", id, now, last, then)
		}
	}
}

func TestList(t *testing.T) {
	f := newFixture(t)
	ids := func(l api.TransferList) []string {
		var s []string
		for _, v := range l.Transfers {
			s = append(s, v.TransferID)
		}
		return s
	}
	tests := []struct {
		query string
		want  []string
	}{
		{"", []string{"t-3", "t-2", "t-1"}},
		{"?migrationId=mig-1", []string{"t-3", "t-1"}},
		{"?tenant=tenant-b", []string{"t-2"}},
		{"?cloudUrl=" + url.QueryEscape("https://b.atlassian.net"), []string{"t-2"}},
		{"?phase=listener_errored", []string{"t-1"}},
		{"?phase=settled", nil},
		{"?needsAction=true", []string{"t-1"}},
		{"?needsAction=settle", []string{"t-1"}},
		{"?needsAction=false", []string{"t-3", "t-2"}},
		{"?migrationId=mig-1&phase=listener_triggered", []string{"t-3"}},
		{"?migrationId=nope", nil},
	}
	for _, tc := range tests {
		t.Run(tc.query, func(t *testing.T) {
			var l api.TransferList
			body := mustGet(t, f.env, "/v1/transfers"+tc.query, &l)
			if got := ids(l); !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
			if l.Transfers == nil || bytes.Contains(body, []byte("nextCursor")) {
				t.Errorf("body %s: want a transfers array and no nextCursor", body)
			}
		})
	}

	t.Run("paging", func(t *testing.T) {
		var got []string
		path := "/v1/transfers?limit=1"
		for pages := 0; ; pages++ {
			if pages > 3 {
				t.Fatal("more pages than transfers")
			}
			var l api.TransferList
			mustGet(t, f.env, path, &l)
			if len(l.Transfers) != 1 {
				t.Fatalf("page of %d", len(l.Transfers))
			}
			got = append(got, ids(l)...)
			if l.NextCursor == "" {
				break
			}
			path = "/v1/transfers?limit=1&cursor=" + url.QueryEscape(l.NextCursor)
		}
		if want := []string{"t-3", "t-2", "t-1"}; !slices.Equal(got, want) {
			t.Errorf("pages gave %v, want %v", got, want)
		}
	})

	errs := []struct{ query, param string }{
		{"?phase=done", "phase"},
		{"?needsAction=maybe", "needsAction"},
		{"?limit=0", "limit"},
		{"?limit=501", "limit"},
		{"?limit=ten", "limit"},
		{"?cursor=not-a-cursor", "cursor"},
		{"?migrationID=mig-1", "migrationID"},
		{"?tenant=a&tenant=b", "tenant"},
	}
	for _, tc := range errs {
		t.Run(tc.query, func(t *testing.T) {
			status, body := get(t, f.env, "/v1/transfers"+tc.query)
			wantError(t, status, body, http.StatusBadRequest, httperr.CodeInvalidRequest, tc.param)
		})
	}
}

func TestLineage(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		id, root string
		want     []string
	}{
		{"t-1", "t-1", []string{"t-1", "t-3"}},
		{"t-3", "t-1", []string{"t-1", "t-3"}},
		{"t-2", "t-2", []string{"t-2"}},
	} {
		var l api.Lineage
		body := mustGet(t, f.env, "/v1/transfers/"+tc.id+"/lineage", &l)
		var got []string
		for _, v := range l.Transfers {
			got = append(got, v.TransferID)
		}
		if l.Root != tc.root || !slices.Equal(got, tc.want) {
			t.Errorf("lineage of %s = %s, want root %s and %v", tc.id, body, tc.root, tc.want)
		}
	}
	status, body := get(t, f.env, "/v1/transfers/nope/lineage")
	wantError(t, status, body, 404, httperr.CodeNotFound, "")
	status, body = get(t, f.env, "/v1/transfers/t-1/lineage?depth=2")
	wantError(t, status, body, 400, httperr.CodeInvalidRequest, "depth")
}

func TestMigration(t *testing.T) {
	f := newFixture(t)
	var m api.Migration
	body := mustGet(t, f.env, "/v1/migrations/mig-1", &m)
	var got []string
	for _, v := range m.Transfers {
		got = append(got, v.TransferID)
	}
	if m.MigrationID != "mig-1" || m.Migration == nil || m.Migration.Name != "Move to cloud" ||
		!slices.Equal(got, []string{"t-1", "t-3"}) {
		t.Errorf("migration = %s", body)
	}
	status, body := get(t, f.env, "/v1/migrations/nope")
	wantError(t, status, body, 404, httperr.CodeNotFound, "")
}

func TestEvents(t *testing.T) {
	f := newFixture(t)
	// Re-deliveries beyond JetStream's duplicate window: the same envelope
	// stored again, without Nats-Msg-Id.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	first := f.events[0]
	var dupSeqs []uint64
	for range 2 {
		ack, err := f.env.Journal.Publish(ctx, journal.EventSubject(first.Source, first.TransferID, first.Kind), "", journal.Encode(first))
		if err != nil {
			t.Fatal(err)
		}
		dupSeqs = append(dupSeqs, ack.Seq)
	}
	f.env.Sync()

	var h struct {
		Events []struct {
			Seq        uint64          `json:"seq"`
			ReceivedAt time.Time       `json:"receivedAt"`
			Duplicates *int            `json:"duplicates"`
			V          int             `json:"v"`
			ID         string          `json:"id"`
			Source     engine.Source   `json:"source"`
			Kind       engine.Kind     `json:"kind"`
			TransferID string          `json:"transferId"`
			Issuer     string          `json:"issuer"`
			Payload    json.RawMessage `json:"payload"`
		} `json:"events"`
	}
	body := mustGet(t, f.env, "/v1/transfers/t-1/events", &h)
	if len(h.Events) != 3 {
		t.Fatalf("%d events, want 3: %s", len(h.Events), body)
	}
	for i, e := range h.Events {
		src := f.events[i]
		if e.Seq != f.seqs[i] || !e.ReceivedAt.Equal(src.ReceivedAt) || e.V != 1 || e.ID != src.ID ||
			e.Source != src.Source || e.Kind != src.Kind || e.TransferID != "t-1" || e.Issuer != src.Issuer {
			t.Errorf("event %d = %+v, want seq %d of %+v", i, e, f.seqs[i], src)
		}
		if !bytes.Equal(e.Payload, src.Payload) {
			t.Errorf("event %d payload\n%s\nwant verbatim\n%s", i, e.Payload, src.Payload)
		}
		want := 0
		if i == 0 {
			want = len(dupSeqs)
		}
		if e.Duplicates == nil || *e.Duplicates != want {
			t.Errorf("event %d duplicates = %v, want %d", i, e.Duplicates, want)
		}
	}
	// The projection skipped the re-deliveries too.
	var v engine.View
	mustGet(t, f.env, "/v1/transfers/t-1", &v)
	if v.Version != 3 {
		t.Errorf("version after re-deliveries = %d, want 3", v.Version)
	}

	status, body := get(t, f.env, "/v1/transfers/nope/events")
	wantError(t, status, body, 404, httperr.CodeNotFound, "")
	status, body = get(t, f.env, "/v1/transfers/t>/events")
	wantError(t, status, body, 400, httperr.CodeInvalidRequest, "id")
}

func TestMethodsAndPaths(t *testing.T) {
	env := apitest.New(t, apitest.Options{})
	for _, path := range []string{"/v1/transfers", "/v1/transfers/t-1", "/v1/stream", "/healthz", "/"} {
		for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
			status, body := do(t, env, method, path, "Bearer "+apitest.Token)
			wantError(t, status, body, http.StatusMethodNotAllowed, httperr.CodeMethodNotAllowed, "")
		}
	}
	status, body := get(t, env, "/nope")
	wantError(t, status, body, http.StatusNotFound, httperr.CodeNotFound, "")

	resp, err := http.Get(env.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	page := readAll(t, resp)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" || !bytes.Contains(page, []byte("/v1/transfers")) {
		t.Errorf("GET / = %d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), page)
	}
}

// TestGetTransferDiscoveredUpload: an upload-discovered event (what
// reconciliation journals under serve --drive) shows in GET
// /v1/transfers/{id} as an upload marked discovered.
func TestGetTransferDiscoveredUpload(t *testing.T) {
	f := newFixture(t)
	e, err := engine.Parse(engine.SourceApp, []byte(`{"eventType":"upload-discovered","transferId":"t-1","messageId":"disc-1","key":"k-held","label":"DATABASE"}`))
	if err != nil {
		t.Fatal(err)
	}
	e.Issuer, e.ReceivedAt = "tenant-a", apitest.Epoch.Add(time.Minute)
	f.env.Append(e)
	f.env.Sync()
	var v engine.View
	body := mustGet(t, f.env, "/v1/transfers/t-1", &v)
	i := slices.IndexFunc(v.Uploads, func(u engine.Upload) bool { return u.Key == "k-held" })
	if len(v.Uploads) != 2 || i < 0 || !v.Uploads[i].Discovered || v.Uploads[i].Label != "DATABASE" || v.Uploads[i].ReceivedAt != nil ||
		!bytes.Contains(body, []byte(`"discovered":true`)) {
		t.Errorf("t-1 = %s", body)
	}
}
