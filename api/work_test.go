package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/transferd/transferd/api"
	"github.com/transferd/transferd/api/apitest"
	"github.com/transferd/transferd/api/httperr"
	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/ingest/driver"
)

// lateWork is an api.Work whose queue is set once the env's store exists.
type lateWork struct{ w *driver.Work }

func (l *lateWork) Claim(ctx context.Context, tenant string) (*driver.Item, error) {
	return l.w.Claim(ctx, tenant)
}
func (l *lateWork) Report(ctx context.Context, tenant, id, key string, r driver.WorkReport) (engine.UploadWork, error) {
	return l.w.Report(ctx, tenant, id, key, r)
}
func (l *lateWork) DeadLetters(tenant string) ([]driver.DeadLetter, error) {
	return l.w.DeadLetters(tenant)
}
func (l *lateWork) Requeue(ctx context.Context, tenant, id, key, msg string) (engine.UploadWork, error) {
	return l.w.Requeue(ctx, tenant, id, key, msg)
}

func post(t *testing.T, env *apitest.Env, path, token, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, env.URL+path, bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestWorkRoutes: an importer with a tenant-scoped token claims only its
// tenant's uploads, reports them, and gets 403 tenant_mismatch for
// another tenant's transfer and on the other /v1 routes; a partner-wide
// token sees every tenant's dead letters and requeues one (409 for an
// upload that is not one).
func TestWorkRoutes(t *testing.T) {
	lw := &lateWork{}
	env := apitest.New(t, apitest.Options{API: api.Config{
		Tokens:       []string{apitest.Token},
		ScopedTokens: []api.ScopedToken{{Tenant: "tenant-a", Token: "importer-a"}, {Tenant: "tenant-b", Token: "importer-b"}},
		Work:         lw,
	}})
	w, err := driver.NewWork(driver.WorkConfig{Journal: env.Journal, Store: env.Store})
	if err != nil {
		t.Fatal(err)
	}
	lw.w = w
	env.Append(
		apitest.Event(t, apitest.Spec{TransferID: "t-a", Kind: engine.KindAppDataUploaded, MessageID: "a1", Issuer: "tenant-a"}),
		apitest.Event(t, apitest.Spec{TransferID: "t-b", Kind: engine.KindAppDataUploaded, MessageID: "b1", Issuer: "tenant-b"}),
	)
	env.Sync()

	status, body := post(t, env, "/v1/work/claim", "importer-b", "")
	var it driver.Item
	if status != http.StatusOK || json.Unmarshal(body, &it) != nil || it.TransferID != "t-b" || it.Key != "key-b1" || it.Attempt != 1 {
		t.Fatalf("claim as tenant-b: %d %s", status, body)
	}
	if status, body := post(t, env, "/v1/work/claim", "importer-b", ""); status != http.StatusNoContent {
		t.Fatalf("second claim as tenant-b: %d %s", status, body)
	}
	// tenant-b reports on tenant-a's transfer: 403.
	status, body = post(t, env, "/v1/transfers/t-a/uploads/key-a1/report", "importer-b", `{"status":"done"}`)
	wantError(t, status, body, http.StatusForbidden, httperr.CodeTenantMismatch, "")
	status, body = do(t, env, "GET", "/v1/transfers/t-b", "Bearer importer-b")
	wantError(t, status, body, http.StatusForbidden, httperr.CodeTenantMismatch, "")
	status, body = post(t, env, "/v1/transfers/t-b/uploads/key-b1/report", "importer-b", `{"status":"bogus"}`)
	wantError(t, status, body, http.StatusBadRequest, httperr.CodeInvalidRequest, "body")
	status, body = post(t, env, "/v1/transfers/t-b/uploads/nope/report", "importer-b", `{"status":"done"}`)
	wantError(t, status, body, http.StatusNotFound, httperr.CodeNotFound, "")

	status, body = post(t, env, "/v1/transfers/t-b/uploads/key-b1/report", "importer-b", `{"status":"failed","message":"corrupt"}`)
	var res api.WorkResult
	if status != http.StatusOK || json.Unmarshal(body, &res) != nil || !res.Work.Dead() || res.Work.Attempt != 1 {
		t.Fatalf("report: %d %s", status, body)
	}
	env.Sync()
	var dl api.DeadLetterList
	if status, body := do(t, env, "GET", "/v1/dead-letters", "Bearer importer-a"); status != http.StatusOK || json.Unmarshal(body, &dl) != nil || len(dl.DeadLetters) != 0 {
		t.Errorf("tenant-a's dead letters: %d %s", status, body)
	}
	mustGet(t, env, "/v1/dead-letters", &dl)
	if len(dl.DeadLetters) != 1 || dl.DeadLetters[0].TransferID != "t-b" || dl.DeadLetters[0].Work.Message != "corrupt" {
		t.Fatalf("dead letters %+v", dl)
	}
	status, body = post(t, env, "/v1/transfers/t-b/uploads/key-b1/requeue", "importer-a", "")
	wantError(t, status, body, http.StatusForbidden, httperr.CodeTenantMismatch, "")
	if status, body := post(t, env, "/v1/transfers/t-b/uploads/key-b1/requeue", apitest.Token, `{"message":"retry"}`); status != http.StatusOK {
		t.Fatalf("requeue: %d %s", status, body)
	}
	env.Sync()
	status, body = post(t, env, "/v1/transfers/t-b/uploads/key-b1/requeue", apitest.Token, "")
	wantError(t, status, body, http.StatusConflict, httperr.CodeConflict, "")
	status, body = post(t, env, "/v1/work/claim", "importer-b", "")
	if status != http.StatusOK || json.Unmarshal(body, &it) != nil || it.Attempt != 2 {
		t.Fatalf("claim after requeue: %d %s", status, body)
	}
	// The requeue is an event of the transfer: its history shows it.
	var h struct {
		Events []struct {
			Kind    engine.Kind     `json:"kind"`
			Payload json.RawMessage `json:"payload"`
		} `json:"events"`
	}
	mustGet(t, env, "/v1/transfers/t-b/events", &h)
	var kinds []engine.Kind
	for _, e := range h.Events {
		kinds = append(kinds, e.Kind)
	}
	if len(kinds) != 3 || kinds[1] != engine.KindUploadReported || !bytes.Contains(h.Events[2].Payload, []byte(`"requeued"`)) {
		t.Errorf("history kinds %v", kinds)
	}
	// A progress report of the open lease's attempt: the work shows it.
	status, body = post(t, env, "/v1/transfers/t-b/uploads/key-b1/report", "importer-b", `{"status":"progress","percent":40,"message":"40 of 100 issues"}`)
	if status != http.StatusOK || json.Unmarshal(body, &res) != nil || res.Work.Status != engine.WorkProgress || res.Work.Percent != 40 || res.Work.Attempt != 2 {
		t.Fatalf("progress: %d %s", status, body)
	}
	for _, bad := range []string{`{"status":"progress","percent":101}`, `{"status":"done","percent":10}`, `{"status":"progress","percent":"half"}`} {
		status, body = post(t, env, "/v1/transfers/t-b/uploads/key-b1/report", "importer-b", bad)
		wantError(t, status, body, http.StatusBadRequest, httperr.CodeInvalidRequest, "body")
	}
}
