package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/transferd/transferd/api/apitest"
	"github.com/transferd/transferd/api/httperr"
)

// get sends GET path with the test token and returns the status and body.
func get(t testing.TB, env *apitest.Env, path string) (int, []byte) {
	t.Helper()
	return do(t, env, http.MethodGet, path, "Bearer "+apitest.Token)
}

func do(t testing.TB, env *apitest.Env, method, path, auth string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, env.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// mustGet is get that expects 200 and decodes the body into v.
func mustGet(t testing.TB, env *apitest.Env, path string, v any) []byte {
	t.Helper()
	status, b := get(t, env, path)
	if status != http.StatusOK {
		t.Fatalf("GET %s = %d %s", path, status, b)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("GET %s: %v in %s", path, err, b)
		}
	}
	return b
}

// wantError checks an error reply: status, code and, when param is set,
// the parameter named.
func wantError(t testing.TB, status int, body []byte, wantStatus int, code, param string) {
	t.Helper()
	if status != wantStatus {
		t.Fatalf("status = %d, want %d (%s)", status, wantStatus, body)
	}
	var eb httperr.Body
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&eb); err != nil {
		t.Fatalf("error body %s: %v", body, err)
	}
	if eb.Error.Code != code || eb.Error.Message == "" {
		t.Errorf("error = %+v, want code %q and a message", eb.Error, code)
	}
	if param != "" && (eb.Error.Param != param || !strings.Contains(eb.Error.Message, param)) {
		t.Errorf("error = %+v, want it to name %q", eb.Error, param)
	}
}

func readAll(t testing.TB, resp *http.Response) []byte {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
