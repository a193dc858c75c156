package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/transferd/transferd/engine/journal/journaltest"
	"github.com/transferd/transferd/ingest"
)

// descParse decodes the descriptor command's output, failing on anything
// that is not one JSON object.
func descParse(t *testing.T, stdout string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(stdout))
	var d map[string]any
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("descriptor printed %q: %v", stdout, err)
	}
	if dec.More() {
		t.Fatalf("descriptor printed more than one JSON value: %q", stdout)
	}
	return d
}

// descAt returns the value at a path of nested objects.
func descAt(d map[string]any, path ...string) any {
	var v any = d
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// TestDescriptorCommand checks the fragment: valid JSON with the base URL,
// the webhook path, the lifecycle paths serve actually routes, JWT
// authentication, the signed-install opt-in and the regions.
func TestDescriptorCommand(t *testing.T) {
	stdout, stderr, err := whRun(t, noEnv, "descriptor",
		"--base-url", "https://app.example.com/", "--connect-path", "/hooks/migration",
		"--region", "EU=https://eu.app.example.com/", "--region", "US=https://us.app.example.com,AU=https://au.app.example.com",
		"--app-key", "com.example.app")
	if err != nil {
		t.Fatalf("descriptor: %v\n%s", err, stderr)
	}
	d := descParse(t, stdout)
	for _, tc := range []struct {
		path []string
		want any
	}{
		{[]string{"key"}, "com.example.app"},
		{[]string{"baseUrl"}, "https://app.example.com"},
		{[]string{"authentication", "type"}, "jwt"},
		{[]string{"lifecycle", "installed"}, "/connect/installed"},
		{[]string{"lifecycle", "uninstalled"}, "/connect/uninstalled"},
		{[]string{"apiMigrations", "signed-install"}, true},
		{[]string{"cloudAppMigration", "migrationWebhookPath"}, "/hooks/migration"},
		{[]string{"regionBaseUrls", "EU"}, "https://eu.app.example.com"},
		{[]string{"regionBaseUrls", "US"}, "https://us.app.example.com"},
		{[]string{"regionBaseUrls", "AU"}, "https://au.app.example.com"},
	} {
		if got := descAt(d, tc.path...); got != tc.want {
			t.Errorf("%s = %v, want %v", strings.Join(tc.path, "."), got, tc.want)
		}
	}
	if stderr != "" {
		t.Errorf("warnings for an HTTPS setup: %q", stderr)
	}

	// The lifecycle paths and the webhook path are the ones serve routes.
	j := journaltest.Open(t)
	reg, err := ingest.OpenRegistry(t.Context(), j.Tenants())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	in, err := ingest.New(t.Context(), ingest.Config{BaseURL: "https://app.example.com", ConnectPath: "/hooks/migration"}, j, reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []any{descAt(d, "lifecycle", "installed"), descAt(d, "lifecycle", "uninstalled"), descAt(d, "cloudAppMigration", "migrationWebhookPath")} {
		if !slices.Contains(in.Routes(), "POST "+p.(string)) {
			t.Errorf("descriptor path %v is not an ingest route %q", p, in.Routes())
		}
	}
}

// TestDescriptorDefaults reads the base URL from the environment serve
// uses too, and leaves out what was not asked for.
func TestDescriptorDefaults(t *testing.T) {
	getenv := func(k string) string {
		if k == "TRANSFERD_BASE_URL" {
			return "http://127.0.0.1:8080"
		}
		return ""
	}
	stdout, stderr, err := whRun(t, getenv, "descriptor")
	if err != nil {
		t.Fatal(err)
	}
	d := descParse(t, stdout)
	if d["baseUrl"] != "http://127.0.0.1:8080" || descAt(d, "cloudAppMigration", "migrationWebhookPath") != ingest.DefaultConnectPath {
		t.Errorf("defaults: %s", stdout)
	}
	for _, absent := range []string{"key", "regionBaseUrls"} {
		if _, ok := d[absent]; ok {
			t.Errorf("%s printed without being asked for: %s", absent, stdout)
		}
	}
	if !strings.Contains(stderr, "not HTTPS") {
		t.Errorf("no warning for an http base URL: %q", stderr)
	}
	stdout, _, err = whRun(t, getenv, "descriptor", "--signed-install=false")
	if err != nil || descAt(descParse(t, stdout), "apiMigrations", "signed-install") != false {
		t.Errorf("--signed-install=false: %v %s", err, stdout)
	}
}

func TestDescriptorUsage(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no base URL", nil, "--base-url"},
		{"relative base URL", []string{"--base-url", "app.example.com"}, "absolute"},
		{"base URL with query", []string{"--base-url", "https://app.example.com/?x=1"}, "absolute"},
		{"relative connect path", []string{"--base-url", "https://app.example.com", "--connect-path", "hooks"}, "--connect-path"},
		{"region without URL", []string{"--base-url", "https://app.example.com", "--region", "EU"}, "REGION=URL"},
		{"lower-case region", []string{"--base-url", "https://app.example.com", "--region", "eu=https://eu.example.com"}, "REGION=URL"},
		{"region twice", []string{"--base-url", "https://app.example.com", "--region", "EU=https://a.example.com", "--region", "EU=https://b.example.com"}, "twice"},
		{"region URL not absolute", []string{"--base-url", "https://app.example.com", "--region", "EU=eu.example.com"}, "absolute"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, err := whRun(t, noEnv, append([]string{"descriptor"}, tc.args...)...)
			if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), tc.want) || stdout != "" {
				t.Errorf("err = %v (exit %d), stdout %q; want exit 2 mentioning %q\n%s", err, exitCode(err), stdout, tc.want, stderr)
			}
		})
	}
}
