package main

import (
	"bufio"
	"encoding/json"
	"net"
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

// TestServeLocalKeysNotUp: serve trusting a local simulator's key server
// that is not up yet (make run) says so plainly at info, with no warning.
func TestServeLocalKeysNotUp(t *testing.T) {
	port := freeLoopbackPort(t)
	jwks := "http://127.0.0.1:" + port + "/forge/jwks.json"
	srv := startServe(t, "--data", t.TempDir(), "--log-level", "info", "--forge-app-ari", "ari:cloud:ecosystem::app/00000000-0000-4000-8000-000000000000",
		"--forge-jwks-url", jwks, "--api-token", "t0ken-for-the-test")
	srv.stop(t)
	log := srv.stderr.String()
	if strings.Contains(log, "level=WARN") || !strings.Contains(log, "transferd simulate") {
		t.Errorf("want a note naming the simulator and no warning:\n%s", log)
	}
}

func freeLoopbackPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}
