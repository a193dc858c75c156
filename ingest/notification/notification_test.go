package notification_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/transferd/transferd/api/httperr"
	"github.com/transferd/transferd/ingest/atlassian"
	"github.com/transferd/transferd/ingest/notification"
	"github.com/transferd/transferd/ingest/notification/notificationtest"
)

const (
	appKey = "com.example.migration-app"
	secret = "tenant-shared-secret-0123456789"
)

// TestClientAgainstSite registers, lists and clears endpoints on fake
// sites at the host's root and under a path, each request verified with
// the ingest side's rules.
func TestClientAgainstSite(t *testing.T) {
	for _, tc := range []struct{ name, path, suffix string }{
		{"jira at the root", "", ""},
		{"confluence under /wiki", "/wiki", ""},
		{"site URL with a trailing slash", "/wiki", "/"},
		{"nested path", "/a/b", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			site := notificationtest.NewSite(t, notificationtest.Options{Path: tc.path, AppKey: appKey, Secret: []byte(secret)})
			c := &notification.Client{AppKey: appKey}
			ctx := t.Context()
			url := site.URL + tc.suffix
			want := []string{"https://app.example.com/connect/migration-events", "https://eu.app.example.com/connect/migration-events"}

			if err := c.Register(ctx, url, []byte(secret), want); err != nil {
				t.Fatal(err)
			}
			if got := site.Endpoints(); !slices.Equal(got, want) {
				t.Fatalf("site has %q, want %q", got, want)
			}
			req := site.LastRequest(t)
			if req.Method != http.MethodPut || req.Path != tc.path+notificationtest.WebhookPath {
				t.Errorf("request %s %s", req.Method, req.Path)
			}
			if req.Issuer != appKey {
				t.Errorf("iss = %q, want the app key %q", req.Issuer, appKey)
			}
			if life := req.ExpiresAt.Sub(req.IssuedAt); life <= 0 || life > notification.DefaultTTL {
				t.Errorf("token lives %v, want (0, %v]", life, notification.DefaultTTL)
			}

			got, err := c.List(ctx, url, []byte(secret))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("List = %q, want %q", got, want)
			}
			if err := c.Clear(ctx, url, []byte(secret)); err != nil {
				t.Fatal(err)
			}
			if got, err := c.List(ctx, url, []byte(secret)); err != nil || got == nil || len(got) != 0 {
				t.Fatalf("List after Clear = %q, %v; want [] (not nil)", got, err)
			}
			for _, r := range site.Requests() {
				if r.Status != http.StatusOK {
					t.Errorf("%s %s refused: %d %s", r.Method, r.Path, r.Status, r.Refusal)
				}
			}
		})
	}
}

// TestClientRefused checks that the site refuses tokens it must not
// accept, and that the client reports the status and the reason.
func TestClientRefused(t *testing.T) {
	for _, tc := range []struct {
		name     string
		appKey   string
		secret   string
		wantCode string
	}{
		{"wrong secret", appKey, "not-the-tenant-secret", httperr.CodeInvalidSignature},
		{"unknown app key", "com.example.other-app", secret, httperr.CodeUnknownTenant},
	} {
		t.Run(tc.name, func(t *testing.T) {
			site := notificationtest.NewSite(t, notificationtest.Options{Path: "/wiki", AppKey: appKey, Secret: []byte(secret)})
			site.SetEndpoints("https://kept.example.com/hook")
			c := &notification.Client{AppKey: tc.appKey}
			err := c.Register(t.Context(), site.URL, []byte(tc.secret), []string{"https://evil.example.com/hook"})
			var se *notification.StatusError
			if !errors.As(err, &se) || se.StatusCode != http.StatusUnauthorized {
				t.Fatalf("err = %v, want a 401 StatusError", err)
			}
			if !strings.Contains(se.Body, tc.wantCode) || !strings.Contains(err.Error(), "401") {
				t.Errorf("error %q does not show the status and the site's reason %s", err, tc.wantCode)
			}
			if strings.Contains(err.Error(), tc.secret) {
				t.Error("the error shows the secret")
			}
			if got := site.Endpoints(); !slices.Equal(got, []string{"https://kept.example.com/hook"}) {
				t.Errorf("a refused request changed the endpoints: %q", got)
			}
			if _, err := c.List(t.Context(), site.URL, []byte(tc.secret)); !errors.As(err, &se) || se.StatusCode != 401 {
				t.Errorf("List: %v, want 401", err)
			}
		})
	}
}

// TestSiteNeedsQSHRelativeToSite shows that the fake site checks what the
// client gets right: a token whose qsh covers the full path (the site's
// /wiki not removed) is refused.
func TestSiteNeedsQSHRelativeToSite(t *testing.T) {
	site := notificationtest.NewSite(t, notificationtest.Options{Path: "/wiki", AppKey: appKey, Secret: []byte(secret)})
	path := "/wiki" + notificationtest.WebhookPath
	for _, tc := range []struct {
		basePath string
		want     int
	}{{"", http.StatusUnauthorized}, {"/wiki", http.StatusOK}} {
		tok, err := atlassian.SignConnect("GET", path, tc.basePath, appKey, []byte(secret), time.Minute, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequestWithContext(t.Context(), "GET", site.Server.URL+path, nil)
		req.Header.Set("Authorization", "JWT "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("qsh with base path %q: %d, want %d (%s)", tc.basePath, resp.StatusCode, tc.want, site.LastRequest(t).Refusal)
		}
	}
}

// TestClientChecksInput refuses, before sending anything, what the
// platform would refuse or what cannot be signed.
func TestClientChecksInput(t *testing.T) {
	site := notificationtest.NewSite(t, notificationtest.Options{AppKey: appKey, Secret: []byte(secret)})
	ok := []string{"https://app.example.com/hook"}
	for _, tc := range []struct {
		name string
		call func(c *notification.Client) error
		want error
	}{
		{"no endpoints", func(c *notification.Client) error { return c.Register(t.Context(), site.URL, []byte(secret), nil) }, notification.ErrNoEndpoints},
		{"relative endpoint", func(c *notification.Client) error {
			return c.Register(t.Context(), site.URL, []byte(secret), []string{"/connect/migration-events"})
		}, notification.ErrInvalidEndpoint},
		{"ftp endpoint", func(c *notification.Client) error {
			return c.Register(t.Context(), site.URL, []byte(secret), []string{"ftp://app.example.com/x"})
		}, notification.ErrInvalidEndpoint},
		{"site without scheme", func(c *notification.Client) error {
			return c.Register(t.Context(), "example.atlassian.net", []byte(secret), ok)
		}, notification.ErrInvalidSite},
		{"site with a query", func(c *notification.Client) error { return c.Clear(t.Context(), site.URL+"?x=1", []byte(secret)) }, notification.ErrInvalidSite},
		{"site with credentials", func(c *notification.Client) error {
			_, err := c.List(t.Context(), "https://u:p@example.atlassian.net", []byte(secret))
			return err
		}, notification.ErrInvalidSite},
		{"empty secret", func(c *notification.Client) error { return c.Clear(t.Context(), site.URL, nil) }, notification.ErrNoSecret},
		{"no app key", func(*notification.Client) error {
			return (&notification.Client{}).Clear(t.Context(), site.URL, []byte(secret))
		}, notification.ErrNoAppKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(&notification.Client{AppKey: appKey}); !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
	if n := len(site.Requests()); n != 0 {
		t.Errorf("%d requests sent for refused input", n)
	}
}

// TestClientReplies covers the site's replies outside the happy path: an
// error body is cut to a snippet, a redirect is not followed (its token
// would go elsewhere), a body that is not the API's JSON is an error, and
// the context bounds a hung site.
func TestClientReplies(t *testing.T) {
	long := strings.Repeat("x", 10_000)
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/long/"):
			http.Error(w, "boom\n"+long, http.StatusInternalServerError)
		case strings.HasPrefix(r.URL.Path, "/redirect/"):
			http.Redirect(w, r, "https://elsewhere.example.com/", http.StatusFound)
		case strings.HasPrefix(r.URL.Path, "/html/"):
			w.Write([]byte("<html>login</html>"))
		case strings.HasPrefix(r.URL.Path, "/hang/"):
			select {
			case <-hang:
			case <-r.Context().Done():
			}
		}
	}))
	t.Cleanup(srv.Close)
	c := &notification.Client{AppKey: appKey}
	var se *notification.StatusError

	_, err := c.List(t.Context(), srv.URL+"/long", []byte(secret))
	if !errors.As(err, &se) || se.StatusCode != 500 || !strings.HasPrefix(se.Body, "boom x") || len(se.Body) > 520 {
		t.Errorf("long error reply: %v", err)
	}
	err = c.Register(t.Context(), srv.URL+"/redirect", []byte(secret), []string{"https://app.example.com/hook"})
	if !errors.As(err, &se) || se.StatusCode != http.StatusFound {
		t.Errorf("redirect: %v, want a 302 StatusError", err)
	}
	if _, err := c.List(t.Context(), srv.URL+"/html", []byte(secret)); err == nil || errors.As(err, &se) {
		t.Errorf("a 200 that is not JSON: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if _, err := c.List(ctx, srv.URL+"/hang", []byte(secret)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("hung site: %v, want DeadlineExceeded", err)
	}
}

func TestURL(t *testing.T) {
	for _, tc := range []struct{ site, url, base string }{
		{"https://example.atlassian.net", "https://example.atlassian.net/rest/atlassian-connect/1/migration/webhook", ""},
		{"https://example.atlassian.net/", "https://example.atlassian.net/rest/atlassian-connect/1/migration/webhook", ""},
		{"https://example.atlassian.net/wiki", "https://example.atlassian.net/wiki/rest/atlassian-connect/1/migration/webhook", "/wiki"},
		{"https://example.atlassian.net/wiki/", "https://example.atlassian.net/wiki/rest/atlassian-connect/1/migration/webhook", "/wiki"},
		{"http://127.0.0.1:8080/a%20b", "http://127.0.0.1:8080/a%20b/rest/atlassian-connect/1/migration/webhook", "/a%20b"},
	} {
		u, base, err := notification.URL(tc.site)
		if err != nil || u.String() != tc.url || base != tc.base {
			t.Errorf("URL(%q) = %v, %q, %v; want %s, %q", tc.site, u, base, err, tc.url, tc.base)
		}
	}
}

// TestSiteRefusesBadTokens: the fake site's own verification refuses what
// the ingest side refuses of the platform's tokens, with the same codes.
func TestSiteRefusesBadTokens(t *testing.T) {
	site := notificationtest.NewSite(t, notificationtest.Options{Path: "/wiki", AppKey: appKey, Secret: []byte(secret)})
	path := "/wiki" + notificationtest.WebhookPath
	now := time.Now()
	good := func() atlassian.ConnectClaims {
		return atlassian.ConnectClaims{
			RegisteredClaims: jwt.RegisteredClaims{Issuer: appKey, IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Minute))},
			QSH:              atlassian.QSH("GET", path, "", "/wiki"),
		}
	}
	sign := func(m jwt.SigningMethod, key any, c atlassian.ConnectClaims) string {
		tok, err := jwt.NewWithClaims(m, c).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return "JWT " + tok
	}
	expired, noExp, ctxQSH, otherQSH := good(), good(), good(), good()
	expired.IssuedAt, expired.ExpiresAt = jwt.NewNumericDate(now.Add(-time.Hour)), jwt.NewNumericDate(now.Add(-10*time.Minute))
	noExp.ExpiresAt = nil
	ctxQSH.QSH = atlassian.ContextQSH
	otherQSH.QSH = atlassian.QSH("PUT", path, "", "/wiki")
	for _, tc := range []struct{ name, auth, code string }{
		{"good", sign(jwt.SigningMethodHS256, []byte(secret), good()), ""},
		{"no token", "", httperr.CodeMissingToken},
		{"expired", sign(jwt.SigningMethodHS256, []byte(secret), expired), httperr.CodeTokenExpired},
		{"no exp", sign(jwt.SigningMethodHS256, []byte(secret), noExp), httperr.CodeTokenExpired},
		{"context-qsh", sign(jwt.SigningMethodHS256, []byte(secret), ctxQSH), httperr.CodeContextQSH},
		{"qsh of another method", sign(jwt.SigningMethodHS256, []byte(secret), otherQSH), httperr.CodeInvalidQSH},
		{"HS512", sign(jwt.SigningMethodHS512, []byte(secret), good()), httperr.CodeInvalidSignature},
		{"alg none", sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good()), httperr.CodeInvalidSignature},
		{"not a JWT", "JWT a.b", httperr.CodeMalformedToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), "GET", site.Server.URL+path, nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			last := site.LastRequest(t)
			switch {
			case tc.code == "" && resp.StatusCode != http.StatusOK:
				t.Fatalf("%d %s, want 200", resp.StatusCode, last.Refusal)
			case tc.code != "" && (resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(last.Refusal, tc.code+": ")):
				t.Fatalf("%d %q, want 401 %s", resp.StatusCode, last.Refusal, tc.code)
			}
		})
	}
}
