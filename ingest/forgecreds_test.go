package ingest_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/transferd/transferd/engine/journal"
	"github.com/transferd/transferd/engine/journal/journaltest"
	"github.com/transferd/transferd/ingest"
)

// Issue 12: the Forge message-status call needs the installation's
// app.apiBaseUrl and the app system token of the x-forge-oauth-system
// header; ingest used to drop both. It keeps the newest of an accepted
// event per installation, in memory, and never prints the token.
func TestForgeCredentialKept(t *testing.T) {
	p := newPlatform(t, journaltest.Open(t), ingest.Config{})
	const inst = "ari:cloud:ecosystem::installation/11111111-2222-4333-8444-555555555555"
	post := func(body []byte, apiBase, token string) int {
		t.Helper()
		fit := p.fit(inst, func(c jwt.MapClaims) {
			c["app"].(map[string]any)["apiBaseUrl"] = apiBase
		})
		req, err := http.NewRequest("POST", p.srv.URL+forgePath, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+fit)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Forge-Oauth-System", token)
		res, err := p.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if _, ok := p.h.ForgeCredential(inst); ok {
		t.Fatal("a credential before any event")
	}
	if s := post(forgeEvent("t-cred", "triggered:listener", `,"messageId":"c1"`), "https://api.example/ex/1", "system-token-one"); s != 200 {
		t.Fatalf("status %d", s)
	}
	c, ok := p.h.ForgeCredential(inst)
	if !ok || c.Token != "system-token-one" || c.APIBaseURL != "https://api.example/ex/1" || c.ReceivedAt.IsZero() {
		t.Fatalf("credential %v %v", c, ok)
	}
	// A refused request's credential is not kept.
	if s := post([]byte(`{"eventType":"avi:ecosystem.migration:triggered:listener"}`), "https://evil.example", "system-token-bad"); s != 400 {
		t.Fatalf("status %d for an event without transferId", s)
	}
	if c, _ := p.h.ForgeCredential(inst); c.Token != "system-token-one" {
		t.Fatalf("a refused request replaced the credential: %v", c)
	}
	if s := post(forgeEvent("t-cred", "uploaded:app_data", `,"messageId":"c2","key":"k"`), "https://api.example/ex/1", "system-token-two"); s != 200 {
		t.Fatalf("status %d", s)
	}
	c, _ = p.h.ForgeCredential(inst)
	if c.Token != "system-token-two" {
		t.Fatalf("the newer credential was not kept: %v", c)
	}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("x", "cred", c)
	for _, out := range []string{fmt.Sprint(c), fmt.Sprintf("%v %+v %#v", c, c, c), logged.String()} {
		if strings.Contains(out, "system-token") {
			t.Fatalf("the token is printed: %s", out)
		}
	}
}

// forgeInstance is one serve's ingest on j: a Handler whose Forge
// credentials are sealed with keys in j's bucket, served on loopback.
type forgeInstance struct {
	h   *ingest.Handler
	srv *httptest.Server
}

func newForgeInstance(t *testing.T, p *platform, j *journal.Journal, keys *ingest.SecretKeys, now func() time.Time, log *slog.Logger) *forgeInstance {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var opts []ingest.RegistryOption
	if keys != nil {
		opts = append(opts, ingest.WithSecretKeys(keys))
	}
	reg, err := ingest.OpenRegistry(ctx, j.Tenants(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	h, err := ingest.New(ctx, ingest.Config{BaseURL: "https://app.example.com", AppARI: appARI, JWKSURL: p.jwks.URL,
		ForgeCredentials: j.ForgeCredentials(), Now: now, Logger: log}, j, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	fi := &forgeInstance{h: h, srv: httptest.NewServer(h)}
	t.Cleanup(fi.srv.Close)
	return fi
}

// event posts a Forge event of inst carrying apiBase and token.
func (fi *forgeInstance) event(t *testing.T, p *platform, inst, transferID, messageID, apiBase, token string) {
	t.Helper()
	fit := p.fit(inst, func(c jwt.MapClaims) { c["app"].(map[string]any)["apiBaseUrl"] = apiBase })
	req, _ := http.NewRequest("POST", fi.srv.URL+forgePath,
		bytes.NewReader(forgeEvent(transferID, "uploaded:app_data", `,"messageId":"`+messageID+`","key":"k-`+messageID+`"`)))
	req.Header.Set("Authorization", "Bearer "+fit)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(ingest.ForgeSystemTokenHeader, token)
	res, err := fi.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("Forge event: status %d", res.StatusCode)
	}
}

// waitStored waits until the bucket holds a revision other than after
// for inst, and returns it.
func waitStored(t *testing.T, j *journal.Journal, inst string, after uint64) journal.CredentialEntry {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		e, err := j.ForgeCredentials().Get(context.Background(), inst)
		if err == nil && e.Revision != after {
			return e
		}
		if err != nil && !errors.Is(err, journal.ErrNotFound) {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the credential of %s is not stored (revision after %d): %v", inst, after, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func mustSecretKeys(t *testing.T, text string) *ingest.SecretKeys {
	t.Helper()
	k, err := ingest.ParseSecretKeys(text)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Issue 12: a Forge message whose import finishes after a restart must
// still be acknowledged, with the credential of the installation's last
// event before it. The credential is sealed in the journal's bucket (never
// in clear), found by a new Handler after the journal is reopened, and by
// another instance on the same journal.
func TestForgeCredentialSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	j := journaltest.OpenConfig(t, journal.Config{DataDir: dir})
	p := newPlatform(t, j, ingest.Config{})
	keys := mustSecretKeys(t, ingest.NewSecretKey())
	const inst = "ari:cloud:ecosystem::installation/11111111-2222-4333-8444-555555555555"
	a := newForgeInstance(t, p, j, keys, nil, nil)
	a.event(t, p, inst, "t-restart", "m1", "https://api.example/ex/1", "system-token-one")
	first := waitStored(t, j, inst, 0)
	if bytes.Contains(first.Value, []byte("system-token")) || bytes.Contains(first.Value, []byte("api.example")) {
		t.Fatalf("the bucket holds the credential in clear: %s", first.Value)
	}

	// The same token again is no write; a new one is one write.
	a.event(t, p, inst, "t-restart", "m2", "https://api.example/ex/1", "system-token-one")
	a.event(t, p, inst, "t-restart", "m3", "https://api.example/ex/1", "system-token-one")
	a.event(t, p, inst, "t-restart", "m4", "https://api.example/ex/1", "system-token-two")
	if e := waitStored(t, j, inst, first.Revision); e.Revision != first.Revision+1 {
		t.Errorf("revision %d after %d: the same credential was written again", e.Revision, first.Revision)
	}

	// Another instance on the same journal finds it.
	b := newForgeInstance(t, p, j, keys, nil, nil)
	if c, ok := b.h.ForgeCredential(inst); !ok || c.Token != "system-token-two" || c.APIBaseURL != "https://api.example/ex/1" {
		t.Errorf("another instance: %v %v", c, ok)
	}

	// Restart: every Handler closed, the journal reopened on its data.
	a.h.Close()
	b.h.Close()
	j.Close()
	j = journaltest.OpenConfig(t, journal.Config{DataDir: dir})
	after := newForgeInstance(t, p, j, keys, nil, nil)
	c, err := after.h.LoadForgeCredential(context.Background(), inst)
	if err != nil || c.Token != "system-token-two" || c.APIBaseURL != "https://api.example/ex/1" || c.ReceivedAt.IsZero() {
		t.Fatalf("after a restart: %v, %v", c, err)
	}
	if _, err := after.h.LoadForgeCredential(context.Background(), inst+"0"); !errors.Is(err, ingest.ErrNoForgeCredential) {
		t.Errorf("an installation never seen: %v", err)
	}
}

// The newest receivedAt wins in the bucket: an instance that receives an
// older event (a retried delivery, a clock behind) does not replace a newer
// credential another instance stored, and takes the newer one.
func TestForgeCredentialNewestWins(t *testing.T) {
	j := journaltest.Open(t)
	p := newPlatform(t, j, ingest.Config{})
	keys := mustSecretKeys(t, ingest.NewSecretKey())
	const inst = "installation-newest"
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	newer := newForgeInstance(t, p, j, keys, func() time.Time { return t0.Add(time.Minute) }, nil)
	older := newForgeInstance(t, p, j, keys, func() time.Time { return t0 }, nil)
	newer.event(t, p, inst, "t-newest", "m1", "https://api.example/new", "token-new")
	stored := waitStored(t, j, inst, 0)
	older.event(t, p, inst, "t-newest", "m2", "https://api.example/old", "token-old")
	older.h.Close() // writes what it has pending, or finds the newer one
	if e, err := j.ForgeCredentials().Get(context.Background(), inst); err != nil || e.Revision != stored.Revision {
		t.Errorf("the older credential replaced the newer: %+v, %v", e, err)
	}
	fresh := newForgeInstance(t, p, j, keys, nil, nil)
	if c, err := fresh.h.LoadForgeCredential(context.Background(), inst); err != nil || c.Token != "token-new" {
		t.Errorf("stored %v, %v; want token-new", c, err)
	}
}

// A sealed credential opens only for its installation and with the
// secrets key it was sealed with: copied onto another installation, or
// read with another key, it is a clear error wrapping ErrSecretKey (the
// driver then has no credential and says why), never a crash, never the
// token in the error or the log.
func TestForgeCredentialSealed(t *testing.T) {
	j := journaltest.Open(t)
	p := newPlatform(t, j, ingest.Config{})
	keys := mustSecretKeys(t, ingest.NewSecretKey())
	const inst, other = "installation-sealed", "installation-other"
	a := newForgeInstance(t, p, j, keys, nil, nil)
	a.event(t, p, inst, "t-sealed", "m1", "https://api.example/ex/1", "system-token-sealed")
	e := waitStored(t, j, inst, 0)
	ctx := context.Background()
	if _, err := j.ForgeCredentials().Create(ctx, other, e.Value); err != nil {
		t.Fatal(err)
	}

	var logged syncBuffer
	b := newForgeInstance(t, p, j, keys, nil, slog.New(slog.NewTextHandler(&logged, nil)))
	if _, err := b.h.LoadForgeCredential(ctx, other); !errors.Is(err, ingest.ErrSecretKey) || !strings.Contains(err.Error(), other) {
		t.Errorf("another installation's sealed value: %v, want ErrSecretKey naming %s", err, other)
	}
	if c, err := b.h.LoadForgeCredential(ctx, inst); err != nil || c.Token != "system-token-sealed" {
		t.Errorf("its own installation: %v, %v", c, err)
	}

	wrong := newForgeInstance(t, p, j, mustSecretKeys(t, ingest.NewSecretKey()), nil, slog.New(slog.NewTextHandler(&logged, nil)))
	_, err := wrong.h.LoadForgeCredential(ctx, inst)
	if !errors.Is(err, ingest.ErrSecretKey) || !strings.Contains(err.Error(), "not configured") {
		t.Errorf("another secrets key: %v, want ErrSecretKey saying the key is not configured", err)
	}
	if c, ok := wrong.h.ForgeCredential(inst); ok {
		t.Errorf("another secrets key gave a credential: %v", c)
	}
	// The installation's next event brings a credential the instance can
	// use; it replaces the one it cannot open.
	wrong.event(t, p, inst, "t-sealed", "m2", "https://api.example/ex/1", "system-token-rekeyed")
	waitStored(t, j, inst, e.Revision)
	if c, ok := wrong.h.ForgeCredential(inst); !ok || c.Token != "system-token-rekeyed" {
		t.Errorf("after the next event: %v %v", c, ok)
	}
	for _, s := range []string{fmt.Sprint(err), logged.String()} {
		if strings.Contains(s, "system-token") {
			t.Errorf("a token is printed: %s", s)
		}
	}
}

// Without secrets keys the credential stays in memory: nothing is stored
// in clear.
func TestForgeCredentialWithoutKeys(t *testing.T) {
	j := journaltest.Open(t)
	p := newPlatform(t, j, ingest.Config{})
	const inst = "installation-nokeys"
	var logged syncBuffer
	a := newForgeInstance(t, p, j, nil, nil, slog.New(slog.NewTextHandler(&logged, nil)))
	if !strings.Contains(logged.String(), "memory only") {
		t.Errorf("no note that credentials stay in memory: %s", logged.String())
	}
	a.event(t, p, inst, "t-nokeys", "m1", "https://api.example/ex/1", "system-token-clear")
	if c, ok := a.h.ForgeCredential(inst); !ok || c.Token != "system-token-clear" {
		t.Fatalf("in memory: %v %v", c, ok)
	}
	a.h.Close()
	if _, err := j.ForgeCredentials().Get(context.Background(), inst); !errors.Is(err, journal.ErrNotFound) {
		t.Errorf("stored without keys: %v", err)
	}
}
