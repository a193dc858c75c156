package main

import (
	"context"
	"strings"
	"testing"
)

// TestTenantsAddValidates: tenants add refuses a bad product type, a
// non-https base URL and a short secret, and replaces a registered tenant
// only with --force.
func TestTenantsAddValidates(t *testing.T) {
	dir := t.TempDir()
	const secret = "a-shared-secret-of-forty-bytes-012345678"
	add := func(stdin string, args ...string) (string, error) {
		var out lockedBuffer
		err := run(context.Background(), append([]string{"transferd", "tenants", "add", "--data", dir, "--client-key", "acme", "--shared-secret-file", "-"}, args...),
			noEnv, strings.NewReader(stdin), &out, &out)
		return out.String(), err
	}
	for _, c := range []struct {
		name, secret string
		args         []string
		want         string
	}{
		{"product type", secret, []string{"--product-type", "bitbucket"}, "--product-type"},
		{"ftp base URL", secret, []string{"--tenant-base-url", "ftp://example.atlassian.net"}, "https"},
		{"http base URL", secret, []string{"--tenant-base-url", "http://example.atlassian.net"}, "https"},
		{"short secret", "12345", nil, "at least 32"},
	} {
		if _, err := add(c.secret, c.args...); err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v (exit %d), want a usage error naming %q", c.name, err, exitCode(err), c.want)
		}
	}
	if out, err := add(secret, "--tenant-base-url", "https://example.atlassian.net", "--product-type", "jira"); err != nil || !strings.Contains(out, "added") {
		t.Fatalf("add: %v\n%s", err, out)
	}
	if _, err := add(secret); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("add over a registered tenant: %v, want a refusal naming --force", err)
	}
	if out, err := add(secret, "--force"); err != nil || !strings.Contains(out, "replaced") {
		t.Errorf("add --force: %v\n%s", err, out)
	}
	var out lockedBuffer
	if err := run(context.Background(), []string{"transferd", "tenants", "list", "--data", dir}, noEnv, strings.NewReader(""), &out, &out); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), secret) || strings.Contains(out.String(), "example.atlassian.net") {
		// --force replaced the tenant with one without a base URL.
		t.Errorf("list after --force:\n%s", out.String())
	}
}
