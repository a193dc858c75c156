package main

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestServeLogs: with --log-format json every line is JSON; a refused
// webhook leaves a warning naming route, status and code at the default
// level; --access-log adds one line per request.
func TestServeLogs(t *testing.T) {
	srv := startServe(t, "--data", t.TempDir(), "--log-level", "info", "--log-format", "json", "--access-log")
	res, err := http.Post(srv.url+"/connect/migration-events", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401", res.StatusCode)
	}
	srv.stop(t)
	var refused, access bool
	sc := bufio.NewScanner(strings.NewReader(srv.stderr.String()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("not a JSON line: %q", sc.Text())
		}
		switch m["msg"] {
		case "ingest refused":
			refused = m["route"] == "connect" && m["status"] == 401.0 && m["code"] == "missing_token" && m["remote"] != nil
		case "http request":
			access = access || (m["path"] == "/connect/migration-events" && m["status"] == 401.0)
		}
	}
	if !refused || !access {
		t.Errorf("refusal line %v, access line %v:\n%s", refused, access, srv.stderr)
	}
	var out lockedBuffer
	if err := run(t.Context(), []string{"transferd", "serve", "--log-format", "xml"}, noEnv, strings.NewReader(""), &out, &out); exitCode(err) != 2 {
		t.Errorf("--log-format xml: %v, want a usage error", err)
	}
}
