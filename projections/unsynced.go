package projections

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// Commits without fsync.
//
// A live store commits without syncing its file: a commit's pages are in
// the operating system's page cache when Commit returns, which a crash of
// the process (kill -9, a panic, an OOM kill) does not lose, so the file is
// whole after one. What the page cache does not survive is the machine
// going down (a power cut, a kernel panic, a host or VM lost): bbolt writes
// a commit's pages and then its meta page, and without a sync between them
// the disk may hold the meta page and not every page it points to, a torn
// file bbolt cannot even open safely. The store is derived from the stream,
// so the remedy is a rebuild; what matters is knowing when one is needed.
//
// While a store is open for writing without syncs, a file beside it,
// <path>.unsynced, holds the kernel's boot id (written and synced before
// the first unsynced commit); Close syncs the store and removes it. At
// Open, a leftover file with the boot id of this boot means the process
// died but the machine did not: the file is whole. Any other boot id means
// the machine went down while the store had unsynced commits: Open fails
// with ErrUnsynced, without reading the file, and Rebuild replaces it
// (transferd serve does so at start). Where there is no boot id (not
// Linux, no /proc), every commit is synced as before.
//
// The journal's events are synced before their 200 either way
// (--sync always); what this saves is the projector's two fdatasyncs per
// commit, which shared the disk with the journal's syncs: the whole serve
// takes a quarter more events per second (docs/performance.md).

// ErrUnsynced means the machine restarted while the store was open with
// unsynced commits: its file may be torn and is not read. Rebuild it from
// the stream (Rebuild), which transferd serve does by itself at start.
var ErrUnsynced = errors.New("projections: the machine restarted while the store had unsynced commits; rebuild it")

// bootID returns the kernel's boot id, "" where there is none.
var bootID = sync.OnceValue(func() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
})

// unsyncedPath is the file that marks path as open with unsynced commits.
func unsyncedPath(path string) string { return path + ".unsynced" }

// checkUnsynced returns ErrUnsynced when path was left with unsynced
// commits by an earlier boot of the machine (or by a boot this process
// cannot tell from its own).
func checkUnsynced(path string) error {
	b, err := os.ReadFile(unsyncedPath(path))
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("projections: open %s: %w", path, err)
	}
	if boot := bootID(); boot == "" || string(bytes.TrimSpace(b)) != boot {
		return fmt.Errorf("%w: %s (left open by boot %q, this is boot %q)", ErrUnsynced, path, bytes.TrimSpace(b), boot)
	}
	return nil
}

// markUnsynced records, durably, that path is about to get unsynced
// commits in this boot.
func markUnsynced(path, boot string) error {
	name := unsyncedPath(path)
	if b, err := os.ReadFile(name); err == nil && string(bytes.TrimSpace(b)) == boot {
		return nil
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("projections: mark %s unsynced: %w", path, err)
	}
	_, err = f.WriteString(boot + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("projections: mark %s unsynced: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

// clearUnsynced removes path's mark once the file is synced.
func clearUnsynced(path string) error {
	if err := os.Remove(unsyncedPath(path)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("projections: %w", err)
	}
	return syncDir(filepath.Dir(path))
}
