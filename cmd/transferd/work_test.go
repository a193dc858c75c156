package main

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/transferd/transferd/api"
)

// TestLoadScopedTokens: "tenant=<issuer> <token>" lines are tenant-scoped
// tokens, the others partner-wide; a malformed scoped line is refused.
func TestLoadScopedTokens(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "tokens")
	if err := os.WriteFile(f, []byte("# tokens\npartner-1\ntenant=tenant-a importer-a\n\ntenant=inst-9  importer-9 \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tokens, scoped, err := loadTokens([]string{"flag-token"}, f)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(tokens, []string{"flag-token", "partner-1"}) {
		t.Errorf("tokens %v", tokens)
	}
	if want := []api.ScopedToken{{Tenant: "tenant-a", Token: "importer-a"}, {Tenant: "inst-9", Token: "importer-9"}}; !reflect.DeepEqual(scoped, want) {
		t.Errorf("scoped %+v, want %+v", scoped, want)
	}
	for _, bad := range []string{"tenant=only-tenant\n", "tenant= tok\n", "tenant=a b c\n"} {
		if err := os.WriteFile(f, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, _, err := loadTokens(nil, f); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
