package ingest_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

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
