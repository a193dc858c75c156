package ingest

import (
	"bytes"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/transferd/transferd/api/httperr"
	"github.com/transferd/transferd/ingest/atlassian"
)

const (
	testClientKey = "jira:4c822e2f-510f-48b9-b8d2-8419d0932949"
	testBaseURL   = "https://app.example.com/app"
	testHookPath  = "/app/connect/migration-events"
)

var testSecret = []byte("s3cr3t-shared-by-atlassian-on-install-0123456789")

func newTestConnectVerifier(t testing.TB, log *slog.Logger) *ConnectVerifier {
	t.Helper()
	v, err := NewConnectVerifier(secretMap{
		testClientKey: testSecret,
		"empty":       nil,
	}, ConnectConfig{BaseURL: testBaseURL, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// connectClaimsFor returns valid Connect claims for method target.
func connectClaimsFor(method, target string) jwt.MapClaims {
	u, _ := url.Parse(target)
	now := time.Now()
	return jwt.MapClaims{
		"iss": testClientKey,
		"iat": now.Unix(),
		"exp": now.Add(3 * time.Minute).Unix(),
		"qsh": atlassian.QSH(method, u.EscapedPath(), u.RawQuery, "/app"),
	}
}

// with returns a copy of c with the given claims set, or removed when nil.
func with(c jwt.MapClaims, kv ...any) jwt.MapClaims {
	out := jwt.MapClaims{}
	for k, v := range c {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

func TestConnectVerifier(t *testing.T) {
	const target = testHookPath + "?tenant=acme+corp&x=%2A"
	good := connectClaimsFor(http.MethodPost, target)
	hs := func(claims jwt.MapClaims) string {
		return signToken(t, jwt.SigningMethodHS256, testSecret, nil, claims)
	}
	valid := hs(good)
	past := time.Now().Add(-2 * time.Minute)

	tests := []struct {
		name   string
		auth   string // Authorization header
		query  string // appended to target's query
		target string // instead of target
		code   string // "" for success
	}{
		{name: "valid header token", auth: "JWT " + valid},
		{name: "scheme is case-insensitive", auth: "jwt " + valid},
		{name: "valid jwt query parameter", query: "&jwt=" + valid},
		{name: "same token in header and query", auth: "JWT " + valid, query: "&jwt=" + valid},
		{name: "expired within leeway", auth: "JWT " + hs(with(good, "exp", time.Now().Add(-20*time.Second).Unix()))},
		{name: "no token", code: httperr.CodeMissingToken},
		{name: "empty JWT header", auth: "JWT ", code: httperr.CodeMissingToken},
		{name: "bearer scheme", auth: "Bearer " + valid, code: httperr.CodeMissingToken},
		{name: "two different tokens", auth: "JWT " + valid, query: "&jwt=" + hs(good) + "x", code: httperr.CodeMalformedToken},
		{name: "not a JWT", auth: "JWT not-a-token", code: httperr.CodeMalformedToken},
		{name: "bad base64", auth: "JWT a.b.c", code: httperr.CodeMalformedToken},
		{name: "claims not JSON", auth: "JWT " + unsignedToken(`{"alg":"HS256","typ":"JWT"}`, `[1,2`), code: httperr.CodeMalformedToken},
		{name: "token too long", auth: "JWT " + strings.Repeat("a", maxTokenBytes+1), code: httperr.CodeMalformedToken},
		{name: "exp of wrong type", auth: "JWT " + hs(with(good, "exp", "tomorrow")), code: httperr.CodeMalformedToken},
		{name: "alg none", auth: "JWT " + signToken(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, nil, good), code: httperr.CodeInvalidAlgorithm},
		{name: "alg missing", auth: "JWT " + unsignedToken(`{"typ":"JWT"}`, `{"iss":"x"}`), code: httperr.CodeInvalidAlgorithm},
		{name: "alg unknown", auth: "JWT " + unsignedToken(`{"alg":"XS999"}`, `{"iss":"x"}`), code: httperr.CodeInvalidAlgorithm},
		{name: "HS512 with the right secret", auth: "JWT " + signToken(t, jwt.SigningMethodHS512, testSecret, nil, good), code: httperr.CodeInvalidAlgorithm},
		{name: "RS256", auth: "JWT " + signToken(t, jwt.SigningMethodRS256, testRSAKey(t, 0), nil, good), code: httperr.CodeInvalidAlgorithm},
		{name: "wrong secret", auth: "JWT " + signToken(t, jwt.SigningMethodHS256, []byte("guess"), nil, good), code: httperr.CodeInvalidSignature},
		{name: "tampered claims", auth: "JWT " + tamper(valid, hs(with(good, "qsh", "x"))), code: httperr.CodeInvalidSignature},
		{name: "expired", auth: "JWT " + hs(with(good, "exp", past.Unix())), code: httperr.CodeTokenExpired},
		{name: "missing exp", auth: "JWT " + hs(with(good, "exp", nil)), code: httperr.CodeTokenExpired},
		{name: "not valid yet", auth: "JWT " + hs(with(good, "nbf", time.Now().Add(time.Hour).Unix())), code: httperr.CodeTokenExpired},
		{name: "qsh of another path", auth: "JWT " + hs(connectClaimsFor(http.MethodPost, "/app/other")), code: httperr.CodeInvalidQSH},
		{name: "qsh of another method", auth: "JWT " + hs(connectClaimsFor(http.MethodPut, target)), code: httperr.CodeInvalidQSH},
		{name: "qsh of another query", auth: "JWT " + valid, target: testHookPath + "?tenant=acme", code: httperr.CodeInvalidQSH},
		{name: "qsh missing", auth: "JWT " + hs(with(good, "qsh", nil)), code: httperr.CodeInvalidQSH},
		{name: "context-qsh", auth: "JWT " + hs(with(good, "qsh", "context-qsh")), code: httperr.CodeContextQSH},
		{name: "unknown tenant", auth: "JWT " + hs(with(good, "iss", "jira:unknown")), code: httperr.CodeUnknownTenant},
		{name: "tenant without secret", auth: "JWT " + signToken(t, jwt.SigningMethodHS256, []byte{}, nil, with(good, "iss", "empty")), code: httperr.CodeUnknownTenant},
		{name: "missing iss", auth: "JWT " + hs(with(good, "iss", nil)), code: httperr.CodeInvalidIssuer},
		// Claim times (issue 10, C).
		{name: "exp as a numeric string", auth: "JWT " + hs(with(good, "exp", strconv.FormatInt(time.Now().Add(time.Minute).Unix(), 10))), code: httperr.CodeMalformedToken},
		{name: "iat as a numeric string", auth: "JWT " + hs(with(good, "iat", strconv.FormatInt(time.Now().Unix(), 10))), code: httperr.CodeMalformedToken},
		{name: "nbf as a numeric string", auth: "JWT " + hs(with(good, "nbf", strconv.FormatInt(time.Now().Unix(), 10))), code: httperr.CodeMalformedToken},
		{name: "iat in the future", auth: "JWT " + hs(with(good, "iat", time.Now().Add(10*time.Minute).Unix())), code: httperr.CodeTokenExpired},
		{name: "exp 100 years after iat", auth: "JWT " + hs(with(good, "exp", time.Now().AddDate(100, 0, 0).Unix())), code: httperr.CodeTokenExpired},
		{name: "exp an hour after iat", auth: "JWT " + hs(with(good, "exp", time.Now().Add(time.Hour).Unix())), code: httperr.CodeTokenExpired},
		{name: "no iat, exp an hour ahead", auth: "JWT " + hs(with(good, "iat", nil, "exp", time.Now().Add(time.Hour).Unix())), code: httperr.CodeTokenExpired},
		{name: "lifetime at the maximum", auth: "JWT " + hs(with(good, "exp", time.Now().Add(MaxTokenLifetime).Unix()))},
	}
	v := newTestConnectVerifier(t, nil)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u := target
			if tc.target != "" {
				u = tc.target
			}
			r := httptest.NewRequest(http.MethodPost, "https://app.example.com"+u+tc.query, nil)
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			iss, err := v.Verify(r)
			wantAuthCode(t, err, tc.code)
			if tc.code == "" && iss != testClientKey {
				t.Fatalf("issuer %q, want %q", iss, testClientKey)
			}
			if err != nil && strings.Contains(err.Error(), valid) {
				t.Fatal("error text contains the token")
			}
		})
	}
}

// tamper returns good's header and signature around bad's claims.
func tamper(good, bad string) string {
	g, b := strings.Split(good, "."), strings.Split(bad, ".")
	return g[0] + "." + b[1] + "." + g[2]
}

func TestConnectVerifierUnknownTenantWrapsSentinel(t *testing.T) {
	v := newTestConnectVerifier(t, nil)
	r := httptest.NewRequest(http.MethodPost, testHookPath, nil)
	r.Header.Set("Authorization", "JWT "+signToken(t, jwt.SigningMethodHS256, testSecret, nil,
		with(connectClaimsFor(http.MethodPost, testHookPath), "iss", "jira:gone")))
	_, err := v.Verify(r)
	if !errors.Is(err, ErrUnknownTenant) {
		t.Fatalf("error %v does not wrap ErrUnknownTenant", err)
	}
}

func TestConnectVerifierSecretSourceFailure(t *testing.T) {
	v, err := NewConnectVerifier(failingSecrets{}, ConnectConfig{BaseURL: testBaseURL})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, testHookPath, nil)
	r.Header.Set("Authorization", "JWT "+signToken(t, jwt.SigningMethodHS256, testSecret, nil, connectClaimsFor(http.MethodPost, testHookPath)))
	_, err = v.Verify(r)
	var ae *AuthError
	if errors.As(err, &ae) || !errors.Is(err, errStoreDown) {
		t.Fatalf("error %v: want the store's own error, not an AuthError", err)
	}
}

// TestConnectVerifierLogsQSHMismatch: a qsh mismatch is logged at debug
// level with both hashes, and never with the token.
func TestConnectVerifierLogsQSHMismatch(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	v := newTestConnectVerifier(t, log)
	claims := connectClaimsFor(http.MethodPost, "/app/elsewhere")
	tok := signToken(t, jwt.SigningMethodHS256, testSecret, nil, claims)
	r := httptest.NewRequest(http.MethodPost, testHookPath+"?jwt="+tok, nil)
	_, err := v.Verify(r)
	wantAuthCode(t, err, httperr.CodeInvalidQSH)
	out := buf.String()
	for _, want := range []string{`"level":"DEBUG"`, claims["qsh"].(string), atlassian.QSH(http.MethodPost, testHookPath, "", "/app"), "POST&/connect/migration-events&"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, tok) || strings.Contains(out, string(testSecret)) {
		t.Fatalf("log contains the token or the secret:\n%s", out)
	}
}

// TestSignConnectRoundTrip: what atlassian.SignConnect signs, the verifier
// accepts (parameters in another order, the base path removed).
func TestSignConnectRoundTrip(t *testing.T) {
	now := time.Now()
	tok, err := atlassian.SignConnect("post", testHookPath+"?b=2&a=1", "/app", testClientKey, testSecret, time.Minute, now)
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, testHookPath+"?a=1&b=2", nil)
	r.Header.Set("Authorization", "JWT "+tok)
	if _, err := newTestConnectVerifier(t, nil).Verify(r); err != nil {
		t.Fatal(err)
	}
}

func FuzzConnectToken(f *testing.F) {
	v := newTestConnectVerifier(f, nil)
	good := connectClaimsFor(http.MethodPost, testHookPath)
	f.Add(signToken(f, jwt.SigningMethodHS256, testSecret, nil, good), "")
	f.Add(signToken(f, jwt.SigningMethodHS256, testSecret, nil, with(good, "qsh", "context-qsh")), "a=1")
	f.Add(signToken(f, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, nil, good), "jwt=x")
	f.Add(unsignedToken(`{"alg":"HS256"}`, `{"exp":1e400,"iss":[1],"aud":{"x":1}}`), "%zz")
	f.Add("..", "jwt=a.b.c&jwt=d")
	f.Add(signToken(f, jwt.SigningMethodHS256, testSecret, nil, with(good, "exp", strconv.FormatInt(time.Now().Add(time.Minute).Unix(), 10))), "")
	f.Add(signToken(f, jwt.SigningMethodHS256, testSecret, nil, with(good, "exp", time.Now().AddDate(100, 0, 0).Unix())), "")
	f.Add(signToken(f, jwt.SigningMethodHS256, testSecret, nil, with(good, "iat", time.Now().Add(time.Hour).Unix())), "")
	f.Add(signToken(f, jwt.SigningMethodHS256, testSecret, nil, with(good, "iat", nil, "exp", 1e18)), "")
	f.Fuzz(func(t *testing.T, token, rawQuery string) {
		r := httptest.NewRequest(http.MethodPost, testHookPath, nil)
		r.URL.RawQuery = rawQuery
		r.Header.Set("Authorization", "JWT "+token)
		iss, err := v.Verify(r)
		var ae *AuthError
		switch {
		case err == nil && iss != testClientKey:
			t.Fatalf("accepted a token for issuer %q", iss)
		case err != nil && !errors.As(err, &ae):
			t.Fatalf("error %v is not an AuthError", err)
		case err != nil && !knownAuthCodes[ae.Code]:
			t.Fatalf("unknown code %q", ae.Code)
		}
	})
}

var knownAuthCodes = map[string]bool{
	httperr.CodeMissingToken: true, httperr.CodeMalformedToken: true, httperr.CodeInvalidAlgorithm: true,
	httperr.CodeInvalidSignature: true, httperr.CodeTokenExpired: true, httperr.CodeInvalidQSH: true,
	httperr.CodeContextQSH: true, httperr.CodeUnknownTenant: true, httperr.CodeInvalidAudience: true,
	httperr.CodeInvalidIssuer: true,
}

func BenchmarkConnectVerify(b *testing.B) {
	v := newTestConnectVerifier(b, nil)
	const target = testHookPath + "?tenant=acme"
	tok, err := atlassian.SignConnect(http.MethodPost, testHookPath+"?tenant=acme", "/app", testClientKey, testSecret, time.Minute, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, target, nil)
	r.Header.Set("Authorization", "JWT "+tok)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(r); err != nil {
			b.Fatal(err)
		}
	}
}

// TestStringTime: the times read as encoding/json decodes them into the
// claims, names matched without regard to case or escapes, the last of
// duplicates winning.
func TestStringTime(t *testing.T) {
	enc := base64.RawURLEncoding
	for payload, want := range map[string]string{
		`{"exp":1,"iat":2,"nbf":3}`:             "",
		`{"exp":"1"}`:                           "exp",
		`{"EXP":"1"}`:                           "exp",
		`{"\u0069at":"1"}`:                      "iat",
		`{"nbf":"1","nbf":1}`:                   "",
		`{"nbf":1,"Nbf":"1"}`:                   "nbf",
		`{"iss":"x","sub":{"exp":"1"},"exp":1}`: "",
	} {
		raw := enc.EncodeToString([]byte(`{"alg":"HS256"}`)) + "." + enc.EncodeToString([]byte(payload)) + ".sig"
		if got := stringTime(raw); got != want {
			t.Errorf("stringTime(%s) = %q, want %q", payload, got, want)
		}
	}
}
