package api_test

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/transferd/transferd/api"
	"github.com/transferd/transferd/api/apitest"
)

// Finding 10.D: the sign-in cookie was the API token, so signing out
// could not revoke a copied cookie. It is a server-side session id now.
func TestSignOutRevokesTheCookie(t *testing.T) {
	env := apitest.New(t, apitest.Options{})
	c := signInCookie(t, env)
	if strings.Contains(c.Value, apitest.Token) || c.Value == base64.RawURLEncoding.EncodeToString([]byte(apitest.Token)) {
		t.Fatalf("cookie %q carries the token", c.Value)
	}
	withCookie := func() int {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, env.URL+"/v1/transfers", nil)
		req.AddCookie(c)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := withCookie(); s != http.StatusOK {
		t.Fatalf("signed in: %d", s)
	}
	resp, _ := dashboardDo(t, "POST", env.URL+"/logout", url.Values{}, map[string]string{"Cookie": c.String()})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("POST /logout = %d", resp.StatusCode)
	}
	if s := withCookie(); s != http.StatusUnauthorized {
		t.Errorf("the cookie after sign-out: %d, want 401", s)
	}
}

// Finding 10.D: /login took thousands of guesses a second. Past a burst,
// a client is answered 429 with Retry-After, even with the right token.
func TestLoginRateLimited(t *testing.T) {
	env := apitest.New(t, apitest.Options{})
	limited := false
	for i := 0; i < 100 && !limited; i++ {
		resp, body := dashboardDo(t, "POST", env.URL+"/login", url.Values{"token": {"guess"}}, nil)
		switch resp.StatusCode {
		case http.StatusUnauthorized:
		case http.StatusTooManyRequests:
			limited = true
			if resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "Too many") {
				t.Errorf("429 without Retry-After or message: %v %s", resp.Header, body)
			}
		default:
			t.Fatalf("attempt %d: %d %s", i, resp.StatusCode, body)
		}
	}
	if !limited {
		t.Fatal("100 wrong tokens in a row were never rate-limited")
	}
	resp, _ := dashboardDo(t, "POST", env.URL+"/login", url.Values{"token": {apitest.Token}}, nil)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("the right token while limited: %d, want 429", resp.StatusCode)
	}
	for _, c := range resp.Cookies() {
		if c.Name == api.CookieName {
			t.Error("a limited sign-in set a cookie")
		}
	}
}
