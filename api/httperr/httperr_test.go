package httperr_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/transferd/transferd/api/httperr"
)

// TestStatuses is the contract: every code and its one status, spelled out
// (docs/design.md §9.5).
func TestStatuses(t *testing.T) {
	want := map[string]int{
		"invalid_request": 400, "invalid_payload": 400,
		"unauthorized": 401, "missing_token": 401, "malformed_token": 401, "invalid_algorithm": 401,
		"invalid_signature": 401, "token_expired": 401, "invalid_qsh": 401, "context_qsh": 401,
		"unknown_tenant": 401, "invalid_audience": 401, "invalid_issuer": 401,
		"tenant_mismatch": 403, "not_found": 404, "method_not_allowed": 405, "conflict": 409, "forbidden": 403,
		"payload_too_large": 413, "unsupported_media_type": 415,
		"internal": 500, "unavailable": 503,
	}
	codes := httperr.Codes()
	if len(codes) != len(want) {
		t.Errorf("%d codes, want %d: %v", len(codes), len(want), codes)
	}
	for code, status := range want {
		if got, ok := httperr.Status(code); !ok || got != status {
			t.Errorf("Status(%q) = %d, %v; want %d", code, got, ok, status)
		}
		if !slices.Contains(codes, code) {
			t.Errorf("Codes() lacks %q", code)
		}
	}
	for _, gone := range []string{"journal_unavailable", "", "Not_Found"} {
		if _, ok := httperr.Status(gone); ok {
			t.Errorf("Status(%q) is known", gone)
		}
	}
}

func TestWrite(t *testing.T) {
	for _, tc := range []struct {
		name       string
		detail     httperr.Detail
		status     int
		want       string
		retryAfter string
	}{
		{"not found", httperr.Detail{Code: httperr.CodeNotFound, Message: "no such transfer"}, 404,
			`{"error":{"code":"not_found","message":"no such transfer"}}`, ""},
		{"param", httperr.Detail{Code: httperr.CodeInvalidRequest, Message: "at: bad", Param: "at"}, 400,
			`{"error":{"code":"invalid_request","message":"at: bad","param":"at"}}`, ""},
		{"unavailable", httperr.Detail{Code: httperr.CodeUnavailable, Message: "retry later"}, 503,
			`{"error":{"code":"unavailable","message":"retry later"}}`, "1"},
		{"unknown code is a bug", httperr.Detail{Code: "oops", Message: "secret detail"}, 500,
			`{"error":{"code":"internal","message":"internal error"}}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			if got := httperr.Write(w, tc.detail); got != tc.status || w.Code != tc.status {
				t.Fatalf("Write = %d, recorded %d; want %d", got, w.Code, tc.status)
			}
			if got := w.Body.String(); got != tc.want+"\n" {
				t.Errorf("body %q, want %q", got, tc.want+"\n")
			}
			h := w.Header()
			if h.Get("Content-Type") != "application/json" || h.Get("Cache-Control") != "no-store" || h.Get("Retry-After") != tc.retryAfter {
				t.Errorf("headers %v", h)
			}
		})
	}
}

func TestWriteJSONUnencodable(t *testing.T) {
	w := httptest.NewRecorder()
	httperr.WriteJSON(w, http.StatusOK, map[string]any{"f": func() {}})
	var b httperr.Body
	if w.Code != 500 || json.Unmarshal(w.Body.Bytes(), &b) != nil || b.Error.Code != httperr.CodeInternal {
		t.Fatalf("%d %s, want 500 internal", w.Code, w.Body)
	}
}
