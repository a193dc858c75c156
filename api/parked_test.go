package api_test

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/transferd/transferd/api"
	"github.com/transferd/transferd/api/apitest"
	"github.com/transferd/transferd/engine"
)

// Finding 10.A, read side: an event stored with a createdAt whose 14-day
// deadline passes year 9999 (appended straight to the journal, as if
// ingest had let it through) is parked: listed by GET /v1/parked, counted
// in transferd_projector_parked_events, and the service answers
// everything else, ?at= included.
func TestParkedEventsAreVisible(t *testing.T) {
	env := apitest.New(t, apitest.Options{})
	end := time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
	env.Append(
		apitest.Event(t, apitest.Spec{TransferID: "t-ok", MessageID: "m1"}),
		apitest.Event(t, apitest.Spec{TransferID: "t-ok", MessageID: "bad", Kind: engine.KindExportPhaseCompleted, CreatedAt: end}),
		apitest.Event(t, apitest.Spec{TransferID: "t-bad", MessageID: "bad2", CreatedAt: end}),
		apitest.Event(t, apitest.Spec{TransferID: "t-ok", MessageID: "m2", Kind: engine.KindAppDataUploaded}),
	)
	env.Sync()

	var list api.ParkedList
	mustGet(t, env, "/v1/parked", &list)
	if list.Total != 2 || len(list.Parked) != 2 || list.Parked[0].ID != "bad" || list.Parked[1].TransferID != "t-bad" || list.Parked[0].Reason == "" {
		t.Fatalf("parked %+v", list)
	}
	mustGet(t, env, "/v1/parked?limit=1", &list)
	if len(list.Parked) != 1 || list.NextAfter != list.Parked[0].Seq {
		t.Fatalf("first page %+v", list)
	}
	after := list.NextAfter
	list = api.ParkedList{}
	mustGet(t, env, "/v1/parked?limit=1&after="+strconv.FormatUint(after, 10), &list)
	if len(list.Parked) != 1 || list.Parked[0].ID != "bad2" || list.NextAfter != 0 {
		t.Fatalf("second page %+v", list)
	}

	var v struct {
		Version         int  `json:"version"`
		ExportCompleted bool `json:"exportCompleted"`
	}
	mustGet(t, env, "/v1/transfers/t-ok", &v)
	if v.Version != 2 || v.ExportCompleted {
		t.Errorf("t-ok %+v: the parked event was applied", v)
	}
	mustGet(t, env, "/v1/transfers/t-ok?at=99999999", &v)
	if v.Version != 2 {
		t.Errorf("t-ok ?at= %+v", v)
	}
	if status, _ := get(t, env, "/v1/transfers/t-bad"); status != http.StatusNotFound {
		t.Errorf("t-bad = %d, want 404", status)
	}
	mustGet(t, env, "/v1/transfers/t-bad/events", nil) // the journal keeps it

	resp, err := http.Get(env.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "transferd_projector_parked_events 2") {
		t.Errorf("metrics lack transferd_projector_parked_events 2")
	}
}
