package simulator_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/transferd/transferd/ingest"
	"github.com/transferd/transferd/ingest/atlassian"
	"github.com/transferd/transferd/ingest/simulator"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestKeyServer(t *testing.T) {
	if !strings.HasPrefix(keys.URL(), "http://127.0.0.1:") || strings.HasSuffix(keys.URL(), ":0") {
		t.Errorf("URL %q does not name the chosen port", keys.URL())
	}
	code, body := get(t, keys.JWKSURL())
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal([]byte(body), &set); code != 200 || err != nil || len(set.Keys) != 1 || set.Keys[0]["kty"] != "RSA" || set.Keys[0]["kid"] == "" {
		t.Errorf("JWKS: %d %s", code, body)
	}
	if code, _ := get(t, keys.InstallKeysURL()+"/unknown-kid"); code != http.StatusNotFound {
		t.Errorf("unknown install kid: %d, want 404", code)
	}
	flags := strings.Join(keys.ServeFlags("ari:cloud:ecosystem::app/x"), " ")
	if want := "--forge-app-ari ari:cloud:ecosystem::app/x --forge-jwks-url " + keys.JWKSURL() + " --install-keys-url " + keys.InstallKeysURL(); flags != want {
		t.Errorf("ServeFlags = %s, want %s", flags, want)
	}
}

// TestKeyServerTokens checks the tokens against ingest's own verifiers.
func TestKeyServerTokens(t *testing.T) {
	const baseURL = "https://app.example.com/base"
	now := time.Now()
	iv, err := ingest.NewInstallVerifier(nil, ingest.InstallConfig{BaseURL: baseURL, KeysURL: keys.InstallKeysURL()})
	if err != nil {
		t.Fatal(err)
	}
	qsh := atlassian.QSH("POST", "/base/connect/installed", "", "/base")
	tok, err := keys.SignInstall("client-1", baseURL, qsh, time.Minute, now)
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("POST", baseURL+"/connect/installed", nil)
	r.Header.Set("Authorization", "JWT "+tok)
	if how, err := iv.Verify(r, "client-1"); err != nil || how != ingest.InstallSignedByAtlassian {
		t.Errorf("signed install: %v, %v", how, err)
	}
	if _, err := iv.Verify(r, "client-2"); err == nil {
		t.Error("signed install accepted for another clientKey")
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fv, err := ingest.NewForgeVerifier(ctx, ingest.ForgeConfig{AppARI: simulator.DefaultAppARI, JWKSURL: keys.JWKSURL()})
	if err != nil {
		t.Fatal(err)
	}
	fit, err := keys.SignFIT(simulator.DefaultAppARI, "ari:cloud:ecosystem::installation/1", "cloud-1", 25*time.Second, now)
	if err != nil {
		t.Fatal(err)
	}
	r = httptest.NewRequest("POST", "/forge/migration-events", nil)
	r.Header.Set("Authorization", "Bearer "+fit)
	if inv, err := fv.Verify(r); err != nil || inv.InstallationID != "ari:cloud:ecosystem::installation/1" || inv.CloudID != "cloud-1" {
		t.Errorf("FIT: %+v, %v", inv, err)
	}
}
