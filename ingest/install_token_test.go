package ingest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/transferd/transferd/api/httperr"
	"github.com/transferd/transferd/ingest/atlassian"
)

// SignInstall returns a signed-install token as Atlassian sends with the
// installed callback: RS256 with key, header kid, iss = clientKey,
// aud = [baseURL], and the qsh of method path?rawQuery with basePath
// removed. Test-only: only Atlassian signs installs.
func SignInstall(key *rsa.PrivateKey, kid, clientKey, baseURL, method, path, rawQuery, basePath string, ttl time.Duration, now time.Time) (string, error) {
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"iss": clientKey,
		"aud": []string{baseURL},
		"iat": now.Unix(),
		"exp": now.Add(ttl).Unix(),
		"qsh": atlassian.QSH(method, path, rawQuery, basePath),
	})
	tok.Header["kid"] = kid
	return tok.SignedString(key)
}

// installKeyServer serves PEM public keys at /<kid>, like
// connect-install-keys.atlassian.com, and counts requests.
type installKeyServer struct {
	*httptest.Server
	mu   sync.Mutex
	keys map[string][]byte
	hits atomic.Int64
}

func newInstallKeyServer(t testing.TB) *installKeyServer {
	t.Helper()
	s := &installKeyServer{keys: map[string][]byte{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		pemKey, ok := s.keys[strings.TrimPrefix(r.URL.Path, "/")]
		s.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/x-pem-file")
		w.Write(pemKey)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *installKeyServer) add(t testing.TB, kid string, pub *rsa.PublicKey) {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[kid] = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func TestInstallVerifier(t *testing.T) {
	const (
		kid      = "0f1e2d3c-install-key"
		otherKID = "other-key"
		weakKID  = "weak-key"
		path     = "/app/installed"
	)
	keys := newInstallKeyServer(t)
	key := testRSAKey(t, 0)
	keys.add(t, kid, &key.PublicKey)
	keys.add(t, otherKID, &testRSAKey(t, 1).PublicKey)
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	keys.add(t, weakKID, &weak.PublicKey)

	now := time.Now()
	qsh := atlassian.QSH(http.MethodPost, path, "", "/app")
	good := jwt.MapClaims{
		"iss": testClientKey,
		"aud": []string{testBaseURL},
		"iat": now.Unix(),
		"exp": now.Add(3 * time.Minute).Unix(),
		"qsh": qsh,
	}
	signed, err := SignInstall(key, kid, testClientKey, testBaseURL, http.MethodPost, path, "", "/app", 3*time.Minute, now)
	if err != nil {
		t.Fatal(err)
	}
	rs := func(claims jwt.MapClaims, header map[string]any) string {
		if header == nil {
			header = map[string]any{"kid": kid}
		}
		return signToken(t, jwt.SigningMethodRS256, key, header, claims)
	}
	hsGood := with(good, "aud", nil)
	hs := func(claims jwt.MapClaims) string {
		return signToken(t, jwt.SigningMethodHS256, testSecret, nil, claims)
	}

	tests := []struct {
		name      string
		token     string
		clientKey string // body's clientKey; testClientKey when empty
		want      InstallAuth
		code      string
	}{
		{name: "signed install", token: signed, want: InstallSignedByAtlassian},
		{name: "aud with trailing slash", token: rs(with(good, "aud", []string{testBaseURL + "/"}), nil), want: InstallSignedByAtlassian},
		{name: "aud as a string", token: rs(with(good, "aud", testBaseURL), nil), want: InstallSignedByAtlassian},
		{name: "re-install with the shared secret", token: hs(hsGood), want: InstallSignedBySharedSecret},
		{name: "no token", token: "", code: httperr.CodeMissingToken},
		{name: "malformed", token: "x.y", code: httperr.CodeMalformedToken},
		{name: "alg none", token: signToken(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, nil, good), code: httperr.CodeInvalidAlgorithm},
		{name: "RS512", token: signToken(t, jwt.SigningMethodRS512, key, map[string]any{"kid": kid}, good), code: httperr.CodeInvalidAlgorithm},
		{name: "HS512", token: signToken(t, jwt.SigningMethodHS512, testSecret, nil, hsGood), code: httperr.CodeInvalidAlgorithm},
		{name: "alg unknown", token: unsignedToken(`{"alg":"ES999","kid":"k"}`, `{}`), code: httperr.CodeInvalidAlgorithm},
		{name: "missing kid", token: rs(good, map[string]any{}), code: httperr.CodeMalformedToken},
		{name: "kid with slash", token: rs(good, map[string]any{"kid": "../" + kid}), code: httperr.CodeMalformedToken},
		{name: "kid with dot-dot", token: rs(good, map[string]any{"kid": ".."}), code: httperr.CodeMalformedToken},
		{name: "kid not a string", token: rs(good, map[string]any{"kid": 7}), code: httperr.CodeMalformedToken},
		{name: "unknown kid", token: rs(good, map[string]any{"kid": "no-such-key"}), code: httperr.CodeInvalidSignature},
		{name: "signed by another key", token: rs(good, map[string]any{"kid": otherKID}), code: httperr.CodeInvalidSignature},
		{name: "key too weak", token: signToken(t, jwt.SigningMethodRS256, weak, map[string]any{"kid": weakKID}, good), code: httperr.CodeInvalidSignature},
		{name: "expired", token: rs(with(good, "exp", now.Add(-time.Hour).Unix()), nil), code: httperr.CodeTokenExpired},
		{name: "missing exp", token: rs(with(good, "exp", nil), nil), code: httperr.CodeTokenExpired},
		{name: "iss is not the body's clientKey", token: signed, clientKey: "jira:someone-else", code: httperr.CodeInvalidIssuer},
		{name: "missing iss", token: rs(with(good, "iss", nil), nil), code: httperr.CodeInvalidIssuer},
		{name: "wrong audience", token: rs(with(good, "aud", []string{"https://evil.example.com"}), nil), code: httperr.CodeInvalidAudience},
		{name: "audience not first", token: rs(with(good, "aud", []string{"https://evil.example.com", testBaseURL}), nil), code: httperr.CodeInvalidAudience},
		{name: "missing audience", token: rs(with(good, "aud", nil), nil), code: httperr.CodeInvalidAudience},
		{name: "wrong qsh", token: rs(with(good, "qsh", atlassian.QSH(http.MethodPost, "/app/uninstalled", "", "/app")), nil), code: httperr.CodeInvalidQSH},
		{name: "context-qsh", token: rs(with(good, "qsh", atlassian.ContextQSH), nil), code: httperr.CodeContextQSH},
		{name: "shared secret, unknown tenant", token: hs(with(hsGood, "iss", "jira:new")), clientKey: "jira:new", code: httperr.CodeUnknownTenant},
		{name: "shared secret, wrong secret", token: signToken(t, jwt.SigningMethodHS256, []byte("old"), nil, hsGood), code: httperr.CodeInvalidSignature},
		{name: "shared secret, iss is not the body's clientKey", token: hs(hsGood), clientKey: "jira:someone-else", code: httperr.CodeInvalidIssuer},
		{name: "shared secret, expired", token: hs(with(hsGood, "exp", now.Add(-time.Hour).Unix())), code: httperr.CodeTokenExpired},
		{name: "shared secret, wrong qsh", token: hs(with(hsGood, "qsh", "0000")), code: httperr.CodeInvalidQSH},
		{name: "shared secret, context-qsh", token: hs(with(hsGood, "qsh", atlassian.ContextQSH)), code: httperr.CodeContextQSH},
		// Claim times (issue 10, C): the same checks on both paths.
		{name: "signed install, exp 100 years ahead", token: rs(with(good, "exp", now.AddDate(100, 0, 0).Unix()), nil), code: httperr.CodeTokenExpired},
		{name: "signed install, iat in the future", token: rs(with(good, "iat", now.Add(time.Hour).Unix()), nil), code: httperr.CodeTokenExpired},
		{name: "signed install, exp as a string", token: rs(with(good, "exp", fmt.Sprint(now.Add(time.Minute).Unix())), nil), code: httperr.CodeMalformedToken},
		{name: "shared secret, exp 100 years ahead", token: hs(with(hsGood, "exp", now.AddDate(100, 0, 0).Unix())), code: httperr.CodeTokenExpired},
		{name: "shared secret, iat as a string", token: hs(with(hsGood, "iat", fmt.Sprint(now.Unix()))), code: httperr.CodeMalformedToken},
	}
	v, err := NewInstallVerifier(secretMap{testClientKey: testSecret}, InstallConfig{BaseURL: testBaseURL, KeysURL: keys.URL + "/"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(`{}`))
			if tc.token != "" {
				r.Header.Set("Authorization", "JWT "+tc.token)
			}
			clientKey := tc.clientKey
			if clientKey == "" {
				clientKey = testClientKey
			}
			got, err := v.Verify(r, clientKey)
			wantAuthCode(t, err, tc.code)
			if tc.code == "" && got != tc.want {
				t.Fatalf("authenticated as %v, want %v", got, tc.want)
			}
		})
	}
}

func TestInstallVerifierCachesKeys(t *testing.T) {
	keys := newInstallKeyServer(t)
	key := testRSAKey(t, 0)
	keys.add(t, "k1", &key.PublicKey)
	v, err := NewInstallVerifier(nil, InstallConfig{BaseURL: testBaseURL, KeysURL: keys.URL})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		tok, err := SignInstall(key, "k1", testClientKey, testBaseURL, http.MethodPost, "/app/installed", "", "/app", time.Minute, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest(http.MethodPost, "/app/installed", nil)
		r.Header.Set("Authorization", "JWT "+tok)
		if _, err := v.Verify(r, testClientKey); err != nil {
			t.Fatal(err)
		}
	}
	if n := keys.hits.Load(); n != 1 {
		t.Fatalf("key server asked %d times, want once", n)
	}
	// Without a SecretSource, shared-secret tokens name unknown tenants.
	r := httptest.NewRequest(http.MethodPost, "/app/uninstalled", nil)
	r.Header.Set("Authorization", "JWT "+signToken(t, jwt.SigningMethodHS256, testSecret, nil, connectClaimsFor(http.MethodPost, "/app/uninstalled")))
	_, err = v.Verify(r, testClientKey)
	wantAuthCode(t, err, httperr.CodeUnknownTenant)
}

func TestInstallVerifierKeyServerDown(t *testing.T) {
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
	}))
	t.Cleanup(down.Close)
	v, err := NewInstallVerifier(nil, InstallConfig{BaseURL: testBaseURL, KeysURL: down.URL})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := SignInstall(testRSAKey(t, 0), "k1", testClientKey, testBaseURL, http.MethodPost, "/app/installed", "", "/app", time.Minute, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, "/app/installed", nil)
	r.Header.Set("Authorization", "JWT "+tok)
	_, err = v.Verify(r, testClientKey)
	wantAuthCode(t, err, httperr.CodeInvalidSignature)
}

func TestInstallVerifierSecretSourceFailure(t *testing.T) {
	v, err := NewInstallVerifier(failingSecrets{}, InstallConfig{BaseURL: testBaseURL})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, "/app/uninstalled", nil)
	r.Header.Set("Authorization", "JWT "+signToken(t, jwt.SigningMethodHS256, testSecret, nil, connectClaimsFor(http.MethodPost, "/app/uninstalled")))
	_, err = v.Verify(r, testClientKey)
	var ae *AuthError
	if errors.As(err, &ae) || !errors.Is(err, errStoreDown) {
		t.Fatalf("error %v: want the store's own error, not an AuthError", err)
	}
}

func TestKeyCacheBounded(t *testing.T) {
	c := keyCache{max: 3}
	for _, kid := range []string{"a", "b", "c", "a", "d"} {
		c.put(kid, &rsa.PublicKey{})
	}
	if _, ok := c.get("a"); ok {
		t.Fatal("oldest key not evicted")
	}
	for _, kid := range []string{"b", "c", "d"} {
		if _, ok := c.get(kid); !ok {
			t.Fatalf("key %s evicted", kid)
		}
	}
	if len(c.keys) != 3 || len(c.order) != 3 {
		t.Fatalf("cache holds %d keys, %d in order", len(c.keys), len(c.order))
	}
}

func TestNewInstallVerifierConfig(t *testing.T) {
	for _, cfg := range []InstallConfig{
		{},
		{BaseURL: "http://[::1"},
		{BaseURL: testBaseURL, KeysURL: "/relative"},
	} {
		if _, err := NewInstallVerifier(nil, cfg); err == nil {
			t.Errorf("NewInstallVerifier(%+v) did not fail", cfg)
		}
	}
}
