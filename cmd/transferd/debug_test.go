package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestServeDebugListen: --debug-listen serves goroutine dumps and profiles
// on its own loopback listener, not on the public one, and refuses an
// address beyond the machine.
func TestServeDebugListen(t *testing.T) {
	srv := startServe(t, "--data", t.TempDir(), "--log-level", "info", "--log-format", "json", "--debug-listen", "127.0.0.1:0")
	var debugURL string
	sc := bufio.NewScanner(strings.NewReader(srv.stderr.String()))
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "debug endpoints listening (pprof)" {
			debugURL, _ = m["url"].(string)
		}
	}
	if !strings.HasPrefix(debugURL, "http://127.0.0.1:") {
		t.Fatalf("no debug listener logged:\n%s", srv.stderr)
	}
	res, err := http.Get(debugURL + "goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(string(body), "runServe") {
		t.Errorf("goroutine dump: %d\n%.300s", res.StatusCode, body)
	}
	res, err = http.Get(srv.url + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode == http.StatusOK {
		t.Errorf("the public listener serves /debug/pprof/")
	}

	for _, addr := range []string{"0.0.0.0:6060", ":6060", "192.0.2.1:6060", "no-port"} {
		var out lockedBuffer
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second) // should it serve after all
		err := run(ctx, []string{"transferd", "serve", "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--debug-listen", addr}, noEnv, strings.NewReader(""), &out, &out)
		if exitCode(err) != 2 {
			t.Errorf("--debug-listen %s: %v, want a usage error", addr, err)
		}
		cancel()
	}
}
