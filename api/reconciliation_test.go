package api_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/transferd/transferd/api"
	"github.com/transferd/transferd/api/apitest"
	"github.com/transferd/transferd/ingest/driver"
)

// TestReconciliationRoute: GET /v1/reconciliation is 404 while
// reconciliation is off, needs a token, and shows the reconciler's last
// pass as the document describes it.
func TestReconciliationRoute(t *testing.T) {
	get := func(t *testing.T, env *apitest.Env, token bool) (*http.Response, []byte) {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, env.URL+"/v1/reconciliation", nil)
		if token {
			req.Header.Set("Authorization", "Bearer "+apitest.Token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp, readAll(t, resp)
	}
	off := apitest.New(t, apitest.Options{})
	if resp, body := get(t, off, true); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("off: %d %s", resp.StatusCode, body)
	}

	at := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	last := driver.Reconciliation{
		At: at, Passes: 2, Tenants: 1, Transfers: 3,
		UnknownTransfers: []driver.UnknownTransfer{{TransferID: "t-9", Tenant: "ck-1", FirstSeenAt: at}},
		MissingUploads:   []driver.MissingUpload{{TransferID: "t-1", S3Key: "k-1", Label: "DATABASE", FirstSeenAt: at}},
		Errors:           []string{"transfer/recent of tenant ck-2: 503"},
	}
	on := apitest.New(t, apitest.Options{API: api.Config{Reconciliation: func() any { return last }}})
	if resp, _ := get(t, on, false); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token: %d", resp.StatusCode)
	}
	resp, body := get(t, on, true)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	var got driver.Reconciliation
	if err := json.Unmarshal(body, &got); err != nil || got.Passes != 2 || len(got.MissingUploads) != 1 || got.MissingUploads[0].S3Key != "k-1" || len(got.UnknownTransfers) != 1 {
		t.Fatalf("%v %s", err, body)
	}
	doc := oasDoc(t)
	var v any
	json.Unmarshal(body, &v)
	schema := map[string]any{"$ref": "#/components/schemas/Reconciliation"}
	for _, e := range (&oasValidator{doc: doc}).validate(schema, v, "$") {
		t.Errorf("%s\n%s", e, body)
	}
}
