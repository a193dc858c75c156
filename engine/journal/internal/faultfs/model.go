package faultfs

import (
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// inode is the durable state of one file or directory of the backing
// directory: what a power cut would leave of it.
type inode struct {
	dir bool

	// A file's durable bytes, and what changed since its last sync.
	data    []byte
	dirty   []span
	truncTo int64 // the smallest size set since the last sync; -1 for none

	// A directory's durable entries.
	entries map[string]*inode
}

// span is a written byte range [off, end).
type span struct{ off, end int64 }

func newFile() *inode { return &inode{truncTo: -1} }
func newDir() *inode  { return &inode{dir: true, entries: map[string]*inode{}} }

// wrote records a write of n bytes at off.
func (in *inode) wrote(off, n int64) {
	if n <= 0 {
		return
	}
	if k := len(in.dirty); k > 0 {
		last := &in.dirty[k-1]
		if off <= last.end && off+n >= last.off {
			last.off, last.end = min(last.off, off), max(last.end, off+n)
			return
		}
	}
	in.dirty = append(in.dirty, span{off, off + n})
}

// truncated records a change of size.
func (in *inode) truncated(size int64) {
	if in.truncTo < 0 || size < in.truncTo {
		in.truncTo = size
	}
}

// sync makes the file's current content durable: size bytes, of which the
// dirty spans are read from r.
func (in *inode) sync(r io.ReaderAt, size int64) error {
	if in.truncTo >= 0 && in.truncTo < int64(len(in.data)) {
		in.data = in.data[:in.truncTo]
	}
	if size <= int64(len(in.data)) {
		in.data = in.data[:size]
	} else {
		in.data = append(in.data, make([]byte, size-int64(len(in.data)))...)
	}
	for _, s := range in.dirty {
		end := min(s.end, size)
		if s.off >= end {
			continue
		}
		if _, err := r.ReadAt(in.data[s.off:end], s.off); err != nil && err != io.EOF {
			return err
		}
	}
	in.dirty, in.truncTo = in.dirty[:0], -1
	return nil
}

// dropDirty forgets the writes and truncations since the last sync, as a
// failed writeback does: a later sync makes durable only what is written
// after it.
func (in *inode) dropDirty() {
	in.dirty, in.truncTo = in.dirty[:0], -1
}

// scan reads the tree under dir into inodes, all durable as they are, and
// indexes them by their backing inode number.
func scan(dir string, live map[uint64]*inode) (*inode, error) {
	root := newDir()
	st, err := lstat(dir)
	if err != nil {
		return nil, err
	}
	live[st.Ino] = root
	list, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range list {
		p := filepath.Join(dir, e.Name())
		switch {
		case e.IsDir():
			child, err := scan(p, live)
			if err != nil {
				return nil, err
			}
			root.entries[e.Name()] = child
		case e.Type().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return nil, err
			}
			st, err := lstat(p)
			if err != nil {
				return nil, err
			}
			f := newFile()
			f.data = data
			live[st.Ino] = f
			root.entries[e.Name()] = f
		default:
			return nil, fmt.Errorf("faultfs: %s: only files and directories are modelled", p)
		}
	}
	return root, nil
}

// materialize writes the durable tree under root into dir, which exists.
func materialize(root *inode, dir string) error {
	for _, name := range slices.Sorted(maps.Keys(root.entries)) {
		child, p := root.entries[name], filepath.Join(dir, name)
		if child.dir {
			if err := os.Mkdir(p, 0o700); err != nil {
				return err
			}
			if err := materialize(child, p); err != nil {
				return err
			}
			continue
		}
		if err := os.WriteFile(p, child.data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// forget drops every durable entry naming target, anywhere under d.
func forget(d, target *inode, seen map[*inode]bool) {
	if seen[d] {
		return
	}
	seen[d] = true
	for name, child := range d.entries {
		switch {
		case child == target:
			delete(d.entries, name)
		case child.dir:
			forget(child, target, seen)
		}
	}
}

// splitPath returns the components of a relative path ("" for the root).
func splitPath(rel string) []string {
	rel = strings.Trim(filepath.ToSlash(rel), "/")
	if rel == "" {
		return nil
	}
	return strings.Split(rel, "/")
}

func lstat(p string) (*syscall.Stat_t, error) {
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		return nil, &os.PathError{Op: "lstat", Path: p, Err: err}
	}
	return &st, nil
}
