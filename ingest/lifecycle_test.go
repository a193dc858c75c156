package ingest_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/transferd/transferd/api/httperr"
	"github.com/transferd/transferd/engine/journal/journaltest"
	"github.com/transferd/transferd/ingest"
	"github.com/transferd/transferd/ingest/atlassian"
)

// installKeys serves one signed-install public key under /<kid>.
func installKeys(t *testing.T, kid string, key *rsa.PrivateKey) *httptest.Server {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/"+kid {
			http.NotFound(w, r)
			return
		}
		w.Write(pemKey)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func installBody(clientKey, secret string) []byte {
	b, _ := json.Marshal(map[string]string{
		"key": "my-app", "clientKey": clientKey, "sharedSecret": secret,
		"baseUrl": "https://customer.atlassian.net", "productType": "jira", "eventType": "installed",
	})
	return b
}

func TestLifecycle(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	keys := installKeys(t, "kid-1", key)
	j := journaltest.Open(t)
	p := newPlatform(t, j, ingest.Config{InstallKeysURL: keys.URL})
	now := time.Now()
	signed := func(path, clientKey, aud string) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
			"iss": clientKey, "aud": []string{aud}, "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(),
			"qsh": atlassian.QSH("POST", path, "", ""),
		})
		tok.Header["kid"] = "kid-1"
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return "JWT " + s
	}
	hs := func(path, clientKey, secret string) string {
		tok, err := atlassian.SignConnect("POST", path, "", clientKey, []byte(secret), time.Minute, now)
		if err != nil {
			t.Fatal(err)
		}
		return "JWT " + tok
	}
	const app = "https://app.example.com"

	steps := []struct {
		name, path, auth string
		body             []byte
		status           int
		code             string
	}{
		{"unsigned first install refused", "/connect/installed", "", installBody("new-tenant", "s1"), 401, "missing_token"},
		{"signed install, wrong audience", "/connect/installed", signed("/connect/installed", "new-tenant", "https://evil.example.com"), installBody("new-tenant", "s1"), 401, "invalid_audience"},
		{"signed install, iss is not clientKey", "/connect/installed", signed("/connect/installed", "other", app), installBody("new-tenant", "s1"), 401, "invalid_issuer"},
		{"signed install, qsh of another path", "/connect/installed", signed("/connect/uninstalled", "new-tenant", app+"/"), installBody("new-tenant", "s1"), 401, "invalid_qsh"},
		{"signed install", "/connect/installed", signed("/connect/installed", "new-tenant", app+"/"), installBody("new-tenant", "s1"), 200, ""},
		{"webhook with the new secret", connectPath, hs(connectPath, "new-tenant", "s1"), connectEvent("t-new", "listener-triggered", ""), 200, ""},
		{"re-install with the wrong secret", "/connect/installed", hs("/connect/installed", "new-tenant", "wrong"), installBody("new-tenant", "s2"), 401, "invalid_signature"},
		{"re-install signed with the previous secret", "/connect/installed", hs("/connect/installed", "new-tenant", "s1"), installBody("new-tenant", "s2"), 200, ""},
		{"webhook with the old secret", connectPath, hs(connectPath, "new-tenant", "s1"), connectEvent("t-new", "app-data-uploaded", `,"s3Key":"k"`), 401, "invalid_signature"},
		{"uninstall unsigned", "/connect/uninstalled", "", installBody("new-tenant", ""), 401, "missing_token"},
		{"uninstall", "/connect/uninstalled", hs("/connect/uninstalled", "new-tenant", "s2"), installBody("new-tenant", ""), 200, ""},
		{"webhook after uninstall", connectPath, hs(connectPath, "new-tenant", "s2"), connectEvent("t-new", "transfer-settled", ""), 401, "unknown_tenant"},
		{"install without sharedSecret", "/connect/installed", signed("/connect/installed", "x", app), installBody("x", ""), 400, "invalid_payload"},
		{"clientKey with a space", "/connect/installed", signed("/connect/installed", "a b", app), installBody("a b", "s1"), 400, "invalid_payload"},
	}
	for _, s := range steps {
		r := p.post(s.path, s.auth, "application/json", s.body)
		if r.status != s.status || r.code() != s.code {
			t.Fatalf("%s: got %d %s, want %d %q", s.name, r.status, r.body, s.status, s.code)
		}
	}

	// Another instance on the same NATS sees the tenants.
	reg, err := ingest.OpenRegistry(context.Background(), j.Tenants())
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	tn, err := reg.Get(context.Background(), "new-tenant")
	if err != nil || tn.SharedSecret != "s2" || tn.Active() {
		t.Errorf("second registry: %+v, %v; want the re-installed secret, uninstalled", tn, err)
	}
}

func TestLifecycleUnsignedWhenAllowed(t *testing.T) {
	p := newPlatform(t, journaltest.Open(t), ingest.Config{AllowUnsignedInstall: true})
	if r := p.post("/connect/installed", "", "application/json", installBody("dev-tenant", "s1")); r.status != 200 {
		t.Fatalf("unsigned install with the flag: %d %s", r.status, r.body)
	}
	// An unsigned call must never replace an installed tenant's secret.
	if r := p.post("/connect/installed", "", "application/json", installBody("dev-tenant", "stolen")); r.status != 401 {
		t.Fatalf("unsigned re-install: %d %s, want 401", r.status, r.body)
	}
	tok, _ := atlassian.SignConnect("POST", connectPath, "", "dev-tenant", []byte("s1"), time.Minute, time.Now())
	if r := p.post(connectPath, "JWT "+tok, "application/json", connectEvent("t", "listener-triggered", "")); r.status != 200 {
		t.Fatalf("webhook: %d %s", r.status, r.body)
	}
}

func TestWrongMethod(t *testing.T) {
	p := newPlatform(t, journaltest.Open(t), ingest.Config{})
	res, err := p.srv.Client().Get(p.srv.URL + connectPath)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var b httperr.Body
	if err := json.NewDecoder(res.Body).Decode(&b); err != nil || res.StatusCode != 405 || b.Error.Code != "method_not_allowed" ||
		!strings.Contains(res.Header.Get("Allow"), "POST") {
		t.Errorf("GET %s: %d %+v %v", connectPath, res.StatusCode, b, err)
	}
}
