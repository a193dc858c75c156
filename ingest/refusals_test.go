package ingest_test

import (
	"bufio"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/engine/journal/journaltest"
	"github.com/transferd/transferd/ingest"
)

// syncBuffer is a log destination safe for the handler's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) lines(t *testing.T) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(s.b.String()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		if m["msg"] == "ingest refused" {
			out = append(out, m)
		}
	}
	return out
}

// TestRefusalsAreLogged: every refused request leaves one warning at the
// default level with its route, remote address, status, code and message,
// the tenant and transfer once known, and never a token.
func TestRefusalsAreLogged(t *testing.T) {
	var logs syncBuffer
	p := newPlatform(t, journaltest.Open(t), ingest.Config{Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	tokA := "JWT " + p.connectToken("tenant-a", p.secrets["tenant-a"], time.Minute)
	tokB := "JWT " + p.connectToken("tenant-b", p.secrets["tenant-b"], time.Minute)
	if r := p.post(connectPath, tokA, "application/json", connectEvent("t-owned", "listener-triggered", "")); r.status != 200 {
		t.Fatalf("setup: %d %s", r.status, r.body)
	}
	p.post(connectPath, "", "application/json", connectEvent("t-1", "listener-triggered", ""))       // 401
	p.post(connectPath, tokA, "text/plain", connectEvent("t-1", "listener-triggered", ""))           // 415
	p.post(connectPath, tokB, "application/json", connectEvent("t-owned", "listener-triggered", "")) // 403
	req, _ := http.NewRequest("GET", p.srv.URL+forgePath, nil)
	if res, err := p.srv.Client().Do(req); err == nil { // 405
		res.Body.Close()
	}

	lines := logs.lines(t)
	if len(lines) != 4 {
		t.Fatalf("%d refusal lines, want 4:\n%s", len(lines), logs.b.String())
	}
	want := []struct {
		status        float64
		code          string
		issuer, trans string
	}{
		{401, "missing_token", "", ""},
		{415, "unsupported_media_type", "tenant-a", ""},
		{403, "tenant_mismatch", "tenant-b", "t-owned"},
		{405, "method_not_allowed", "", ""},
	}
	for i, w := range want {
		l := lines[i]
		if l["level"] != "WARN" || l["status"] != w.status || l["code"] != w.code || l["message"] == "" ||
			!strings.HasPrefix(l["remote"].(string), "127.0.0.1:") || l["route"] == "" || l["path"] == "" {
			t.Errorf("line %d: %v, want status %v code %s with route, path, remote and message", i, l, w.status, w.code)
		}
		if got, _ := l["issuer"].(string); got != w.issuer {
			t.Errorf("line %d: issuer %q, want %q", i, got, w.issuer)
		}
		if got, _ := l["transferId"].(string); got != w.trans {
			t.Errorf("line %d: transferId %q, want %q", i, got, w.trans)
		}
	}
	all := logs.b.String()
	for _, secret := range []string{tokA[4:], tokB[4:], string(p.secrets["tenant-a"]), string(p.secrets["tenant-b"])} {
		if strings.Contains(all, secret) {
			t.Errorf("a token or secret is in the log:\n%s", all)
		}
	}
}

// TestRefusalLogIsLimited: a flood of refusals does not become a flood of
// lines, and the lines say how many were left out.
func TestRefusalLogIsLimited(t *testing.T) {
	var logs syncBuffer
	p := newPlatform(t, journaltest.Open(t), ingest.Config{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	const n = 3 * ingest.RefusalLogBurst
	for range n {
		p.post(connectPath, "", "application/json", connectEvent("t-1", "listener-triggered", ""))
	}
	lines := logs.lines(t)
	if len(lines) == 0 || len(lines) >= n {
		t.Fatalf("%d lines for %d refusals: want some, and fewer", len(lines), n)
	}
}
