package ingest

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/transferd/transferd/api/httperr"
	"github.com/transferd/transferd/ingest/atlassian"
)

const (
	testAppARI         = "ari:cloud:ecosystem::app/8db33809-1f32-48bb-8c52-5877dab48107"
	testInstallationID = "ari:cloud:ecosystem::installation/0a3a7799-53ae-4a5b-9e7e-03338980abb5"
)

// jwksServer serves a JSON Web Key Set of RSA public keys, like Forge's
// .well-known/jwks.json; it can be made to fail, and counts requests.
type jwksServer struct {
	*httptest.Server
	mu   sync.Mutex
	keys map[string]*rsa.PublicKey
	down atomic.Bool
	hits atomic.Int64
}

func newJWKSServer(t testing.TB) *jwksServer {
	t.Helper()
	s := &jwksServer{keys: map[string]*rsa.PublicKey{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		if s.down.Load() {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		type jwk struct {
			Kty string `json:"kty"`
			Kid string `json:"kid"`
			Alg string `json:"alg"`
			Use string `json:"use"`
			N   string `json:"n"`
			E   string `json:"e"`
		}
		var set struct {
			Keys []jwk `json:"keys"`
		}
		s.mu.Lock()
		for kid, k := range s.keys {
			set.Keys = append(set.Keys, jwk{
				Kty: "RSA", Kid: kid, Alg: "RS256", Use: "sig",
				N: base64.RawURLEncoding.EncodeToString(k.N.Bytes()),
				E: base64.RawURLEncoding.EncodeToString(big.NewInt(int64(k.E)).Bytes()),
			})
		}
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(set)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) add(kid string, pub *rsa.PublicKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[kid] = pub
}

func newTestForgeVerifier(t testing.TB, jwks *jwksServer, cfg ForgeConfig) *ForgeVerifier {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if cfg.AppARI == "" {
		cfg.AppARI = testAppARI
	}
	cfg.JWKSURL = jwks.URL
	v, err := NewForgeVerifier(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// fitClaims returns the claims of a valid Forge Invocation Token, after the
// example of Forge's documentation.
func fitClaims() jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"app": map[string]any{
			"id":             testAppARI,
			"appVersion":     "16.0.1",
			"installationId": testInstallationID,
			"apiBaseUrl":     "https://api.atlassian.com/ex/confluence/d0d52620-3203-4cfa-8db5-f2587155f0dd",
			"environment":    map[string]any{"type": "PRODUCTION", "id": "ari:cloud:ecosystem::environment/x/y"},
			"module":         map[string]any{"type": "core:endpoint", "key": "migration-remote"},
		},
		"context": map[string]any{"cloudId": "d0d52620-3203-4cfa-8db5-f2587155f0dd"},
		"aud":     testAppARI,
		"iss":     atlassian.ForgeIssuer,
		"iat":     now.Unix(),
		"nbf":     now.Unix(),
		"exp":     now.Add(25 * time.Second).Unix(),
		"jti":     "d8a496253ec8c18a54631e4c82cbedd5d0ae8570",
	}
}

func forgeRequest(token string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/forge/migration-events", nil)
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	return r
}

func TestForgeVerifier(t *testing.T) {
	jwks := newJWKSServer(t)
	key := testRSAKey(t, 0)
	jwks.add("k1", &key.PublicKey)
	v := newTestForgeVerifier(t, jwks, ForgeConfig{})

	good := fitClaims()
	rs := func(claims jwt.MapClaims) string {
		return signToken(t, jwt.SigningMethodRS256, key, map[string]any{"kid": "k1"}, claims)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: must(x509.MarshalPKIXPublicKey(&key.PublicKey))})
	noInstallation := with(good, "app", map[string]any{"id": testAppARI})

	tests := []struct {
		name  string
		auth  string
		token string
		code  string
	}{
		{name: "valid", token: rs(good)},
		{name: "audience list containing the app", token: rs(with(good, "aud", []string{"ari:cloud:ecosystem::app/other", testAppARI}))},
		{name: "no kid", token: signToken(t, jwt.SigningMethodRS256, key, nil, good), code: httperr.CodeMalformedToken},
		{name: "kid not a string", token: signToken(t, jwt.SigningMethodRS256, key, map[string]any{"kid": 1}, good), code: httperr.CodeMalformedToken},
		{name: "no token", code: httperr.CodeMissingToken},
		{name: "JWT scheme", auth: "JWT " + rs(good), code: httperr.CodeMissingToken},
		{name: "malformed", token: "a.b", code: httperr.CodeMalformedToken},
		{name: "too long", token: string(make([]byte, maxForgeTokenBytes+1)), code: httperr.CodeMalformedToken},
		{name: "alg none", token: signToken(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, nil, good), code: httperr.CodeInvalidAlgorithm},
		{name: "HS256 keyed with the public key", token: signToken(t, jwt.SigningMethodHS256, pubPEM, map[string]any{"kid": "k1"}, good), code: httperr.CodeInvalidAlgorithm},
		{name: "RS512", token: signToken(t, jwt.SigningMethodRS512, key, map[string]any{"kid": "k1"}, good), code: httperr.CodeInvalidAlgorithm},
		{name: "unknown kid", token: signToken(t, jwt.SigningMethodRS256, key, map[string]any{"kid": "k-unknown"}, good), code: httperr.CodeInvalidSignature},
		{name: "signed by another key", token: signToken(t, jwt.SigningMethodRS256, testRSAKey(t, 1), map[string]any{"kid": "k1"}, good), code: httperr.CodeInvalidSignature},
		{name: "expired", token: rs(with(good, "exp", time.Now().Add(-time.Minute).Unix())), code: httperr.CodeTokenExpired},
		{name: "missing exp", token: rs(with(good, "exp", nil)), code: httperr.CodeTokenExpired},
		{name: "not valid yet", token: rs(with(good, "nbf", time.Now().Add(time.Hour).Unix())), code: httperr.CodeTokenExpired},
		{name: "wrong audience", token: rs(with(good, "aud", "ari:cloud:ecosystem::app/other")), code: httperr.CodeInvalidAudience},
		{name: "missing audience", token: rs(with(good, "aud", nil)), code: httperr.CodeInvalidAudience},
		{name: "wrong issuer", token: rs(with(good, "iss", "forge/something-else")), code: httperr.CodeInvalidIssuer},
		{name: "missing issuer", token: rs(with(good, "iss", nil)), code: httperr.CodeInvalidIssuer},
		{name: "missing installationId", token: rs(noInstallation), code: httperr.CodeMalformedToken},
		{name: "app of the wrong type", token: rs(with(good, "app", "x")), code: httperr.CodeMalformedToken},
		{name: "app.id of another app", token: rs(with(good, "app", map[string]any{"id": "ari:cloud:ecosystem::app/other", "installationId": testInstallationID})), code: httperr.CodeInvalidAudience},
		{name: "no app.id", token: rs(with(good, "app", map[string]any{"installationId": testInstallationID})), code: httperr.CodeInvalidAudience},
		{name: "installationId with a newline", token: rs(with(good, "app", map[string]any{"id": testAppARI, "installationId": "a\nb"})), code: httperr.CodeMalformedToken},
		{name: "exp 100 years after iat", token: rs(with(good, "exp", time.Now().AddDate(100, 0, 0).Unix())), code: httperr.CodeTokenExpired},
		{name: "iat in the future", token: rs(with(good, "iat", time.Now().Add(time.Hour).Unix(), "nbf", nil)), code: httperr.CodeTokenExpired},
		{name: "exp as a string", token: rs(with(good, "exp", fmt.Sprint(time.Now().Add(time.Minute).Unix()))), code: httperr.CodeMalformedToken},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := forgeRequest(tc.token)
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			inv, err := v.Verify(r)
			wantAuthCode(t, err, tc.code)
			if tc.code == "" && inv.InstallationID != testInstallationID {
				t.Fatalf("installation %q, want %q", inv.InstallationID, testInstallationID)
			}
		})
	}
}

func TestForgeVerifierClaims(t *testing.T) {
	jwks := newJWKSServer(t)
	key := testRSAKey(t, 0)
	jwks.add("k1", &key.PublicKey)
	v := newTestForgeVerifier(t, jwks, ForgeConfig{})
	claims := fitClaims()
	inv, err := v.Verify(forgeRequest(signToken(t, jwt.SigningMethodRS256, key, map[string]any{"kid": "k1"}, claims)))
	if err != nil {
		t.Fatal(err)
	}
	want := ForgeInvocation{
		InstallationID:  testInstallationID,
		AppID:           testAppARI,
		AppVersion:      "16.0.1",
		EnvironmentType: "PRODUCTION",
		EnvironmentID:   "ari:cloud:ecosystem::environment/x/y",
		ModuleKey:       "migration-remote",
		APIBaseURL:      "https://api.atlassian.com/ex/confluence/d0d52620-3203-4cfa-8db5-f2587155f0dd",
		CloudID:         "d0d52620-3203-4cfa-8db5-f2587155f0dd",
		ExpiresAt:       time.Unix(claims["exp"].(int64), 0),
	}
	if !inv.ExpiresAt.Equal(want.ExpiresAt) {
		t.Fatalf("ExpiresAt %v, want %v", inv.ExpiresAt, want.ExpiresAt)
	}
	inv.ExpiresAt = want.ExpiresAt
	if inv != want {
		t.Fatalf("got  %+v\nwant %+v", inv, want)
	}
}

// TestForgeJWKSRefreshOnNewKID: a token signed with a key published after the
// key set was fetched makes the verifier fetch it again, once per refill
// interval.
func TestForgeJWKSRefreshOnNewKID(t *testing.T) {
	jwks := newJWKSServer(t)
	old, rotated := testRSAKey(t, 0), testRSAKey(t, 1)
	jwks.add("k-old", &old.PublicKey)
	v := newTestForgeVerifier(t, jwks, ForgeConfig{UnknownKIDRefreshInterval: time.Hour})
	if n := jwks.hits.Load(); n != 1 {
		t.Fatalf("key set fetched %d times at start, want once", n)
	}

	jwks.add("k-new", &rotated.PublicKey)
	tok := signToken(t, jwt.SigningMethodRS256, rotated, map[string]any{"kid": "k-new"}, fitClaims())
	if _, err := v.Verify(forgeRequest(tok)); err != nil {
		t.Fatalf("token with the rotated key: %v", err)
	}
	if n := jwks.hits.Load(); n != 2 {
		t.Fatalf("key set fetched %d times, want 2", n)
	}

	// Another unknown kid within the refresh interval is refused at once,
	// without a fetch.
	start := time.Now()
	junk := signToken(t, jwt.SigningMethodRS256, old, map[string]any{"kid": "k-junk"}, fitClaims())
	_, err := v.Verify(forgeRequest(junk))
	wantAuthCode(t, err, httperr.CodeInvalidSignature)
	if n := jwks.hits.Load(); n != 2 {
		t.Fatalf("key set fetched %d times, want 2", n)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("refusing an unknown kid took %v", d)
	}
}

// TestNewForgeVerifierJWKSDown: the verifier starts while the key set cannot
// be fetched, without waiting longer than FetchTimeout, and works once the
// key set is back.
func TestNewForgeVerifierJWKSDown(t *testing.T) {
	release := make(chan struct{})
	var hanging atomic.Bool
	hanging.Store(true)
	jwks := newJWKSServer(t)
	key := testRSAKey(t, 0)
	jwks.add("k1", &key.PublicKey)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hanging.Load() {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		jwks.Config.Handler.ServeHTTP(w, r)
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) })

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	start := time.Now()
	v, err := NewForgeVerifier(ctx, ForgeConfig{AppARI: testAppARI, JWKSURL: slow.URL, FetchTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("NewForgeVerifier blocked %v with the key set down", d)
	}

	hanging.Store(false)
	tok := signToken(t, jwt.SigningMethodRS256, key, map[string]any{"kid": "k1"}, fitClaims())
	if _, err := v.Verify(forgeRequest(tok)); err != nil {
		t.Fatalf("after the key set came back: %v", err)
	}
}

// TestForgeVerifierStopsWithContext: background refreshes end with the
// constructor's context.
func TestForgeVerifierStopsWithContext(t *testing.T) {
	jwks := newJWKSServer(t)
	jwks.add("k1", &testRSAKey(t, 0).PublicKey)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := NewForgeVerifier(ctx, ForgeConfig{AppARI: testAppARI, JWKSURL: jwks.URL, RefreshInterval: 10 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for jwks.hits.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatal("no background refresh")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	time.Sleep(50 * time.Millisecond) // let a refresh under way finish
	n := jwks.hits.Load()
	time.Sleep(100 * time.Millisecond)
	if m := jwks.hits.Load(); m != n {
		t.Fatalf("%d refreshes after the context ended", m-n)
	}
}

func TestNewForgeVerifierConfig(t *testing.T) {
	ctx := t.Context()
	for _, cfg := range []ForgeConfig{
		{JWKSURL: "http://127.0.0.1:1/jwks.json"},
		{AppARI: testAppARI, JWKSURL: "not a url"},
	} {
		if _, err := NewForgeVerifier(ctx, cfg); err == nil {
			t.Errorf("NewForgeVerifier(%+v) did not fail", cfg)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestForgeJWKSRefreshShared: tokens with a new kid that arrive while the
// key set is being fetched for it wait for that one fetch and are accepted
// (issue 10, G); before, all but the first were refused.
func TestForgeJWKSRefreshShared(t *testing.T) {
	jwks := newJWKSServer(t)
	old, rotated := testRSAKey(t, 0), testRSAKey(t, 1)
	jwks.add("k-old", &old.PublicKey)
	release := make(chan struct{})
	var held atomic.Bool
	gate := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if held.Load() {
			<-release
		}
		jwks.Config.Handler.ServeHTTP(w, r)
	}))
	t.Cleanup(gate.Close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	v, err := NewForgeVerifier(ctx, ForgeConfig{AppARI: testAppARI, JWKSURL: gate.URL, FetchTimeout: time.Minute, UnknownKIDRefreshInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}

	held.Store(true)
	jwks.add("k-new", &rotated.PublicKey)
	tok := signToken(t, jwt.SigningMethodRS256, rotated, map[string]any{"kid": "k-new"}, fitClaims())
	const n = 8
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := v.Verify(forgeRequest(tok))
			errs <- err
		}()
	}
	// Release the fetch once every token waits on it.
	for {
		v.refresh.mu.Lock()
		w := v.refresh.waiting
		v.refresh.mu.Unlock()
		if w == n {
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("token with the rotated key: %v", err)
		}
	}
	if got := jwks.hits.Load(); got != 2 {
		t.Errorf("key set fetched %d times, want 2 (start, and one refresh shared by %d tokens)", got, n)
	}
}

// TestRefresherRateLimited: random kids cannot make a fetch per request.
func TestRefresherRateLimited(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	var fetches int
	r := &refresher{ctx: context.Background(), every: time.Minute, timeout: time.Second,
		now:   func() time.Time { return now },
		fetch: func(context.Context) error { fetches++; return nil }}
	for i := range 100 {
		err := r.do(context.Background())
		if i == 0 && err != nil || i > 0 && !errors.Is(err, errRefreshLimited) {
			t.Fatalf("refresh %d: %v", i, err)
		}
	}
	now = now.Add(time.Minute)
	if err := r.do(context.Background()); err != nil {
		t.Fatalf("refresh after the interval: %v", err)
	}
	if fetches != 2 {
		t.Errorf("%d fetches, want 2", fetches)
	}
}
