package api

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// FuzzCookieSession checks the sign-in cookie: the id of an open session
// authorizes, the same id after the session is closed does not, and no
// other value does, the token's own encodings included (finding 10.D: the
// cookie used to be the token itself).
func FuzzCookieSession(f *testing.F) {
	f.Add("dev-token", "")
	f.Add("tok;en", "dG9rO2Vu")
	f.Add(" padded ", "%%%")
	f.Fuzz(func(t *testing.T, token, raw string) {
		ts := newTokens([]string{token}, nil)
		ss := newSessions()
		id := ss.open()
		with := func(value string) error {
			r := httptest.NewRequest(http.MethodGet, "/v1/transfers", nil)
			r.AddCookie(&http.Cookie{Name: CookieName, Value: value})
			_, err := ts.authorize(r, ss)
			return err
		}
		if err := with(id); err != nil {
			t.Fatalf("an open session: %v", err)
		}
		if raw != id && with(raw) == nil {
			t.Fatalf("cookie value %q authorizes", raw)
		}
		if with(token) == nil {
			t.Fatalf("the token itself authorizes as a cookie")
		}
		ss.close(id)
		if with(id) == nil {
			t.Fatal("a closed session still authorizes")
		}
	})
}
