package atlassian_test

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/transferd/transferd/ingest/atlassian"
)

var secret = []byte("s3cr3t-shared-by-atlassian-on-install-0123456789")

// parse verifies tok as HS256 with secret and returns its claims.
func parse(t *testing.T, tok string) atlassian.ConnectClaims {
	t.Helper()
	var c atlassian.ConnectClaims
	_, err := jwt.NewParser(jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired()).
		ParseWithClaims(tok, &c, func(*jwt.Token) (any, error) { return secret, nil })
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSignConnect(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	const path = "/wiki/rest/atlassian-connect/1/migration/progress/t%2F1?b=2&a=1"
	// The request as the site receives it.
	r := httptest.NewRequest("PUT", "https://acme.atlassian.net"+path, nil)
	want := atlassian.RequestQSH(r, "/wiki")
	for _, tc := range []struct{ target, base string }{
		{"https://acme.atlassian.net" + path, "https://acme.atlassian.net/wiki"},
		{path, "/wiki"},
		{"https://acme.atlassian.net" + path, "/wiki"},
	} {
		tok, err := atlassian.SignConnect("put", tc.target, tc.base, "com.example.app", secret, 3*time.Minute, now)
		if err != nil {
			t.Fatal(err)
		}
		c := parse(t, tok)
		switch {
		case c.QSH != want:
			t.Errorf("SignConnect(%q, base %q): qsh %s, want %s (%s)", tc.target, tc.base, c.QSH, want,
				atlassian.CanonicalRequest("PUT", r.URL.EscapedPath(), r.URL.RawQuery, "/wiki"))
		case c.Issuer != "com.example.app":
			t.Errorf("iss %q", c.Issuer)
		case !c.IssuedAt.Equal(now) || !c.ExpiresAt.Equal(now.Add(3*time.Minute)):
			t.Errorf("iat %v exp %v, want %v and 3 min later", c.IssuedAt, c.ExpiresAt, now)
		}
	}
	// The base path counts: the same request signed relative to the host's
	// root has another qsh.
	tok, err := atlassian.SignConnect("PUT", path, "", "com.example.app", secret, time.Minute, now)
	if err != nil {
		t.Fatal(err)
	}
	if parse(t, tok).QSH == want {
		t.Error("the qsh does not depend on the base path")
	}
}

func TestSignConnectRefuses(t *testing.T) {
	now := time.Now()
	for _, bad := range []struct {
		name, target, base, iss string
		secret                  []byte
		ttl                     time.Duration
	}{
		{"no issuer", "/", "", "", secret, time.Minute},
		{"no secret", "/", "", "app", nil, time.Minute},
		{"zero ttl", "/", "", "app", secret, 0},
		{"negative ttl", "/", "", "app", secret, -time.Second},
		{"bad target", "/a%zz", "", "app", secret, time.Minute},
		{"bad base", "/", "http://[::1", "app", secret, time.Minute},
	} {
		if tok, err := atlassian.SignConnect("POST", bad.target, bad.base, bad.iss, bad.secret, bad.ttl, now); err == nil {
			t.Errorf("%s: signed %q", bad.name, tok)
		}
	}
}

func TestQueryToken(t *testing.T) {
	for _, tc := range []struct {
		rawQuery, want string
		ok             bool
	}{
		{"", "", false},
		{"a=1&b=2", "", false},
		{"jwt=a.b.c", "a.b.c", true},
		{"x=1&jwt=a.b.c&jwt=d.e.f", "a.b.c", true},
		{"%6Awt=a%2Eb.c", "a.b.c", true},
		{"jwt", "", true},
		{"jwtx=1", "", false},
	} {
		if got, ok := atlassian.QueryToken(tc.rawQuery); got != tc.want || ok != tc.ok {
			t.Errorf("QueryToken(%q) = %q, %v; want %q, %v", tc.rawQuery, got, ok, tc.want, tc.ok)
		}
	}
}

// FuzzSignConnect: whatever the request, SignConnect does not panic, and a
// token it makes verifies with the secret and carries the issuer and a qsh.
func FuzzSignConnect(f *testing.F) {
	f.Add("POST", "/base/connect/migration-events", "/base")
	f.Add("get", "/a%2Fb/?jwt=x&b=%E2%82&a=+", "")
	f.Add("PUT", "https://h.example/wiki/x?y=1", "https://h.example/wiki/")
	f.Fuzz(func(t *testing.T, method, target, base string) {
		tok, err := atlassian.SignConnect(method, target, base, "iss", secret, time.Minute, time.Now())
		if err != nil {
			return
		}
		c := parse(t, tok)
		if len(c.QSH) != 64 || c.Issuer != "iss" {
			t.Fatalf("claims %+v", c)
		}
	})
}
