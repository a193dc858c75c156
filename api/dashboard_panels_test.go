package api_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/transferd/transferd/api"
	"github.com/transferd/transferd/api/apitest"
	"github.com/transferd/transferd/api/httperr"
	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/ingest/driver"
)

// deadLetterEnv is an Env with importer work on and one dead letter:
// upload key-d1 of transfer t-d, failed for good.
func deadLetterEnv(t *testing.T) *apitest.Env {
	t.Helper()
	lw := &lateWork{}
	env := apitest.New(t, apitest.Options{API: api.Config{
		Tokens:       []string{apitest.Token},
		ScopedTokens: []api.ScopedToken{{Tenant: "tenant-d", Token: "importer-d"}},
		Work:         lw,
	}})
	w, err := driver.NewWork(driver.WorkConfig{Journal: env.Journal, Store: env.Store})
	if err != nil {
		t.Fatal(err)
	}
	lw.w = w
	env.Append(apitest.Event(t, apitest.Spec{TransferID: "t-d", Kind: engine.KindAppDataUploaded, MessageID: "d1", Issuer: "tenant-d"}))
	env.Sync()
	if status, body := post(t, env, "/v1/transfers/t-d/uploads/key-d1/report", apitest.Token, `{"status":"failed","message":"corrupt"}`); status != http.StatusOK {
		t.Fatalf("report: %d %s", status, body)
	}
	env.Sync()
	return env
}

// Issue 12 item 2 (requeue from the dashboard): a /v1 write signed in
// with the dashboard's cookie alone was accepted, so another page could
// make a browser requeue (CSRF; SameSite=Strict stops only cross-site,
// not a sibling origin of the same site). It now needs X-Requested-With:
// transferd and a same-origin request; a bearer token needs neither, and
// reads with the cookie are unchanged.
func TestSessionWriteNeedsSameOriginHeader(t *testing.T) {
	env := deadLetterEnv(t)
	c := signInCookie(t, env)
	requeue := env.URL + "/v1/transfers/t-d/uploads/key-d1/requeue"
	for _, tc := range []struct {
		name   string
		header map[string]string
	}{
		{"cookie only", map[string]string{}},
		{"header with another value", map[string]string{"X-Requested-With": "XMLHttpRequest"}},
		{"header, cross-site", map[string]string{"X-Requested-With": "transferd", "Sec-Fetch-Site": "cross-site"}},
		{"header, same-site other origin", map[string]string{"X-Requested-With": "transferd", "Sec-Fetch-Site": "same-site"}},
		{"header, other Origin", map[string]string{"X-Requested-With": "transferd", "Origin": "https://evil.example"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := map[string]string{"Cookie": c.String(), "Content-Type": "application/json"}
			for k, v := range tc.header {
				h[k] = v
			}
			resp, body := dashboardDo(t, "POST", requeue, nil, h)
			wantError(t, resp.StatusCode, []byte(body), http.StatusForbidden, httperr.CodeForbidden, "")
		})
	}
	// Still a dead letter: nothing was requeued.
	var dl api.DeadLetterList
	mustGet(t, env, "/v1/dead-letters", &dl)
	if len(dl.DeadLetters) != 1 {
		t.Fatalf("dead letters after refused requeues: %+v", dl)
	}
	// Reading with the cookie needs no header.
	if resp, body := dashboardDo(t, "GET", env.URL+"/v1/dead-letters", nil, map[string]string{"Cookie": c.String()}); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET with the cookie: %d %s", resp.StatusCode, body)
	}
	// The dashboard's own request: cookie, header, same origin.
	resp, body := dashboardDo(t, "POST", requeue, nil, map[string]string{
		"Cookie": c.String(), "X-Requested-With": "transferd", "Sec-Fetch-Site": "same-origin", "Origin": env.URL,
	})
	var res api.WorkResult
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &res) != nil || res.Work.Status != engine.WorkRequeued {
		t.Fatalf("requeue from the dashboard: %d %s", resp.StatusCode, body)
	}
	env.Sync()
	mustGet(t, env, "/v1/dead-letters", &dl)
	if len(dl.DeadLetters) != 0 {
		t.Fatalf("dead letters after the requeue: %+v", dl)
	}
	// A tenant-scoped token still cannot sign in to the dashboard.
	resp, _ = dashboardDo(t, "POST", env.URL+"/login", map[string][]string{"token": {"importer-d"}}, nil)
	if resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 {
		t.Errorf("sign-in with a tenant-scoped token: %d %v", resp.StatusCode, resp.Cookies())
	}
}

// Issue 12 item 3 (the dashboard shows transfers close to a deadline):
// GET /v1/deadlines lists the unsettled transfers with a pending
// cancellation or within 24h of the 14-day limit, the most pressing
// first, and leaves out settled and far-off ones.
func TestDeadlinesRoute(t *testing.T) {
	env := apitest.New(t, apitest.Options{})
	now := time.Now().UTC().Truncate(time.Second)
	ev := func(id string, kind engine.Kind, msg string, ago time.Duration) *engine.Event {
		return apitest.Event(t, apitest.Spec{TransferID: id, Kind: kind, MessageID: msg, ReceivedAt: now.Add(-ago),
			CreatedAt: now.Add(-15 * 24 * time.Hour), Issuer: "jira:ck"})
	}
	old := 14*24*time.Hour - 12*time.Hour // times out in 12 h
	env.Append(
		ev("t-overdue", engine.KindListenerTriggered, "o-1", 2*time.Hour),
		ev("t-overdue", engine.KindCancellationRequested, "o-2", 70*time.Minute), // settle by 10 min ago
		ev("t-cancel", engine.KindListenerTriggered, "c-1", time.Hour),
		ev("t-cancel", engine.KindCancellationRequested, "c-2", 15*time.Minute), // settle in 45 min
		ev("t-old", engine.KindListenerTriggered, "l-1", old),
		ev("t-fresh", engine.KindListenerTriggered, "f-1", time.Hour),
		ev("t-done", engine.KindListenerTriggered, "d-1", old),
		ev("t-done", engine.KindTransferSettled, "d-2", time.Minute),
	)
	env.Sync()

	var got api.DeadlineList
	body := mustGet(t, env, "/v1/deadlines", &got)
	var ids []string
	for _, n := range got.Transfers {
		ids = append(ids, n.TransferID)
	}
	if got.Total != 3 || len(ids) != 3 || ids[0] != "t-overdue" || ids[1] != "t-cancel" || ids[2] != "t-old" {
		t.Fatalf("deadlines %v (total %d): %s", ids, got.Total, body)
	}
	o, c, l := got.Transfers[0], got.Transfers[1], got.Transfers[2]
	if o.Deadline != "settleBy" || !o.Overdue || !o.At.Equal(now.Add(-70*time.Minute+engine.CancellationGrace)) || o.NeedsAction != "settle" {
		t.Errorf("overdue cancellation: %+v", o)
	}
	if c.Deadline != "settleBy" || c.Overdue || !c.At.Equal(now.Add(-15*time.Minute+engine.CancellationGrace)) {
		t.Errorf("pending cancellation: %+v", c)
	}
	if l.Deadline != "timesOutAt" || l.Overdue || !l.At.Equal(now.Add(-old+engine.TransferTimeout)) || l.Tenant != "jira:ck" {
		t.Errorf("near the 14-day limit: %+v", l)
	}
	var v any
	json.Unmarshal(body, &v)
	for _, e := range (&oasValidator{doc: oasDoc(t)}).validate(map[string]any{"$ref": "#/components/schemas/DeadlineList"}, v, "$") {
		t.Errorf("%s\n%s", e, body)
	}

	mustGet(t, env, "/v1/deadlines?limit=1", &got)
	if got.Total != 3 || len(got.Transfers) != 1 || got.Transfers[0].TransferID != "t-overdue" {
		t.Errorf("limit=1: %+v", got)
	}
	for q, param := range map[string]string{"limit=0": "limit", "limit=x": "limit", "within=1h": "within"} {
		status, body := do(t, env, "GET", "/v1/deadlines?"+q, "Bearer "+apitest.Token)
		wantError(t, status, body, http.StatusBadRequest, httperr.CodeInvalidRequest, param)
	}
}
