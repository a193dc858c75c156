package api_test

import (
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/transferd/transferd/api"
	"github.com/transferd/transferd/api/apitest"
)

// dashboardClient does not follow redirects, so that tests see the 303s.
var dashboardClient = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// dashboardDo sends a request with the given headers (Cookie included)
// and returns the response with its body read.
func dashboardDo(t *testing.T, method, u string, form url.Values, header map[string]string) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(t.Context(), method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := dashboardClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp, string(readAll(t, resp))
}

// signInCookie signs in through POST /login and returns the cookie set.
func signInCookie(t *testing.T, env *apitest.Env) *http.Cookie {
	t.Helper()
	resp, body := dashboardDo(t, "POST", env.URL+"/login", url.Values{"token": {apitest.Token}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("POST /login = %d %s", resp.StatusCode, body)
	}
	for _, c := range resp.Cookies() {
		if c.Name == api.CookieName {
			return c
		}
	}
	t.Fatalf("POST /login set no %s cookie: %v", api.CookieName, resp.Header["Set-Cookie"])
	return nil
}

func TestDashboardLogin(t *testing.T) {
	env := apitest.New(t, apitest.Options{})
	tests := []struct {
		name     string
		query    string // of the POST URL
		form     url.Values
		header   map[string]string
		status   int
		location string // when 303
		secure   bool
		says     string // in the re-rendered form, when refused
	}{
		{name: "valid", form: url.Values{"token": {apitest.Token}}, status: 303, location: "/"},
		{name: "valid with spaces", form: url.Values{"token": {"  " + apitest.Token + "\n"}}, status: 303, location: "/"},
		{name: "back to a transfer", form: url.Values{"token": {apitest.Token}, "next": {"/transfers/t-1"}}, status: 303, location: "/transfers/t-1"},
		{name: "back to an escaped id", form: url.Values{"token": {apitest.Token}, "next": {"/transfers/a%3Ab"}}, status: 303, location: "/transfers/a:b"},
		{name: "never to another site", form: url.Values{"token": {apitest.Token}, "next": {"//evil.example/x"}}, status: 303, location: "/"},
		{name: "never to an absolute URL", form: url.Values{"token": {apitest.Token}, "next": {"https://evil.example/"}}, status: 303, location: "/"},
		{name: "never to another path", form: url.Values{"token": {apitest.Token}, "next": {"/transfers/../metrics"}}, status: 303, location: "/"},
		{name: "behind a TLS proxy", form: url.Values{"token": {apitest.Token}}, header: map[string]string{"X-Forwarded-Proto": "https"}, status: 303, location: "/", secure: true},
		{name: "same-origin browser", form: url.Values{"token": {apitest.Token}}, header: map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": env.URL}, status: 303, location: "/"},
		{name: "wrong token", form: url.Values{"token": {"not-the-token"}}, status: 401, says: "not valid"},
		{name: "prefix of the token", form: url.Values{"token": {apitest.Token[:len(apitest.Token)-1]}}, status: 401, says: "not valid"},
		{name: "no token", form: url.Values{"token": {""}}, status: 401, says: "Enter an API token"},
		{name: "token in the URL is ignored", query: "?token=" + apitest.Token, form: url.Values{}, status: 401, says: "Enter an API token"},
		{name: "cross-site form", form: url.Values{"token": {apitest.Token}}, header: map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, status: 403, says: "another site"},
		{name: "same-site, other origin", form: url.Values{"token": {apitest.Token}}, header: map[string]string{"Sec-Fetch-Site": "same-site"}, status: 403, says: "another site"},
		{name: "foreign Origin, old browser", form: url.Values{"token": {apitest.Token}}, header: map[string]string{"Origin": "https://evil.example"}, status: 403, says: "another site"},
		{name: "body too large", form: url.Values{"token": {strings.Repeat("x", 10<<10)}}, status: 400, says: "could not be read"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := dashboardDo(t, "POST", env.URL+"/login"+tc.query, tc.form, tc.header)
			if resp.StatusCode != tc.status {
				t.Fatalf("status = %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			var cookie *http.Cookie
			for _, c := range resp.Cookies() {
				if c.Name == api.CookieName {
					cookie = c
				}
			}
			if tc.status != http.StatusSeeOther {
				if cookie != nil {
					t.Errorf("refused sign-in set a cookie: %v", cookie)
				}
				if !strings.Contains(body, tc.says) || !strings.Contains(body, `action="/login"`) {
					t.Errorf("body does not say %q in the form:\n%s", tc.says, body)
				}
				if strings.Contains(body, apitest.Token) {
					t.Error("the reply repeats the token")
				}
				return
			}
			if got := resp.Header.Get("Location"); got != tc.location {
				t.Errorf("Location = %q, want %q", got, tc.location)
			}
			if cookie == nil {
				t.Fatalf("no %s cookie: %v", api.CookieName, resp.Header["Set-Cookie"])
			}
			if !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || cookie.Path != "/" || cookie.MaxAge <= 0 || cookie.Secure != tc.secure {
				t.Errorf("cookie = %+v (raw %q), want HttpOnly, SameSite=Strict, Path=/, a Max-Age, Secure %v", cookie, resp.Header.Get("Set-Cookie"), tc.secure)
			}
			if strings.Contains(resp.Header.Get("Location"), apitest.Token) {
				t.Error("the redirect carries the token")
			}
		})
	}
}

func TestDashboardCookieAuth(t *testing.T) {
	env := apitest.New(t, apitest.Options{})
	env.Append(apitest.Event(t, apitest.Spec{TransferID: "t-1", MessageID: "m-1"}))
	env.Sync()
	good := signInCookie(t, env)
	tests := []struct {
		name   string
		header map[string]string
		status int
	}{
		{"cookie", map[string]string{"Cookie": good.String()}, 200},
		{"cookie among others", map[string]string{"Cookie": "a=b; " + good.String() + "; c=d"}, 200},
		{"no cookie", nil, 401},
		{"raw token as cookie", map[string]string{"Cookie": api.CookieName + "=" + apitest.Token}, 401},
		{"other token", map[string]string{"Cookie": api.CookieName + "=b3RoZXI"}, 401},
		{"not base64", map[string]string{"Cookie": api.CookieName + "=%%%"}, 401},
		{"empty cookie", map[string]string{"Cookie": api.CookieName + "="}, 401},
		{"header wins over the cookie", map[string]string{"Cookie": good.String(), "Authorization": "Bearer wrong"}, 401},
		{"header alone", map[string]string{"Authorization": "Bearer " + apitest.Token}, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/v1/transfers", "/v1/transfers/t-1", "/v1/transfers/t-1/events", "/v1/transfers/t-1/lineage"} {
				resp, body := dashboardDo(t, "GET", env.URL+path, nil, tc.header)
				if resp.StatusCode != tc.status {
					t.Errorf("GET %s = %d, want %d: %s", path, resp.StatusCode, tc.status, body)
				}
			}
		})
	}
	// The stream takes the cookie too: EventSource cannot send headers.
	req, _ := http.NewRequestWithContext(t.Context(), "GET", env.URL+"/v1/stream?type=transfers", nil)
	req.AddCookie(good)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Errorf("GET /v1/stream with the cookie = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

func TestDashboardPages(t *testing.T) {
	env := apitest.New(t, apitest.Options{})
	cookie := map[string]string{"Cookie": signInCookie(t, env).String()}
	tests := []struct {
		name   string
		path   string
		header map[string]string
		status int
		want   []string
	}{
		{"list signed out", "/", nil, 200, []string{`action="/login"`, `name="token"`, `type="password"`, `name="next" value="/"`}},
		{"transfer signed out", "/transfers/t-1", nil, 200, []string{`action="/login"`, `name="next" value="/transfers/t-1"`}},
		{"escaped transfer signed out", "/transfers/a%3Ab", nil, 200, []string{`name="next" value="/transfers/a:b"`}},
		{"list", "/", cookie, 200, []string{`data-view="list"`, `id="filters"`, `id="rows"`, `src="/static/app.js?v=`, `value="cancellation_requested"`, `action="/logout"`}},
		{"list with filters", "/?phase=settled&needsAction=true", cookie, 200, []string{`data-view="list"`}},
		{"list with a bearer token", "/", map[string]string{"Authorization": "Bearer " + apitest.Token}, 200, []string{`data-view="list"`}},
		{"transfer", "/transfers/t-1", cookie, 200, []string{`data-view="transfer"`, `data-transfer-id="t-1"`, `id="timeline"`, `id="lineage"`, `id="deadlines"`, `data-kinds="listener-triggered `}},
		{"not a transfer id", "/transfers/a%3Eb", cookie, 400, []string{`"param":"id"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := dashboardDo(t, "GET", env.URL+tc.path, nil, tc.header)
			if resp.StatusCode != tc.status {
				t.Fatalf("status = %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("page lacks %s:\n%s", w, body)
				}
			}
			if tc.status != 200 {
				return
			}
			h := resp.Header
			if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || strings.Contains(csp, "unsafe") {
				t.Errorf("Content-Security-Policy = %q", csp)
			}
			if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Cache-Control") != "no-store" || h.Get("X-Frame-Options") != "DENY" {
				t.Errorf("headers = %v", h)
			}
			if strings.Contains(body, apitest.Token) {
				t.Error("the page holds the token")
			}
			checkNoInline(t, body)
		})
	}
}

var (
	scriptTag = regexp.MustCompile(`(?is)<script\b[^>]*>`)
	handler   = regexp.MustCompile(`(?i)\son[a-z]+\s*=`)
	styleAttr = regexp.MustCompile(`(?i)\sstyle\s*=|<style\b`)
	foreign   = regexp.MustCompile(`(?i)(src|href)="(https?:)?//`)
)

// checkNoInline fails on inline scripts, event handler attributes and
// inline styles, which the Content-Security-Policy would block.
func checkNoInline(t *testing.T, page string) {
	t.Helper()
	for _, tag := range scriptTag.FindAllString(page, -1) {
		if !strings.Contains(tag, ` src="/static/`) {
			t.Errorf("inline or foreign script: %s", tag)
		}
	}
	if m := handler.FindString(page); m != "" {
		t.Errorf("event handler attribute %q", m)
	}
	if m := styleAttr.FindString(page); m != "" {
		t.Errorf("inline style %q", m)
	}
	if m := foreign.FindString(page); m != "" {
		t.Errorf("the page loads something from another site: %s", m)
	}
}

func TestDashboardLogout(t *testing.T) {
	env := apitest.New(t, apitest.Options{})
	good := signInCookie(t, env)
	resp, body := dashboardDo(t, "POST", env.URL+"/logout", url.Values{}, map[string]string{"Cookie": good.String(), "Sec-Fetch-Site": "cross-site"})
	if resp.StatusCode != http.StatusForbidden || len(resp.Cookies()) != 0 {
		t.Errorf("cross-site POST /logout = %d %v %s", resp.StatusCode, resp.Cookies(), body)
	}
	resp, body = dashboardDo(t, "POST", env.URL+"/logout", url.Values{}, map[string]string{"Cookie": good.String()})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("POST /logout = %d %s", resp.StatusCode, body)
	}
	cs := resp.Cookies()
	if len(cs) != 1 || cs[0].Name != api.CookieName || cs[0].MaxAge >= 0 || cs[0].Value != "" || !cs[0].HttpOnly {
		t.Errorf("POST /logout cookies = %v, want %s cleared", resp.Header["Set-Cookie"], api.CookieName)
	}
}

func TestDashboardMethods(t *testing.T) {
	env := apitest.New(t, apitest.Options{})
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/login", http.StatusSeeOther},
		{"PUT", "/login", http.StatusMethodNotAllowed},
		{"GET", "/logout", http.StatusMethodNotAllowed},
		{"DELETE", "/logout", http.StatusMethodNotAllowed},
		{"POST", "/transfers/t-1", http.StatusNotFound},
		{"GET", "/static/nope.js", http.StatusNotFound},
		{"GET", "/static/", http.StatusNotFound},
	} {
		resp, body := dashboardDo(t, tc.method, env.URL+tc.path, nil, nil)
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s = %d, want %d: %s", tc.method, tc.path, resp.StatusCode, tc.status, body)
		}
	}
}

func TestDashboardStatic(t *testing.T) {
	env := apitest.New(t, apitest.Options{})
	for _, tc := range []struct{ name, ctype string }{
		{"app.js", "text/javascript; charset=utf-8"},
		{"app.css", "text/css; charset=utf-8"},
		{"favicon.svg", "image/svg+xml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := dashboardDo(t, "GET", env.URL+"/static/"+tc.name, nil, nil)
			etag := resp.Header.Get("ETag")
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != tc.ctype || etag == "" ||
				resp.Header.Get("X-Content-Type-Options") != "nosniff" || body == "" {
				t.Fatalf("GET = %d %v", resp.StatusCode, resp.Header)
			}
			resp, _ = dashboardDo(t, "GET", env.URL+"/static/"+tc.name, nil, map[string]string{"If-None-Match": etag})
			if resp.StatusCode != http.StatusNotModified {
				t.Errorf("GET with If-None-Match = %d, want 304", resp.StatusCode)
			}
			if strings.Contains(body, "//cdn") || strings.Contains(body, "@import") {
				t.Errorf("%s loads something from elsewhere", tc.name)
			}
		})
	}
	// The script builds nodes from text only: nothing a payload holds can
	// become markup.
	_, js := dashboardDo(t, "GET", env.URL+"/static/app.js", nil, nil)
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "localStorage", "sessionStorage"} {
		if strings.Contains(js, bad) {
			t.Errorf("app.js uses %s", bad)
		}
	}
}
