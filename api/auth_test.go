package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/transferd/transferd/api"
	"github.com/transferd/transferd/api/apitest"
	"github.com/transferd/transferd/api/httperr"
)

// TestAuthEveryRoute checks that every /v1 route refuses a request without
// the token, with a wrong one, or with another scheme, and that the health,
// metrics and dashboard routes need none.
func TestAuthEveryRoute(t *testing.T) {
	env := apitest.New(t, apitest.Options{API: api.Config{Tokens: []string{"other-token", apitest.Token}}})
	auths := []struct {
		name, header, challenge string
	}{
		{"missing", "", `Bearer realm="transferd"`},
		{"wrong", "Bearer not-the-token", `error="invalid_token"`},
		{"prefix", "Bearer " + apitest.Token[:len(apitest.Token)-1], `error="invalid_token"`},
		{"longer", "Bearer " + apitest.Token + "x", `error="invalid_token"`},
		{"empty", "Bearer ", `Bearer realm="transferd"`},
		{"basic", "Basic " + apitest.Token, `Bearer realm="transferd"`},
	}
	v1 := 0
	for _, route := range env.API.Routes() {
		method, path, _ := strings.Cut(route, " ")
		path = strings.NewReplacer("{id}", "t-1", "{migrationId}", "mig-1", "{key}", "k-1", "{$}", "").Replace(path)
		if !strings.HasPrefix(path, "/v1/") {
			t.Run(route, func(t *testing.T) {
				if status, body := do(t, env, method, path, ""); status != http.StatusOK && status != http.StatusServiceUnavailable {
					t.Errorf("%s without a token = %d %s", route, status, body)
				}
			})
			continue
		}
		v1++
		for _, a := range auths {
			t.Run(route+"/"+a.name, func(t *testing.T) {
				req, _ := http.NewRequestWithContext(t.Context(), method, env.URL+path, nil)
				if a.header != "" {
					req.Header.Set("Authorization", a.header)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				if got := resp.Header.Get("WWW-Authenticate"); !strings.Contains(got, a.challenge) {
					t.Errorf("WWW-Authenticate = %q, want %q", got, a.challenge)
				}
				body := readAll(t, resp)
				wantError(t, resp.StatusCode, body, http.StatusUnauthorized, httperr.CodeUnauthorized, "")
			})
		}
	}
	if v1 != 13 { // GET /v1/parked added for finding 10.A; GET /v1/reconciliation, /v1/deadlines and the 4 work routes for issue 12
		t.Errorf("Routes() has %d /v1 routes, want 13", v1)
	}
	// Either configured token works.
	for _, tok := range []string{"other-token", apitest.Token} {
		if status, body := do(t, env, "GET", "/v1/transfers", "bearer "+tok); status != http.StatusOK {
			t.Errorf("token %q: %d %s", tok, status, body)
		}
	}
}

func TestNoTokensRefusesAll(t *testing.T) {
	env := apitest.New(t, apitest.Options{API: api.Config{Tokens: []string{" ", ""}}})
	for _, auth := range []string{"Bearer ", "Bearer  ", "Bearer x"} {
		status, body := do(t, env, "GET", "/v1/transfers", auth)
		wantError(t, status, body, http.StatusUnauthorized, httperr.CodeUnauthorized, "")
	}
}
