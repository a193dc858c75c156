package faultfs

import (
	"context"
	"os"
	"path/filepath"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// node is a loopback node that reports to its FS every operation that
// changes what a power cut would keep.
type node struct {
	*fs.LoopbackNode
	fs *FS
}

var (
	_ fs.NodeWrapChilder    = (*node)(nil)
	_ fs.NodeCreater        = (*node)(nil)
	_ fs.NodeOpener         = (*node)(nil)
	_ fs.NodeOpendirHandler = (*node)(nil)
	_ fs.NodeSetattrer      = (*node)(nil)
	_ fs.NodeMkdirer        = (*node)(nil)
	_ fs.NodeUnlinker       = (*node)(nil)
	_ fs.NodeRmdirer        = (*node)(nil)
	_ fs.NodeRenamer        = (*node)(nil)
	_ fs.NodeLinker         = (*node)(nil)
	_ fs.NodeSymlinker      = (*node)(nil)
	_ fs.NodeMknoder        = (*node)(nil)
)

func (n *node) WrapChild(ctx context.Context, ops fs.InodeEmbedder) fs.InodeEmbedder {
	return &node{LoopbackNode: ops.(*fs.LoopbackNode), fs: n.fs}
}

// path returns the backing path of name in n, or of n when name is "".
func (n *node) path(name string) string {
	return filepath.Join(n.fs.backing, n.Path(nil), name)
}

// syncFlags are the open flags that make every write durable. The backing
// file is opened without them: the model, not the disk, keeps durability.
const syncFlags = syscall.O_SYNC | syscall.O_DSYNC

func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	n.fs.mu.Lock()
	defer n.fs.mu.Unlock()
	if n.fs.refuse() {
		return nil, nil, 0, syscall.ENOSPC
	}
	ch, fh, fuseFlags, errno := n.LoopbackNode.Create(ctx, name, flags&^syncFlags, mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	if st, err := lstat(n.path(name)); err == nil {
		delete(n.fs.live, st.Ino) // a new file: nothing of it is durable
	}
	// The child is linked under n only once Create returns.
	h, errno := n.fs.newHandle(ch.Operations().(*node), n.path(name), fh, flags)
	if errno != 0 {
		fh.(fs.FileReleaser).Release(ctx)
		return nil, nil, 0, errno
	}
	return ch, h, fuseFlags, 0
}

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	n.fs.mu.Lock()
	defer n.fs.mu.Unlock()
	fh, fuseFlags, errno := n.LoopbackNode.Open(ctx, flags&^syncFlags)
	if errno != 0 {
		return nil, 0, errno
	}
	h, errno := n.fs.newHandle(n, n.path(""), fh, flags)
	if errno != 0 {
		fh.(fs.FileReleaser).Release(ctx)
		return nil, 0, errno
	}
	if flags&syscall.O_TRUNC != 0 {
		h.in.truncated(0)
	}
	return h, fuseFlags, 0
}

// newHandle wraps a loopback file of n, at backing path p. f.mu is held.
func (f *FS) newHandle(n *node, p string, fh fs.FileHandle, flags uint32) (*handle, syscall.Errno) {
	in, err := f.liveAt(p)
	if err != nil {
		return nil, fs.ToErrno(err)
	}
	if in.dir {
		return nil, syscall.EISDIR
	}
	rd, err := os.Open(p)
	if err != nil {
		return nil, fs.ToErrno(err)
	}
	return &handle{LoopbackFile: fh.(*fs.LoopbackFile), n: n, in: in, rd: rd, sync: flags&syscall.O_DSYNC != 0}, 0
}

func (n *node) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	ds, errno := fs.NewLoopbackDirStream(n.path(""))
	if errno != 0 {
		return nil, 0, errno
	}
	return &dirHandle{DirStream: ds, n: n}, 0, 0
}

func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if f != nil { // the handle records a truncation
		return n.LoopbackNode.Setattr(ctx, f, in, out)
	}
	n.fs.mu.Lock()
	defer n.fs.mu.Unlock()
	if errno := n.LoopbackNode.Setattr(ctx, nil, in, out); errno != 0 {
		return errno
	}
	if size, ok := in.GetSize(); ok {
		file, err := n.fs.liveAt(n.path(""))
		if err != nil {
			return fs.ToErrno(err)
		}
		file.truncated(int64(size))
	}
	return 0
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	n.fs.mu.Lock()
	defer n.fs.mu.Unlock()
	if n.fs.refuse() {
		return nil, syscall.ENOSPC
	}
	ch, errno := n.LoopbackNode.Mkdir(ctx, name, mode, out)
	if errno != 0 {
		return nil, errno
	}
	if st, err := lstat(n.path(name)); err == nil {
		n.fs.live[st.Ino] = newDir()
	}
	return ch, 0
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	n.fs.mu.Lock()
	defer n.fs.mu.Unlock()
	st, _ := lstat(n.path(name))
	if errno := n.LoopbackNode.Unlink(ctx, name); errno != 0 {
		return errno
	}
	if st != nil && st.Nlink <= 1 {
		delete(n.fs.live, st.Ino)
	}
	return 0
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	n.fs.mu.Lock()
	defer n.fs.mu.Unlock()
	st, _ := lstat(n.path(name))
	if errno := n.LoopbackNode.Rmdir(ctx, name); errno != 0 {
		return errno
	}
	if st != nil {
		delete(n.fs.live, st.Ino)
	}
	return 0
}

func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	n.fs.mu.Lock()
	defer n.fs.mu.Unlock()
	src, _ := lstat(n.path(name))
	dst, _ := lstat(np.path(newName))
	if errno := n.LoopbackNode.Rename(ctx, name, newParent, newName, flags); errno != 0 {
		return errno
	}
	const exchange = 2 // RENAME_EXCHANGE
	if dst != nil && flags&exchange == 0 && (src == nil || dst.Ino != src.Ino) &&
		(dst.Mode&syscall.S_IFMT == syscall.S_IFDIR || dst.Nlink <= 1) {
		delete(n.fs.live, dst.Ino) // replaced
	}
	return 0
}

// Hard links, symbolic links, device nodes and unnamed temporary files are
// not modelled.

func (n *node) Link(context.Context, fs.InodeEmbedder, string, *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, syscall.ENOTSUP
}

func (n *node) Symlink(context.Context, string, string, *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, syscall.ENOTSUP
}

func (n *node) Mknod(context.Context, string, uint32, uint32, *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, syscall.ENOTSUP
}

func (n *node) Tmpfile(context.Context, uint32, uint32, *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.ENOTSUP
}

// handle is an open file: a loopback file whose writes, truncations and
// syncs are reported to the model.
type handle struct {
	*fs.LoopbackFile
	n    *node
	in   *inode
	rd   *os.File // reads what a sync makes durable
	sync bool     // opened O_SYNC or O_DSYNC
}

// PassthroughFd refuses the kernel's passthrough, which would take writes
// past the model.
func (h *handle) PassthroughFd() (int, bool) { return 0, false }

func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	f := h.n.fs
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refuse() {
		return 0, syscall.ENOSPC
	}
	w, errno := h.LoopbackFile.Write(ctx, data, off)
	h.in.wrote(off, int64(w))
	f.stats.Writes++
	if errno == 0 && h.sync {
		f.stats.SyncWrites++
		errno = f.syncFile(h)
	}
	return w, errno
}

func (h *handle) Writev(ctx context.Context, data [][]byte, off int64) (uint32, syscall.Errno) {
	var total uint32
	for _, b := range data {
		w, errno := h.Write(ctx, b, off)
		total += w
		off += int64(w)
		if errno != 0 || int(w) < len(b) {
			return total, errno
		}
	}
	return total, 0
}

func (h *handle) Allocate(ctx context.Context, off, size uint64, mode uint32) syscall.Errno {
	f := h.n.fs
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refuse() {
		return syscall.ENOSPC
	}
	errno := h.LoopbackFile.Allocate(ctx, off, size, mode)
	if errno == 0 {
		h.in.wrote(int64(off), int64(size))
	}
	return errno
}

func (h *handle) Setattr(ctx context.Context, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	f := h.n.fs
	f.mu.Lock()
	defer f.mu.Unlock()
	errno := h.LoopbackFile.Setattr(ctx, in, out)
	if size, ok := in.GetSize(); ok && errno == 0 {
		h.in.truncated(int64(size))
	}
	return errno
}

// Fsync makes the file durable in the model; the backing file is not
// synced (the model is what a cut keeps). On a full disk it fails, and
// the file's unsynced writes are never made durable (see SetFull).
func (h *handle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	f := h.n.fs
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stats.Syncs++
	if errno := f.refuseSync(); errno != 0 {
		h.in.dropDirty()
		return errno
	}
	return f.syncFile(h)
}

func (h *handle) Release(ctx context.Context) syscall.Errno {
	h.rd.Close()
	return h.LoopbackFile.Release(ctx)
}

// dirHandle is an open directory whose fsync is reported to the model.
type dirHandle struct {
	fs.DirStream
	n *node
}

func (d *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if r, ok := d.DirStream.(fs.FileReaddirenter); ok {
		return r.Readdirent(ctx)
	}
	if !d.HasNext() {
		return nil, 0
	}
	e, errno := d.Next()
	return &e, errno
}

func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if s, ok := d.DirStream.(fs.FileSeekdirer); ok {
		return s.Seekdir(ctx, off)
	}
	return syscall.ENOTSUP
}

func (d *dirHandle) Releasedir(ctx context.Context, flags uint32) {
	if r, ok := d.DirStream.(fs.FileReleasedirer); ok {
		r.Releasedir(ctx, flags)
		return
	}
	d.Close()
}

func (d *dirHandle) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	f := d.n.fs
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stats.DirSyncs++
	if errno := f.refuseSync(); errno != 0 {
		return errno
	}
	return f.syncDir(d.n.Path(nil))
}
