package projections_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/transferd/transferd/engine/journal/journaltest"
	"github.com/transferd/transferd/projections"
)

// thisBoot is the kernel's boot id, "" where there is none (every commit
// is then synced, and no mark is written).
func thisBoot(t *testing.T) string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return string(bytes.TrimSpace(b))
}

// TestUnsyncedStore: a store open for writing commits without syncs under
// a mark holding this boot's id, which Close removes after syncing. A mark
// of another boot (the machine went down while the store was open) makes
// Open and a read-only Open fail with ErrUnsynced without reading the
// file, and Rebuild replaces the file, every transfer in the outbox.
func TestUnsyncedStore(t *testing.T) {
	boot := thisBoot(t)
	if boot == "" {
		t.Skip("no boot id here: every commit is synced")
	}
	j := journaltest.Open(t)
	appendFast(t, j, generate(18, 400))
	path := filepath.Join(t.TempDir(), "p.db")
	mark := path + ".unsynced"

	s, err := projections.Open(path, projections.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(mark)
	if err != nil || string(bytes.TrimSpace(b)) != boot {
		t.Fatalf("mark while open: %q, %v; want this boot's id %q", b, err, boot)
	}
	if fi, err := os.Stat(mark); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mark's mode: %v, %v; want 0600", fi.Mode(), err)
	}
	mustCatchUp(t, j, s, projections.ProjectorOptions{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := os.Stat(mark); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("mark after Close: %v, want none", err)
	}

	s, err = projections.Open(path, projections.Options{SyncCommits: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(mark); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("mark with SyncCommits: %v, want none", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// The machine went down while the store was open, and its data pages
	// did not all reach the disk: here none did.
	if err := os.WriteFile(mark, []byte("00000000-0000-4000-8000-000000000000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tear(t, path)
	for _, ro := range []bool{false, true} {
		if _, err := projections.Open(path, projections.Options{ReadOnly: ro}); !errors.Is(err, projections.ErrUnsynced) {
			t.Errorf("Open (read-only %v) of a torn store: %v, want ErrUnsynced", ro, err)
		}
	}
	if err := projections.Rebuild(testContext(t), j, path, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(mark); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("mark after Rebuild: %v, want none", err)
	}
	rebuilt := mustOpen(t, path)
	assertMatchesFold(t, j, rebuilt)
	if st, _ := rebuilt.Stats(); st.FeedPending != int(st.Transfers) || st.Transfers == 0 {
		t.Errorf("outbox %d, want every transfer (%d): which states reached the feed is not known", st.FeedPending, st.Transfers)
	}
}

// tear zeroes every page of the bbolt file at path but its two meta pages.
func tear(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	page := int64(os.Getpagesize())
	if fi.Size() <= 2*page {
		t.Fatalf("store of %d bytes: nothing to tear", fi.Size())
	}
	if _, err := f.WriteAt(make([]byte, fi.Size()-2*page), 2*page); err != nil {
		t.Fatal(err)
	}
}
