package api_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/transferd/transferd/api"
	"github.com/transferd/transferd/api/apitest"
	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/ingest"
	"github.com/transferd/transferd/ingest/atlassian"
)

// TestMetrics sends events through a real ingest handler observed by the
// API's metrics, queries the API, and reads /metrics.
func TestMetrics(t *testing.T) {
	env := apitest.New(t, apitest.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	reg, err := ingest.OpenRegistry(ctx, env.Journal.Tenants())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	secret := []byte("secret-a-0123456789")
	if err := reg.Put(ctx, ingest.Tenant{ClientKey: "tenant-a", SharedSecret: string(secret)}); err != nil {
		t.Fatal(err)
	}
	in, err := ingest.New(ctx, ingest.Config{
		BaseURL: "https://app.example.com",
		Observe: func(o ingest.Outcome) { env.API.Metrics().ObserveIngest(api.IngestOutcome(o)) },
	}, env.Journal, reg)
	if err != nil {
		t.Fatal(err)
	}
	ingestSrv := httptest.NewServer(in)
	t.Cleanup(ingestSrv.Close)

	post := func(body []byte) int {
		tok, err := atlassian.SignConnect("POST", ingest.DefaultConnectPath, "", "tenant-a", secret, time.Minute, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest("POST", ingestSrv.URL+ingest.DefaultConnectPath, bytes.NewReader(body))
		req.Header.Set("Authorization", "JWT "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	ev := apitest.Event(t, apitest.Spec{TransferID: "t-1", MessageID: "m-1", Kind: engine.KindListenerTriggered})
	for i, want := range []int{200, 200} { // the second is a duplicate
		if got := post(ev.Payload); got != want {
			t.Fatalf("post %d = %d", i, got)
		}
	}
	if got := post([]byte(`{"eventType":"listener-triggered"}`)); got != 400 {
		t.Fatalf("invalid post = %d", got)
	}
	env.Sync()
	mustGet(t, env, "/v1/transfers/t-1", nil)
	get(t, env, "/v1/transfers/nope")

	status, body := do(t, env, "GET", "/metrics", "")
	if status != 200 {
		t.Fatalf("/metrics = %d", status)
	}
	text := string(body)
	for _, want := range []string{
		`transferd_ingest_requests_total{kind="listener-triggered",route="connect",source="connect",status="200"} 2`,
		`transferd_ingest_requests_total{kind="",route="connect",source="connect",status="400"} 1`,
		`transferd_ingest_duplicates_total{kind="listener-triggered",source="connect"} 1`,
		`transferd_ingest_request_duration_seconds_count{route="connect"} 3`,
		`transferd_api_requests_total{route="GET /v1/transfers/{id}",status="200"} 1`,
		`transferd_api_requests_total{route="GET /v1/transfers/{id}",status="404"} 1`,
		`transferd_api_request_duration_seconds_count{route="GET /v1/transfers/{id}"} 2`,
		`transferd_api_streams_open 0`,
		`transferd_projector_applied_events_total 1`,
		`transferd_projector_duplicates_total 0`,
		`transferd_projector_commits_total 1`,
		`transferd_projector_lag_sequences 0`,
		`transferd_projector_lag_seconds 0`,
		`transferd_projector_checkpoint 1`,
		`transferd_journal_last_sequence 1`,
		`transferd_journal_up 1`,
		`go_goroutines `,
		`process_cpu_seconds_total `,
	} {
		if !strings.Contains(text, want+"\n") && !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(text, apitest.Token) || strings.Contains(text, string(secret)) {
		t.Error("/metrics shows a secret")
	}
}

// TestBuildInfo: the metrics name the running version.
func TestBuildInfo(t *testing.T) {
	m := api.NewMetrics()
	m.SetVersion("v1.2.3-test")
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), `transferd_build_info{goversion="go`) || !strings.Contains(rec.Body.String(), `version="v1.2.3-test"} 1`) {
		t.Errorf("no transferd_build_info with the version:\n%s", rec.Body.String())
	}
}
