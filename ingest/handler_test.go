package ingest_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/transferd/transferd/api/httperr"
	"github.com/transferd/transferd/engine/journal"
	"github.com/transferd/transferd/engine/journal/journaltest"
	"github.com/transferd/transferd/ingest"
	"github.com/transferd/transferd/ingest/atlassian"
)

const (
	appARI      = "ari:cloud:ecosystem::app/11111111-2222-4333-8444-555555555555"
	connectPath = "/connect/migration-events"
	forgePath   = "/forge/migration-events"
)

// platform is a test stand-in for Atlassian: tenants with shared secrets,
// and a Forge key set served on loopback.
type platform struct {
	t       testing.TB
	key     *rsa.PrivateKey
	jwks    *httptest.Server
	srv     *httptest.Server
	journal *journal.Journal
	secrets map[string][]byte
	reg     *ingest.Registry
	h       *ingest.Handler
}

func newPlatform(t testing.TB, j *journal.Journal, cfg ingest.Config) *platform {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := &platform{t: t, key: key, journal: j, secrets: map[string][]byte{
		"tenant-a": []byte("secret-a-0123456789"),
		"tenant-b": []byte("secret-b-0123456789"),
	}}
	p.jwks = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"keys":[{"kty":"RSA","kid":"fit-1","alg":"RS256","use":"sig","n":%q,"e":%q}]}`,
			base64.RawURLEncoding.EncodeToString(key.N.Bytes()),
			base64.RawURLEncoding.EncodeToString(big.NewInt(int64(key.E)).Bytes()))
	}))
	t.Cleanup(p.jwks.Close)

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	reg, err := ingest.OpenRegistry(ctx, j.Tenants())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	p.reg = reg
	for k, s := range p.secrets {
		if err := reg.Put(ctx, ingest.Tenant{ClientKey: k, SharedSecret: string(s)}); err != nil {
			t.Fatal(err)
		}
	}
	cfg.BaseURL = "https://app.example.com"
	cfg.AppARI = appARI
	cfg.JWKSURL = p.jwks.URL
	h, err := ingest.New(ctx, cfg, j, reg)
	if err != nil {
		t.Fatal(err)
	}
	p.h = h
	p.srv = httptest.NewServer(h)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *platform) connectToken(tenant string, secret []byte, ttl time.Duration) string {
	p.t.Helper()
	tok, err := atlassian.SignConnect("POST", connectPath, "", tenant, secret, ttl, time.Now())
	if err != nil {
		p.t.Fatal(err)
	}
	return tok
}

// sign signs claims with method; RS256 uses the platform's Forge key.
func (p *platform) sign(method jwt.SigningMethod, claims jwt.MapClaims, key any) string {
	p.t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	tok.Header["kid"] = "fit-1"
	s, err := tok.SignedString(key)
	if err != nil {
		p.t.Fatal(err)
	}
	return s
}

func (p *platform) fit(installation string, mutate func(jwt.MapClaims)) string {
	p.t.Helper()
	now := time.Now()
	c := jwt.MapClaims{
		"iss": "forge/invocation-token", "aud": appARI,
		"iat": now.Unix(), "exp": now.Add(25 * time.Second).Unix(),
		"app": map[string]any{"installationId": installation, "id": appARI},
	}
	if mutate != nil {
		mutate(c)
	}
	return p.sign(jwt.SigningMethodRS256, c, p.key)
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) code() string {
	var b httperr.Body
	json.Unmarshal(r.body, &b)
	return b.Error.Code
}

func (p *platform) post(path, auth, contentType string, body []byte) reply {
	p.t.Helper()
	req, err := http.NewRequest("POST", p.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		p.t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res, err := p.srv.Client().Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return reply{res.StatusCode, res.Header, b}
}

func (p *platform) streamMsgs() uint64 {
	p.t.Helper()
	st, err := p.journal.State(context.Background(), journal.StreamEvents)
	if err != nil {
		p.t.Fatal(err)
	}
	return st.Msgs
}

func connectEvent(transferID, eventType, extra string) []byte {
	return []byte(`{"eventType":"` + eventType + `","transferId":"` + transferID + `","cloudAppKey":"app"` + extra + `}`)
}

func forgeEvent(transferID, eventType, extra string) []byte {
	return []byte(`{"eventType":"avi:ecosystem.migration:` + eventType + `","transferId":"` + transferID + `"` + extra + `}`)
}

func TestIngestAccepts(t *testing.T) {
	p := newPlatform(t, journaltest.Open(t), ingest.Config{})
	tokA := "JWT " + p.connectToken("tenant-a", p.secrets["tenant-a"], time.Minute)

	body := connectEvent("t-ok", "listener-triggered", `,"migrationDetails":{"jiraClientKey":"tenant-a","confluenceClientKey":"unknown"}`)
	first := p.post(connectPath, tokA, "application/json", body)
	if first.status != 200 || !bytes.Contains(first.body, []byte(`"accepted":true`)) || !bytes.Contains(first.body, []byte(`"duplicate":false`)) {
		t.Fatalf("first delivery: %d %s", first.status, first.body)
	}
	again := p.post(connectPath, tokA, "application/json; charset=utf-8", body)
	if again.status != 200 || !bytes.Contains(again.body, []byte(`"duplicate":true`)) {
		t.Fatalf("re-delivery: %d %s", again.status, again.body)
	}
	// The jwt query parameter is the older form of the same token.
	q := p.post(connectPath+"?jwt="+strings.TrimPrefix(tokA, "JWT "), "", "application/json",
		connectEvent("t-ok", "app-data-uploaded", `,"s3Key":"k1","messageId":"m-q"`))
	if q.status != 200 {
		t.Fatalf("?jwt=: %d %s", q.status, q.body)
	}
	for _, body := range [][]byte{
		forgeEvent("t-forge", "triggered:listener", `,"messageId":"f1"`),
		[]byte(`{"payload":` + string(forgeEvent("t-forge", "uploaded:app_data", `,"messageId":"f2","key":"k"`)) + `}`),
		forgeEvent("t-forge", "some:future_event", `,"messageId":"f3"`),
	} {
		if r := p.post(forgePath, "Bearer "+p.fit("inst-1", nil), "application/json", body); r.status != 200 {
			t.Fatalf("forge %s: %d %s", body, r.status, r.body)
		}
	}
	if n := p.streamMsgs(); n != 5 {
		t.Errorf("stream holds %d messages, want 5", n)
	}
}

func TestIngestRefuses(t *testing.T) {
	p := newPlatform(t, journaltest.Open(t), ingest.Config{})
	secretA := p.secrets["tenant-a"]
	tokA := "JWT " + p.connectToken("tenant-a", secretA, time.Minute)
	tokB := "JWT " + p.connectToken("tenant-b", p.secrets["tenant-b"], time.Minute)
	fitA := "Bearer " + p.fit("inst-a", nil)
	now := time.Now()
	hsClaims := jwt.MapClaims{"iss": "tenant-a", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(),
		"qsh": atlassian.QSH("POST", connectPath, "", "")}

	// Bind t-owned to tenant A and t-forge-owned to installation inst-a first.
	if r := p.post(connectPath, tokA, "application/json", connectEvent("t-owned", "listener-triggered", "")); r.status != 200 {
		t.Fatalf("setup: %d %s", r.status, r.body)
	}
	if r := p.post(forgePath, fitA, "application/json", forgeEvent("t-forge-owned", "triggered:listener", "")); r.status != 200 {
		t.Fatalf("setup: %d %s", r.status, r.body)
	}
	good := connectEvent("t-1", "listener-triggered", "")
	// Hostile tokens and bodies of issue 10.
	long := func(c jwt.MapClaims) { c["exp"] = now.AddDate(100, 0, 0).Unix() }
	connectWith := func(mutate func(jwt.MapClaims)) string {
		c := jwt.MapClaims{}
		for k, v := range hsClaims {
			c[k] = v
		}
		mutate(c)
		return "JWT " + p.sign(jwt.SigningMethodHS256, c, secretA)
	}
	noKID := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"iss": "forge/invocation-token", "aud": appARI,
		"iat": now.Unix(), "exp": now.Add(25 * time.Second).Unix(), "app": map[string]any{"installationId": "inst-a", "id": appARI}})
	fitNoKID, err := noKID.SignedString(p.key)
	if err != nil {
		t.Fatal(err)
	}
	details := func(createdAt string) string {
		return `,"migrationDetails":{"jiraClientKey":"tenant-a","createdAt":` + createdAt + `}`
	}

	tests := []struct {
		name, path, auth, ctype string
		body                    []byte
		status                  int
		code                    string
		unbound                 string // a transfer that must not be bound afterwards
	}{
		{"no token", connectPath, "", "application/json", good, 401, "missing_token", ""},
		{"malformed token", connectPath, "JWT not.a.jwt", "application/json", good, 401, "malformed_token", ""},
		{"alg none", connectPath, "JWT " + p.sign(jwt.SigningMethodNone, hsClaims, jwt.UnsafeAllowNoneSignatureType), "application/json", good, 401, "invalid_algorithm", ""},
		{"wrong secret", connectPath, "JWT " + p.connectToken("tenant-a", []byte("not-the-secret"), time.Minute), "application/json", good, 401, "invalid_signature", ""},
		{"RS256 on connect", connectPath, "JWT " + p.sign(jwt.SigningMethodRS256, hsClaims, p.key), "application/json", good, 401, "invalid_algorithm", ""},
		{"HS256 on forge", forgePath, "Bearer " + p.sign(jwt.SigningMethodHS256, jwt.MapClaims{"iss": "forge/invocation-token", "aud": appARI, "exp": now.Add(time.Minute).Unix(), "app": map[string]any{"installationId": "inst-a"}}, []byte("k")), "application/json", forgeEvent("t-2", "triggered:listener", ""), 401, "invalid_algorithm", ""},
		{"expired", connectPath, "JWT " + p.sign(jwt.SigningMethodHS256, jwt.MapClaims{"iss": "tenant-a", "exp": now.Add(-2 * time.Minute).Unix(), "qsh": hsClaims["qsh"]}, secretA), "application/json", good, 401, "token_expired", ""},
		{"no exp", connectPath, "JWT " + p.sign(jwt.SigningMethodHS256, jwt.MapClaims{"iss": "tenant-a", "qsh": hsClaims["qsh"]}, secretA), "application/json", good, 401, "token_expired", ""},
		{"wrong qsh", connectPath, "JWT " + p.sign(jwt.SigningMethodHS256, jwt.MapClaims{"iss": "tenant-a", "exp": now.Add(time.Minute).Unix(), "qsh": atlassian.QSH("POST", "/elsewhere", "", "")}, secretA), "application/json", good, 401, "invalid_qsh", ""},
		{"context-qsh", connectPath, "JWT " + p.sign(jwt.SigningMethodHS256, jwt.MapClaims{"iss": "tenant-a", "exp": now.Add(time.Minute).Unix(), "qsh": "context-qsh"}, secretA), "application/json", good, 401, "context_qsh", ""},
		{"unknown tenant", connectPath, "JWT " + p.connectToken("tenant-x", []byte("whatever"), time.Minute), "application/json", good, 401, "unknown_tenant", ""},
		{"wrong audience", forgePath, "Bearer " + p.fit("inst-a", func(c jwt.MapClaims) { c["aud"] = "ari:cloud:ecosystem::app/other" }), "application/json", forgeEvent("t-2", "triggered:listener", ""), 401, "invalid_audience", ""},
		{"wrong FIT issuer", forgePath, "Bearer " + p.fit("inst-a", func(c jwt.MapClaims) { c["iss"] = "someone" }), "application/json", forgeEvent("t-2", "triggered:listener", ""), 401, "invalid_issuer", ""},
		{"expired FIT", forgePath, "Bearer " + p.fit("inst-a", func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() }), "application/json", forgeEvent("t-2", "triggered:listener", ""), 401, "token_expired", ""},
		{"malformed JSON", connectPath, tokA, "application/json", []byte(`{"eventType":`), 400, "invalid_payload", ""},
		{"missing transferId", connectPath, tokA, "application/json", []byte(`{"eventType":"listener-triggered"}`), 400, "invalid_payload", ""},
		{"upload without s3Key", connectPath, tokA, "application/json", connectEvent("t-1", "app-data-uploaded", ""), 400, "invalid_payload", ""},
		{"forge upload without key", forgePath, fitA, "application/json", forgeEvent("t-2", "uploaded:app_data", ""), 400, "invalid_payload", ""},
		{"2 MiB body", connectPath, tokA, "application/json", append(connectEvent("t-1", "listener-triggered", `,"pad":"`), append(bytes.Repeat([]byte("x"), 2<<20), '"', '}')...), 413, "payload_too_large", ""},
		{"wrong content type", connectPath, tokA, "text/plain", good, 415, "unsupported_media_type", ""},
		{"no content type", connectPath, tokA, "", good, 415, "unsupported_media_type", ""},
		{"cross-tenant transfer", connectPath, tokB, "application/json", connectEvent("t-owned", "transfer-settled", ""), 403, "tenant_mismatch", ""},
		{"cross-installation transfer", forgePath, "Bearer " + p.fit("inst-b", nil), "application/json", forgeEvent("t-forge-owned", "settled:transfer", ""), 403, "tenant_mismatch", ""},
		{"connect on forge's transfer", connectPath, tokA, "application/json", connectEvent("t-forge-owned", "transfer-settled", ""), 403, "tenant_mismatch", ""},
		{"client keys of another tenant", connectPath, tokB, "application/json", connectEvent("t-3", "listener-triggered", `,"migrationDetails":{"jiraClientKey":"tenant-a","confluenceClientKey":"unknown"}`), 403, "tenant_mismatch", ""},
		// A: implausible times, refused before anything is bound or stored.
		{"createdAt in the year 9999", connectPath, tokA, "application/json", connectEvent("t-9999", "listener-triggered", details(`"9999-12-31T23:59:59Z"`)), 400, "invalid_payload", "t-9999"},
		{"createdAt 3e14 ms", forgePath, fitA, "application/json", forgeEvent("t-3e14", "triggered:listener", `,"migrationDetails":{"createdAt":3e14}`), 400, "invalid_payload", "t-3e14"},
		{"createdAt a year ahead", connectPath, tokA, "application/json", connectEvent("t-ahead", "listener-triggered", details(fmt.Sprint(now.AddDate(1, 0, 0).UnixMilli()))), 400, "invalid_payload", "t-ahead"},
		// C: token lifetimes and claim types.
		{"Connect token valid for 100 years", connectPath, connectWith(long), "application/json", good, 401, "token_expired", ""},
		{"Connect token issued in the future", connectPath, connectWith(func(c jwt.MapClaims) {
			c["iat"] = now.Add(time.Hour).Unix()
			c["exp"] = now.Add(time.Hour + time.Minute).Unix()
		}), "application/json", good, 401, "token_expired", ""},
		{"Connect exp as a string", connectPath, connectWith(func(c jwt.MapClaims) { c["exp"] = fmt.Sprint(now.Add(time.Minute).Unix()) }), "application/json", good, 401, "malformed_token", ""},
		{"FIT valid for 100 years", forgePath, "Bearer " + p.fit("inst-a", long), "application/json", forgeEvent("t-2", "triggered:listener", ""), 401, "token_expired", ""},
		// D: a Forge installation id equal to a Connect client key is another tenant.
		{"forge issuer named like a connect tenant", forgePath, "Bearer " + p.fit("tenant-a", nil), "application/json", forgeEvent("t-owned", "settled:transfer", ""), 403, "tenant_mismatch", ""},
		// E: identity-bearing strings are capped before any binding.
		{"100 KB messageId", connectPath, tokA, "application/json", connectEvent("t-bigid", "listener-triggered", `,"messageId":"`+strings.Repeat("m", 100<<10)+`"`), 400, "invalid_payload", "t-bigid"},
		{"messageId with CR LF", forgePath, fitA, "application/json", forgeEvent("t-crlf", "triggered:listener", `,"messageId":"a\r\nNats-Msg-Id: x"`), 400, "invalid_payload", "t-crlf"},
		{"client key of 1000 bytes", connectPath, tokA, "application/json", connectEvent("t-bigkey", "listener-triggered", `,"migrationDetails":{"jiraClientKey":"`+strings.Repeat("k", 1000)+`"}`), 400, "invalid_payload", "t-bigkey"},
		// F: Forge tokens must name their key and this app.
		{"FIT without kid", forgePath, "Bearer " + fitNoKID, "application/json", forgeEvent("t-nokid", "triggered:listener", ""), 401, "malformed_token", "t-nokid"},
		{"FIT for another app id", forgePath, "Bearer " + p.fit("inst-a", func(c jwt.MapClaims) {
			c["app"] = map[string]any{"installationId": "inst-a", "id": "ari:cloud:ecosystem::app/other"}
		}), "application/json", forgeEvent("t-otherapp", "triggered:listener", ""), 401, "invalid_audience", "t-otherapp"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := p.streamMsgs()
			r := p.post(tc.path, tc.auth, tc.ctype, tc.body)
			if r.status != tc.status || r.code() != tc.code {
				t.Errorf("got %d %s, want %d %s", r.status, r.body, tc.status, tc.code)
			}
			var b httperr.Body
			if err := json.Unmarshal(r.body, &b); err != nil || b.Error.Message == "" {
				t.Errorf("error body %s is not {\"error\":{\"code\",\"message\"}}", r.body)
			}
			if after := p.streamMsgs(); after != before {
				t.Errorf("stream went from %d to %d messages", before, after)
			}
			if tc.unbound != "" {
				if _, err := p.journal.Owner(context.Background(), tc.unbound); !errors.Is(err, journal.ErrNotFound) {
					t.Errorf("transfer %s is bound (%v)", tc.unbound, err)
				}
			}
		})
	}
}

// TestIngestIdentityScope: a messageId is an event's identity only within
// its tenant and transfer (issue 10, B). Another tenant's or another
// transfer's event with the same messageId is stored, not taken for a
// duplicate; a changed body under the same messageId is stored too, never
// silently lost; an exact re-delivery is still a duplicate.
func TestIngestIdentityScope(t *testing.T) {
	p := newPlatform(t, journaltest.Open(t), ingest.Config{})
	tokA := "JWT " + p.connectToken("tenant-a", p.secrets["tenant-a"], time.Minute)
	tokB := "JWT " + p.connectToken("tenant-b", p.secrets["tenant-b"], time.Minute)
	steps := []struct {
		name, path, auth string
		body             []byte
		duplicate        bool
	}{
		{"first", connectPath, tokA, connectEvent("t-a", "app-data-uploaded", `,"messageId":"m-shared","s3Key":"k1"`), false},
		{"exact re-delivery", connectPath, tokA, connectEvent("t-a", "app-data-uploaded", `,"messageId":"m-shared","s3Key":"k1"`), true},
		{"another tenant", connectPath, tokB, connectEvent("t-b", "app-data-uploaded", `,"messageId":"m-shared","s3Key":"k1"`), false},
		{"another transfer", connectPath, tokA, connectEvent("t-a2", "app-data-uploaded", `,"messageId":"m-shared","s3Key":"k1"`), false},
		{"another source", forgePath, "Bearer " + p.fit("inst-1", nil), forgeEvent("t-f", "uploaded:app_data", `,"messageId":"m-shared","key":"k1"`), false},
		{"changed body", connectPath, tokA, connectEvent("t-a", "app-data-uploaded", `,"messageId":"m-shared","s3Key":"k2"`), false},
		{"changed body again", connectPath, tokA, connectEvent("t-a", "app-data-uploaded", `,"messageId":"m-shared","s3Key":"k2"`), true},
	}
	stored := uint64(0)
	for _, st := range steps {
		r := p.post(st.path, st.auth, "application/json", st.body)
		var a ingest.Accepted
		if err := json.Unmarshal(r.body, &a); r.status != 200 || err != nil || a.Duplicate != st.duplicate {
			t.Fatalf("%s: %d %s, want 200 with duplicate %v", st.name, r.status, r.body, st.duplicate)
		}
		if !st.duplicate {
			stored++
		}
		if n := p.streamMsgs(); n != stored {
			t.Fatalf("%s: stream holds %d messages, want %d", st.name, n, stored)
		}
	}
}

// freePort reserves a loopback port for a server that must come back on
// the same address.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func startNATS(t *testing.T, dir string, port int) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(s.Shutdown)
	return s
}

// TestIngestJournalDown stops the NATS server under a running ingest: every
// event is refused with 503 and Retry-After, never acknowledged; when the
// server is back, only the events acknowledged before are in the stream and
// ingest recovers.
func TestIngestJournalDown(t *testing.T) {
	dir, port := t.TempDir(), freePort(t)
	s := startNATS(t, dir, port)
	j := journaltest.OpenConfig(t, journal.Config{URL: s.ClientURL(), Timeout: 2 * time.Second})
	p := newPlatform(t, j, ingest.Config{AppendTimeout: 500 * time.Millisecond})
	tok := "JWT " + p.connectToken("tenant-a", p.secrets["tenant-a"], 5*time.Minute)

	for i := range 3 {
		body := connectEvent("t-up", "app-data-uploaded", fmt.Sprintf(`,"s3Key":"k%d"`, i))
		if r := p.post(connectPath, tok, "application/json", body); r.status != 200 {
			t.Fatalf("before the outage: %d %s", r.status, r.body)
		}
	}
	s.Shutdown()
	s.WaitForShutdown()

	for i := range 5 {
		// A transfer seen before (bound, cached) and a new one (needs the bucket).
		for _, id := range []string{"t-up", fmt.Sprintf("t-new-%d", i)} {
			body := connectEvent(id, "app-data-uploaded", fmt.Sprintf(`,"s3Key":"down-%d"`, i))
			start := time.Now()
			r := p.post(connectPath, tok, "application/json", body)
			if r.status != 503 || r.code() != "unavailable" || r.header.Get("Retry-After") == "" {
				t.Fatalf("journal down: got %d %s (Retry-After %q), want 503", r.status, r.body, r.header.Get("Retry-After"))
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("503 took %v: the platform gives up after 5 s", d)
			}
		}
	}

	startNATS(t, dir, port)
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := p.post(connectPath, tok, "application/json", connectEvent("t-up", "app-data-uploaded", `,"s3Key":"after"`))
		if r.status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ingest did not recover: %d %s", r.status, r.body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := p.streamMsgs(); n != 4 {
		t.Errorf("stream holds %d messages, want the 3 acknowledged before the outage and 1 after", n)
	}
}
