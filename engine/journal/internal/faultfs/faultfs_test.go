package faultfs_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/transferd/transferd/engine/journal/internal/faultfs"
)

// mount mounts a faultfs of a fresh backing directory holding the files of
// seed, or skips the test where FUSE is unavailable.
func mount(t *testing.T, seed map[string]string) (f *faultfs.FS, backing, mnt string) {
	t.Helper()
	backing, mnt = t.TempDir(), t.TempDir()
	for name, data := range seed {
		p := filepath.Join(backing, name)
		must(t, os.MkdirAll(filepath.Dir(p), 0o700))
		must(t, os.WriteFile(p, []byte(data), 0o600))
	}
	f, err := faultfs.Mount(backing, mnt)
	if errors.Is(err, faultfs.ErrNoFUSE) {
		t.Skipf("faultfs needs FUSE (/dev/fuse, and root or fusermount3): %v", err)
	}
	must(t, err)
	t.Cleanup(func() { f.Unmount() })
	return f, backing, mnt
}

// TestCut: after a cut, the backing directory holds what was synced and
// nothing else.
func TestCut(t *testing.T) {
	f, backing, mnt := mount(t, map[string]string{"old": "old data", "dir/kept": "kept"})
	at := func(name string) string { return filepath.Join(mnt, name) }

	// Synced data and size survive; later writes do not.
	synced, err := os.OpenFile(at("synced"), os.O_CREATE|os.O_RDWR, 0o600)
	must(t, err)
	write(t, synced, "durable")
	must(t, synced.Sync())
	write(t, synced, " and lost")
	must(t, synced.Close())

	// Written, never synced: gone, name and all.
	must(t, os.WriteFile(at("unsynced"), []byte("lost"), 0o600))

	// O_DSYNC: every write is durable.
	dsync, err := os.OpenFile(at("dsync"), os.O_CREATE|os.O_WRONLY|os.O_SYNC, 0o600)
	must(t, err)
	write(t, dsync, "each write")
	must(t, dsync.Close())

	// An existing file overwritten and truncated without a sync keeps its
	// old content.
	must(t, os.WriteFile(at("old"), []byte("new"), 0o600))

	// A rename is durable once its directory is synced; one not synced
	// leaves the old names.
	must(t, os.WriteFile(at("dir/tmp"), []byte("atomic"), 0o600))
	tmp, err := os.OpenFile(at("dir/tmp"), os.O_RDWR, 0)
	must(t, err)
	must(t, tmp.Sync())
	must(t, tmp.Close())
	must(t, os.Rename(at("dir/tmp"), at("dir/final")))
	must(t, os.Rename(at("dir/kept"), at("dir/moved"))) // not synced
	d, err := os.Open(at("dir"))
	must(t, err)
	must(t, d.Sync())
	must(t, d.Close())
	must(t, os.Rename(at("dir/final"), at("dir/later"))) // after the sync

	// An unlink without a directory sync is undone.
	must(t, os.Remove(at("dir/later")))

	must(t, f.Cut())
	want := map[string]string{
		"old":       "old data",
		"synced":    "durable",
		"dsync":     "each write",
		"dir/final": "atomic",
		"dir/moved": "kept",
	}
	got := map[string]string{}
	must(t, filepath.WalkDir(backing, func(p string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(backing, p)
		got[rel] = string(b)
		return err
	}))
	for name, data := range want {
		if got[name] != data {
			t.Errorf("%s after the cut: %q, want %q", name, got[name], data)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s survived the cut", name)
		}
	}
	if s := f.Stats(); s.Syncs < 2 || s.DirSyncs != 1 || s.SyncWrites != 1 {
		t.Errorf("stats %+v", s)
	}
}

func write(t *testing.T, f *os.File, s string) {
	t.Helper()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestFull: on a full disk writes and syncs fail with ENOSPC; once space is
// freed they work again, and what a failed sync did not make durable never
// becomes durable by a later sync of the same writes, only by writing
// again.
func TestFull(t *testing.T) {
	f, backing, mnt := mount(t, nil)
	at := func(name string) string { return filepath.Join(mnt, name) }

	lost, err := os.OpenFile(at("lost"), os.O_CREATE|os.O_RDWR, 0o600)
	must(t, err)
	defer lost.Close()
	write(t, lost, "written before the disk filled")

	f.SetFull(true)
	if _, err := lost.WriteString(" more"); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("write on a full disk: %v, want ENOSPC", err)
	}
	if err := lost.Sync(); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("fsync on a full disk: %v, want ENOSPC", err)
	}
	if err := os.WriteFile(at("new"), []byte("x"), 0o600); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("create on a full disk: %v, want ENOSPC", err)
	}
	if err := os.Mkdir(at("dir"), 0o700); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("mkdir on a full disk: %v, want ENOSPC", err)
	}
	if s := f.Stats(); s.Refused < 4 {
		t.Errorf("stats %+v: want at least 4 refusals", s)
	}

	f.SetFull(false)
	must(t, lost.Sync()) // succeeds, without the dropped write
	b, err := os.ReadFile(at("lost"))
	must(t, err)
	if string(b) != "written before the disk filled" { // still readable, as from the page cache
		t.Errorf("lost reads %q", b)
	}
	// Written again into a new file and synced: durable.
	must(t, os.WriteFile(at("copy"), b, 0o600))
	c, err := os.OpenFile(at("copy"), os.O_RDWR, 0)
	must(t, err)
	must(t, c.Sync())
	must(t, c.Close())
	d, err := os.Open(mnt)
	must(t, err)
	must(t, d.Sync())
	must(t, d.Close())
	must(t, lost.Close())

	must(t, f.Cut())
	got, err := os.ReadFile(filepath.Join(backing, "copy"))
	if err != nil || string(got) != "written before the disk filled" {
		t.Errorf("copy after the cut: %q, %v", got, err)
	}
	got, err = os.ReadFile(filepath.Join(backing, "lost"))
	if err != nil || strings.Contains(string(got), "written") {
		t.Errorf("lost after the cut: %q, %v; want its unsynced bytes gone", got, err)
	}
}
