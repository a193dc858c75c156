package faultfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// ErrNoFUSE means this machine cannot mount a FUSE file system: there is no
// /dev/fuse, or mounting is not permitted. Tests skip on it.
var ErrNoFUSE = errors.New("faultfs: FUSE unavailable")

// FS is a mounted faultfs. Its methods are safe for concurrent use.
type FS struct {
	backing, mountpoint string
	server              *fuse.Server

	mu      sync.Mutex
	root    *inode            // the durable tree
	live    map[uint64]*inode // the backing directory's inodes by number
	frozen  bool
	full    bool          // SetFull: writes and syncs fail with ENOSPC
	syncErr syscall.Errno // FailSyncs: syncs fail with it
	stats   Stats
	mounted bool
}

// Stats counts the operations that decide durability.
type Stats struct {
	Writes     uint64 // writes, through any descriptor
	Syncs      uint64 // fsync and fdatasync of files
	SyncWrites uint64 // writes through descriptors opened O_SYNC or O_DSYNC
	DirSyncs   uint64 // fsync of directories
	Refused    uint64 // operations failed with ENOSPC by SetFull
}

// Available reports why FUSE cannot be used here, or nil.
func Available() error {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("%w: no /dev/fuse (%v)", ErrNoFUSE, err)
	}
	return nil
}

// Mount mounts a faultfs of backing (an existing directory, whose current
// content is taken as durable) on mountpoint.
func Mount(backing, mountpoint string) (*FS, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	backing, err := filepath.Abs(backing)
	if err != nil {
		return nil, err
	}
	f := &FS{backing: backing, mountpoint: mountpoint, live: map[uint64]*inode{}}
	if f.root, err = scan(backing, f.live); err != nil {
		return nil, err
	}
	ops, err := fs.NewLoopbackRoot(backing)
	if err != nil {
		return nil, err
	}
	lb := ops.(*fs.LoopbackNode)
	root := &node{LoopbackNode: lb, fs: f}
	lb.RootData.RootNode = root
	f.server, err = fs.Mount(mountpoint, root, &fs.Options{
		MountOptions: fuse.MountOptions{
			DirectMount:   true, // as root; otherwise fusermount3
			FsName:        backing,
			Name:          "faultfs",
			DisableXAttrs: true,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: mount %s: %v", ErrNoFUSE, mountpoint, err)
	}
	f.mounted = true
	return f, nil
}

// Freeze ends durability: from now on no sync makes anything durable, as
// when the power is off. Call it after the writers are dead and before
// Unmount.
func (f *FS) Freeze() {
	f.mu.Lock()
	f.frozen = true
	f.mu.Unlock()
}

// SetFull fills the disk (full true) or frees space again (false). While
// it is full, every write, fallocate, file or directory creation and
// fsync fails with ENOSPC, and writes nothing. A failed fsync also makes
// the file's unsynced writes never durable, as Linux does after a failed
// writeback (the pages stay readable but are marked clean, and a later
// fsync succeeds without them): only what is written again after it, and
// synced, is.
func (f *FS) SetFull(full bool) {
	f.mu.Lock()
	f.full = full
	f.mu.Unlock()
}

// FailSyncs makes every fsync of a file or directory fail with errno (an
// I/O error, say) while writes succeed, as when writeback fails; 0 ends
// it. A failed fsync drops the file's unsynced writes as on a full disk.
func (f *FS) FailSyncs(errno syscall.Errno) {
	f.mu.Lock()
	f.syncErr = errno
	f.mu.Unlock()
}

// refuse reports whether the disk is full, counting the refusal. f.mu is
// held.
func (f *FS) refuse() bool {
	if f.full {
		f.stats.Refused++
	}
	return f.full
}

// refuseSync returns the error a sync fails with now, or 0, counting the
// refusal. f.mu is held.
func (f *FS) refuseSync() syscall.Errno {
	switch {
	case f.full:
		f.stats.Refused++
		return syscall.ENOSPC
	case f.syncErr != 0:
		f.stats.Refused++
		return f.syncErr
	}
	return 0
}

// Unmount unmounts the file system, retrying for a few seconds while it is
// busy (descriptors of a killed process are released asynchronously).
// Unmount is idempotent.
func (f *FS) Unmount() error {
	f.mu.Lock()
	mounted := f.mounted
	f.mounted = false
	f.mu.Unlock()
	if !mounted {
		return nil
	}
	var err error
	for range 50 {
		if err = f.server.Unmount(); err == nil {
			f.server.Wait()
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("faultfs: unmount %s: %w", f.mountpoint, err)
}

// Cut cuts the power: it unmounts the file system if need be and rewrites
// the backing directory to hold exactly what was made durable.
func (f *FS) Cut() error {
	f.Freeze()
	if err := f.Unmount(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	list, err := os.ReadDir(f.backing)
	if err != nil {
		return err
	}
	for _, e := range list {
		if err := os.RemoveAll(filepath.Join(f.backing, e.Name())); err != nil {
			return err
		}
	}
	return materialize(f.root, f.backing)
}

// Stats returns the counts so far.
func (f *FS) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stats
}

// liveAt returns the inode at path p of the backing directory (absolute),
// registering one found there for the first time (as durable, with its
// current content).
func (f *FS) liveAt(p string) (*inode, error) {
	st, err := lstat(p)
	if err != nil {
		return nil, err
	}
	if in := f.live[st.Ino]; in != nil {
		return in, nil
	}
	var in *inode
	switch st.Mode & syscall.S_IFMT {
	case syscall.S_IFDIR:
		in = newDir()
	case syscall.S_IFREG:
		in = newFile()
		if in.data, err = os.ReadFile(p); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("faultfs: %s: only files and directories are modelled", p)
	}
	f.live[st.Ino] = in
	return in, nil
}

// linkPath makes rel's current path durable, from the root down: each
// directory's durable entry for the next component names the inode that
// is there now, and no other durable name is left for it.
func (f *FS) linkPath(rel string) error {
	d, p := f.root, f.backing
	for _, name := range splitPath(rel) {
		p = filepath.Join(p, name)
		child, err := f.liveAt(p)
		if err != nil {
			return err
		}
		if d.entries[name] != child {
			forget(f.root, child, map[*inode]bool{})
			d.entries[name] = child
		}
		if !child.dir {
			break
		}
		d = child
	}
	return nil
}

// syncFile makes h's file durable: data, size and path. f.mu is held.
func (f *FS) syncFile(h *handle) syscall.Errno {
	if f.frozen {
		return 0
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(h.rd.Fd()), &st); err != nil {
		return fs.ToErrno(err)
	}
	if err := h.in.sync(h.rd, st.Size); err != nil {
		return fs.ToErrno(err)
	}
	if st.Nlink == 0 { // unlinked: nothing names it
		return 0
	}
	return fs.ToErrno(f.linkPath(h.n.Path(nil)))
}

// syncDir makes the directory at rel durable: its path, and its entries as
// they are now. f.mu is held.
func (f *FS) syncDir(rel string) syscall.Errno {
	if f.frozen {
		return 0
	}
	if err := f.linkPath(rel); err != nil {
		return fs.ToErrno(err)
	}
	p := filepath.Join(f.backing, rel)
	d, err := f.liveAt(p)
	if err != nil {
		return fs.ToErrno(err)
	}
	list, err := os.ReadDir(p)
	if err != nil {
		return fs.ToErrno(err)
	}
	entries := make(map[string]*inode, len(list))
	for _, e := range list {
		child, err := f.liveAt(filepath.Join(p, e.Name()))
		if err != nil {
			return fs.ToErrno(err)
		}
		if d.entries[e.Name()] != child {
			forget(f.root, child, map[*inode]bool{})
		}
		entries[e.Name()] = child
	}
	d.entries = entries
	return 0
}
