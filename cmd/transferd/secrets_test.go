package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/transferd/transferd/engine/journal"
	"github.com/transferd/transferd/engine/journal/journaltest"
	"github.com/transferd/transferd/ingest"
)

// testSecretsKey is a fixed secrets key for tests that use --nats-url.
const testSecretsKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

// secretsKeyFile writes testSecretsKey to a 0600 file for --secrets-key-file.
func secretsKeyFile(t *testing.T) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "secrets.key")
	if err := os.WriteFile(f, []byte(testSecretsKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestSecretsAtRest: tenants add with the embedded NATS generates a 0600
// key under --data (outside the NATS store) and stores the secret sealed;
// another key is refused clearly; --nats-url without a key is refused.
func TestSecretsAtRest(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	secretFile := filepath.Join(t.TempDir(), "secret")
	const secret = "s3cr3t-value-for-acme-0123456789"
	if err := os.WriteFile(secretFile, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut lockedBuffer
	if err := run(ctx, []string{"transferd", "tenants", "add", "--data", dir, "--client-key", "acme", "--shared-secret-file", secretFile},
		noEnv, strings.NewReader(""), &out, &errOut); err != nil {
		t.Fatalf("tenants add: %v\n%s", err, errOut.String())
	}
	keyFile := filepath.Join(dir, "secrets.key")
	fi, err := os.Stat(keyFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("generated key %s: %v, %v", keyFile, fi, err)
	}
	if !strings.Contains(errOut.String(), keyFile) {
		t.Errorf("the generated key's file is not logged: %s", errOut.String())
	}

	j := journaltest.OpenConfig(t, journal.Config{DataDir: dir})
	e, err := j.Tenants().Get(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(e.Value), secret) {
		t.Errorf("the bucket holds the secret in plaintext: %s", e.Value)
	}
	j.Close()

	wrong := func(k string) string {
		if k == secretsKeyEnv {
			return ingest.NewSecretKey()
		}
		return ""
	}
	err = run(ctx, []string{"transferd", "tenants", "list", "--data", dir}, wrong, strings.NewReader(""), &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "cannot be decrypted") {
		t.Errorf("tenants list with another key: %v", err)
	}
	err = run(ctx, []string{"transferd", "tenants", "list", "--data", dir}, noEnv, strings.NewReader(""), &out, &errOut)
	if err != nil {
		t.Errorf("tenants list with the generated key: %v", err)
	}

	url := journaltest.Server(t)
	err = run(ctx, []string{"transferd", "tenants", "list", "--data", t.TempDir(), "--nats-url", url}, noEnv, strings.NewReader(""), &out, &errOut)
	if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), "--secrets-key-file") {
		t.Errorf("--nats-url without a secrets key: %v", err)
	}
}
