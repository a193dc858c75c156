package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/transferd/transferd/api"
	"github.com/transferd/transferd/api/apitest"
	"github.com/transferd/transferd/api/httperr"
	"github.com/transferd/transferd/engine/journal"
	"github.com/transferd/transferd/engine/journal/journaltest"
)

func TestHealthz(t *testing.T) {
	env := apitest.New(t, apitest.Options{})
	status, body := do(t, env, "GET", "/healthz", "")
	if status != 200 || strings.TrimSpace(string(body)) != `{"status":"ok"}` {
		t.Errorf("/healthz = %d %s", status, body)
	}
}

func readiness(t *testing.T, env *apitest.Env) (int, api.Readiness) {
	t.Helper()
	status, body := do(t, env, "GET", "/readyz", "")
	var rd api.Readiness
	if err := json.Unmarshal(body, &rd); err != nil {
		t.Fatalf("/readyz body %s: %v", body, err)
	}
	return status, rd
}

func TestReadyz(t *testing.T) {
	t.Run("caught up", func(t *testing.T) {
		f := newFixture(t)
		status, rd := readiness(t, f.env)
		last := f.seqs[len(f.seqs)-1]
		if status != 200 || rd.Status != "ready" || rd.Journal.LastSeq != last ||
			rd.Projector.Checkpoint != last || rd.Projector.LagSequences != 0 || rd.Projector.LagSeconds != 0 {
			t.Errorf("/readyz = %d %+v %+v %+v", status, rd, rd.Journal, rd.Projector)
		}
		if want := f.env.Journal.Durability().Guarantee; want == "" || rd.Journal.Durability != want {
			t.Errorf("/readyz journal durability %q, want %q", rd.Journal.Durability, want)
		}
	})

	lagging := []struct {
		name   string
		cfg    api.Config
		status int
		reason string
	}{
		{"within bounds", api.Config{MaxLagSequences: 3, MaxLag: time.Hour}, 200, ""},
		{"too many behind", api.Config{MaxLagSequences: 2, MaxLag: time.Hour}, 503, "3 messages behind"},
		{"too long behind", api.Config{MaxLagSequences: 10, MaxLag: time.Millisecond}, 503, "behind the journal"},
	}
	for _, tc := range lagging {
		t.Run(tc.name, func(t *testing.T) {
			env := apitest.New(t, apitest.Options{NoProjector: true, API: tc.cfg})
			env.Append(
				apitest.Event(t, apitest.Spec{TransferID: "t-1", MessageID: "m-1"}),
				apitest.Event(t, apitest.Spec{TransferID: "t-1", MessageID: "m-2"}),
				apitest.Event(t, apitest.Spec{TransferID: "t-1", MessageID: "m-3"}),
			)
			time.Sleep(10 * time.Millisecond)
			status, rd := readiness(t, env)
			if status != tc.status || !strings.Contains(rd.Reason, tc.reason) || rd.Projector.LagSequences != 3 ||
				rd.Projector.LagSeconds < 0.01 {
				t.Errorf("/readyz = %d %+v %+v", status, rd, rd.Projector)
			}
		})
	}

	t.Run("journal down", func(t *testing.T) {
		ns := journaltest.StartServer(t)
		j := journaltest.OpenConfig(t, journal.Config{URL: ns.ClientURL(), Timeout: time.Second})
		env := apitest.New(t, apitest.Options{Journal: j, API: api.Config{ReadyTimeout: 500 * time.Millisecond}})
		if status, rd := readiness(t, env); status != 200 {
			t.Fatalf("/readyz before the outage = %d %+v", status, rd)
		}
		ns.Shutdown()
		ns.WaitForShutdown()
		start := time.Now()
		status, rd := readiness(t, env)
		if status != http.StatusServiceUnavailable || rd.Status != "not_ready" || !strings.Contains(rd.Reason, "journal unreachable") {
			t.Errorf("/readyz with the journal down = %d %+v", status, rd)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("/readyz took %v", d)
		}
		// Queries that need the journal answer 503 too; the projection
		// still answers.
		statusEv, body := get(t, env, "/v1/transfers/t-1/events")
		wantError(t, statusEv, body, http.StatusServiceUnavailable, httperr.CodeUnavailable, "")
		statusList, body := get(t, env, "/v1/transfers")
		if statusList != 200 {
			t.Errorf("list with the journal down = %d %s", statusList, body)
		}
	})
}
