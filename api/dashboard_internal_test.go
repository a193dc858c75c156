package api

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzCookieToken checks the sign-in cookie: the cookie of a configured
// token authorizes, the cookie of any other string does not, and no
// cookie value authorizes but the token's one encoding (which a browser
// may quote).
func FuzzCookieToken(f *testing.F) {
	f.Add("dev-token", "dev-token", "")
	f.Add("tok;en, \"é\"", "tok;en", "dG9rO2Vu")
	f.Add(" padded ", "padded", "%%%")
	f.Fuzz(func(t *testing.T, token, other, raw string) {
		token = strings.TrimSpace(token)
		if token == "" {
			t.Skip()
		}
		ts := newTokens([]string{token})
		with := func(value string) error {
			r := httptest.NewRequest(http.MethodGet, "/v1/transfers", nil)
			r.Header.Set("Cookie", CookieName+"="+value)
			return ts.authorize(r)
		}
		if err := with(cookieValue(token)); err != nil {
			t.Fatalf("the cookie of %q: %v", token, err)
		}
		if err := with(cookieValue(other)); (err == nil) != (other == token) {
			t.Fatalf("the cookie of %q with token %q: %v", other, token, err)
		}
		if v := cookieValue(token); with(raw) == nil && raw != v && raw != `"`+v+`"` {
			t.Fatalf("cookie value %q authorizes token %q", raw, token)
		}
	})
}
