package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestInstanceClaimantKept: serve --drive claims under the same name on
// the same data directory across restarts (so its own cut settles are
// taken back at once), another directory gets another name, and the file
// is 0600.
func TestInstanceClaimantKept(t *testing.T) {
	dir := t.TempDir()
	a, err := instanceClaimant(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := instanceClaimant(dir)
	if err != nil || a != b || len(a) < 16 {
		t.Fatalf("claimant %q then %q (%v)", a, b, err)
	}
	if c, _ := instanceClaimant(t.TempDir()); c == a {
		t.Fatal("two data directories share a claimant")
	}
	if st, err := os.Stat(filepath.Join(dir, "claimant")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("claimant file %v %v", st, err)
	}
}

// TestReconcileIntervalNeedsDrive: --reconcile-interval without --drive is
// a usage error, as is a negative one.
func TestReconcileIntervalNeedsDrive(t *testing.T) {
	for _, args := range [][]string{
		{"--reconcile-interval", "1m"},
		{"--drive", "--app-key", "com.example.app", "--reconcile-interval", "-1s"},
	} {
		var out, errOut lockedBuffer
		argv := append([]string{"transferd", "serve", "--data", t.TempDir(), "--listen", "127.0.0.1:0"}, args...)
		err := run(context.Background(), argv, noEnv, strings.NewReader(""), &out, &errOut)
		if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), "--reconcile-interval") {
			t.Errorf("%v: %v (exit %d)", args, err, exitCode(err))
		}
	}
}
