package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/transferd/transferd/api/httperr"
	"github.com/transferd/transferd/engine/journal"
	"github.com/transferd/transferd/engine/journal/journaltest"
	"github.com/transferd/transferd/ingest"
	"github.com/transferd/transferd/ingest/notification/notificationtest"
)

const (
	whAppKey = "com.example.transferd-test"
	whSecret = "wh-shared-secret-0123456789abcdef"
)

// whPutTenant stores t in the tenant registry of the journal cfg opens,
// and closes the journal again (the embedded one holds a lock on its
// directory).
func whPutTenant(t *testing.T, cfg journal.Config, tenant ingest.Tenant) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	j, err := journal.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	reg, err := ingest.OpenRegistry(ctx, j.Tenants())
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	if tenant.InstalledAt.IsZero() {
		tenant.InstalledAt = time.Now().UTC()
	}
	if err := reg.Put(ctx, tenant); err != nil {
		t.Fatal(err)
	}
}

// whRun runs `transferd args…` as main does, with getenv, and returns its
// output.
func whRun(t *testing.T, getenv env, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = run(ctx, append([]string{"transferd"}, args...), getenv, strings.NewReader(""), &out, &errOut)
	return out.String(), errOut.String(), err
}

// whListJSON runs webhook list --json and decodes it.
func whListJSON(t *testing.T, flags ...string) []string {
	t.Helper()
	stdout, stderr, err := whRun(t, noEnv, append([]string{"webhook", "list", "--json"}, flags...)...)
	if err != nil {
		t.Fatalf("webhook list: %v\n%s", err, stderr)
	}
	var got struct {
		Endpoints []string `json:"endpoints"`
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil || got.Endpoints == nil {
		t.Fatalf("webhook list --json printed %q: %v", stdout, err)
	}
	return got.Endpoints
}

// TestWebhookCommand registers, lists and clears a tenant's webhook
// through the command, against fake sites that verify every request's JWT
// as the ingest side does, with the tenant's secret, site and app key read
// from the registry in the data directory.
func TestWebhookCommand(t *testing.T) {
	for _, sitePath := range []string{"", "/wiki"} {
		t.Run("site path "+sitePath, func(t *testing.T) {
			site := notificationtest.NewSite(t, notificationtest.Options{Path: sitePath, AppKey: whAppKey, Secret: []byte(whSecret)})
			dir := t.TempDir()
			whPutTenant(t, journal.Config{DataDir: dir}, ingest.Tenant{
				ClientKey: "tenant-wh", SharedSecret: whSecret, BaseURL: site.URL, AppKey: whAppKey, ProductType: "confluence",
			})
			common := []string{"--data", dir, "--tenant", "tenant-wh"}

			// register defaults to --base-url + --connect-path.
			stdout, stderr, err := whRun(t, noEnv, append([]string{"webhook", "register", "--base-url", "https://app.example.com/", "--connect-path", "/hooks/migration"}, common...)...)
			if err != nil {
				t.Fatalf("register: %v\n%s", err, stderr)
			}
			want := []string{"https://app.example.com/hooks/migration"}
			if got := site.Endpoints(); !slices.Equal(got, want) {
				t.Fatalf("site has %q after register, want %q", got, want)
			}
			if !strings.Contains(stdout, want[0]) || strings.Contains(stdout+stderr, whSecret) {
				t.Errorf("register printed %q (stderr %q)", stdout, stderr)
			}
			req := site.LastRequest(t)
			if req.Method != http.MethodPut || req.Path != sitePath+notificationtest.WebhookPath || req.Issuer != whAppKey {
				t.Errorf("site saw %+v", req)
			}
			if life := req.ExpiresAt.Sub(req.IssuedAt); life <= 0 || life > 5*time.Minute {
				t.Errorf("token lives %v: want a short exp", life)
			}

			// list, as text and JSON.
			stdout, stderr, err = whRun(t, noEnv, append([]string{"webhook", "list"}, common...)...)
			if err != nil || stdout != want[0]+"\n" {
				t.Fatalf("list = %q, %v\n%s", stdout, err, stderr)
			}
			if got := whListJSON(t, common...); !slices.Equal(got, want) {
				t.Fatalf("list --json = %q", got)
			}

			// --endpoint replaces, repeatable.
			want = []string{"https://app.example.com/a", "https://eu.app.example.com/a"}
			if _, stderr, err = whRun(t, noEnv, append([]string{"webhook", "register", "--endpoint", want[0], "--endpoint", want[1]}, common...)...); err != nil {
				t.Fatalf("register --endpoint: %v\n%s", err, stderr)
			}
			if got := whListJSON(t, common...); !slices.Equal(got, want) {
				t.Fatalf("after register --endpoint ×2: %q", got)
			}

			// clear.
			if _, stderr, err = whRun(t, noEnv, append([]string{"webhook", "clear"}, common...)...); err != nil {
				t.Fatalf("clear: %v\n%s", err, stderr)
			}
			if got := whListJSON(t, common...); len(got) != 0 {
				t.Fatalf("after clear: %q", got)
			}
			if got := site.Endpoints(); len(got) != 0 {
				t.Fatalf("site has %q after clear", got)
			}
			for _, r := range site.Requests() {
				if r.Status != http.StatusOK {
					t.Errorf("%s %s refused: %d %s", r.Method, r.Path, r.Status, r.Refusal)
				}
			}
		})
	}
}

// TestWebhookRefusedSecret stores a secret the site does not know: the
// command fails with the site's status and reason, and nothing changes.
func TestWebhookRefusedSecret(t *testing.T) {
	site := notificationtest.NewSite(t, notificationtest.Options{Path: "/wiki", AppKey: whAppKey, Secret: []byte(whSecret)})
	site.SetEndpoints("https://kept.example.com/hook")
	dir := t.TempDir()
	whPutTenant(t, journal.Config{DataDir: dir}, ingest.Tenant{ClientKey: "tenant-wh", SharedSecret: "a-stale-secret-0123456789", BaseURL: site.URL, AppKey: whAppKey})
	for _, sub := range []string{"register", "list", "clear"} {
		args := []string{"webhook", sub, "--data", dir, "--tenant", "tenant-wh"}
		if sub == "register" {
			args = append(args, "--endpoint", "https://evil.example.com/hook")
		}
		_, stderr, err := whRun(t, noEnv, args...)
		if err == nil || exitCode(err) != 1 {
			t.Fatalf("%s with a wrong secret: err %v", sub, err)
		}
		if msg := err.Error(); !strings.Contains(msg, "401") || !strings.Contains(msg, httperr.CodeInvalidSignature) || strings.Contains(msg+stderr, "a-stale-secret") {
			t.Errorf("%s: error %q should show the status and the site's reason, never the secret", sub, msg)
		}
	}
	if got := site.Endpoints(); !slices.Equal(got, []string{"https://kept.example.com/hook"}) {
		t.Errorf("refused requests changed the endpoints: %q", got)
	}
}

// TestWebhookExternalNATS reads the tenant from the KV bucket of an
// external NATS (--nats-url, here from TRANSFERD_NATS_URL), with the site
// and app key given as flags because the tenant was added by hand.
func TestWebhookExternalNATS(t *testing.T) {
	site := notificationtest.NewSite(t, notificationtest.Options{Path: "/wiki", AppKey: whAppKey, Secret: []byte(whSecret)})
	natsURL := journaltest.Server(t)
	whPutTenant(t, journal.Config{URL: natsURL}, ingest.Tenant{ClientKey: "hand-added", SharedSecret: whSecret})
	getenv := func(k string) string {
		switch k {
		case "TRANSFERD_NATS_URL":
			return natsURL
		case "TRANSFERD_WEBHOOK_TENANT":
			return "hand-added"
		case "TRANSFERD_BASE_URL":
			return "https://app.example.com"
		case "TRANSFERD_SECRETS_KEY":
			return testSecretsKey
		}
		return ""
	}
	dir := t.TempDir() // --data is unused with --nats-url, but must not be ./data
	_, _, err := whRun(t, getenv, "webhook", "register", "--data", dir)
	if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), "--site") {
		t.Fatalf("no stored baseUrl and no --site: %v", err)
	}
	_, _, err = whRun(t, getenv, "webhook", "register", "--data", dir, "--site", site.URL)
	if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), "--app-key") {
		t.Fatalf("no stored app key and no --app-key: %v", err)
	}
	if _, stderr, err := whRun(t, getenv, "webhook", "register", "--data", dir, "--site", site.URL, "--app-key", whAppKey); err != nil {
		t.Fatalf("register: %v\n%s", err, stderr)
	}
	if got := site.Endpoints(); !slices.Equal(got, []string{"https://app.example.com/connect/migration-events"}) {
		t.Fatalf("site has %q", got)
	}
}

// TestWebhookUsage covers the mistakes refused before any request.
func TestWebhookUsage(t *testing.T) {
	site := notificationtest.NewSite(t, notificationtest.Options{AppKey: whAppKey, Secret: []byte(whSecret)})
	dir := t.TempDir()
	gone := time.Now().UTC()
	whPutTenant(t, journal.Config{DataDir: dir}, ingest.Tenant{ClientKey: "tenant-wh", SharedSecret: whSecret, BaseURL: site.URL, AppKey: whAppKey})
	whPutTenant(t, journal.Config{DataDir: dir}, ingest.Tenant{ClientKey: "gone", SharedSecret: whSecret, BaseURL: site.URL, AppKey: whAppKey, UninstalledAt: &gone})
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no subcommand", []string{"webhook"}, 2, "register, list or clear"},
		{"unknown subcommand", []string{"webhook", "delete", "--tenant", "tenant-wh"}, 2, "unknown subcommand"},
		{"no tenant", []string{"webhook", "list", "--data", dir}, 2, "--tenant"},
		{"register without endpoint or base URL", []string{"webhook", "register", "--data", dir, "--tenant", "tenant-wh"}, 2, "--base-url"},
		{"relative endpoint", []string{"webhook", "register", "--data", dir, "--tenant", "tenant-wh", "--endpoint", "/hooks"}, 1, "absolute"},
		{"unknown tenant", []string{"webhook", "list", "--data", dir, "--tenant", "nobody"}, 1, "not in the registry"},
		{"uninstalled tenant", []string{"webhook", "list", "--data", dir, "--tenant", "gone"}, 1, "uninstalled"},
		{"endpoint on list", []string{"webhook", "list", "--data", dir, "--tenant", "tenant-wh", "--endpoint", "https://x"}, 2, "endpoint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, err := whRun(t, noEnv, tc.args...)
			if err == nil || exitCode(err) != tc.code || !strings.Contains(err.Error()+stderr, tc.want) {
				t.Errorf("err = %v (exit %d), want exit %d mentioning %q\n%s", err, exitCode(err), tc.code, tc.want, stderr)
			}
		})
	}
	if n := len(site.Requests()); n != 0 {
		t.Errorf("%d requests reached the site", n)
	}
}
