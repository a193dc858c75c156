// Package faultfs is a FUSE file system for power-cut tests. It passes
// every operation through to a backing directory and keeps, beside it, the
// state the disk would be left in by a power cut: only what was made
// durable. After Unmount, Cut rewrites the backing directory to that state,
// throwing away every write that was not.
//
// What it models, per inode (so renames and unlinks of open files behave):
//
//   - A file's data and size become durable on fsync or fdatasync of any of
//     its descriptors, and on every write through a descriptor opened with
//     O_SYNC or O_DSYNC. Writes, truncations and fallocate before that are
//     lost by a cut; the durable image holds the bytes as they were at the
//     sync.
//   - Names (creating, unlinking and renaming files and directories) become
//     durable on fsync of their directory, which records the directory's
//     entries as they are. Like ext4 and xfs, whose fsync of a file commits
//     the file's own directory entry, an fsync of a file (or directory) also
//     makes its current path durable, from the root down; other paths still
//     naming it in the durable image are dropped.
//   - A directory renamed keeps its durable entries, as an inode does.
//   - A full disk (SetFull): writes, fallocate, creations and syncs fail
//     with ENOSPC and change nothing; a failed fsync makes the file's
//     unsynced writes never durable, as a failed writeback on Linux does.
//     FailSyncs fails syncs alone (EIO, say), with the same effect.
//
// What it does not model: reordering or tearing within a sync (a sync is
// atomic and complete), a sync that fails otherwise, a write made durable by the
// kernel's own writeback before any sync (a cut loses every unsynced
// write), extended attributes, ownership, modes and times (kept as the
// backing directory has them, or created 0600 and 0700 by Cut), hard links,
// symbolic links and device nodes (refused with ENOTSUP), and files changed
// in the backing directory behind the mount's back.
//
// The file system holds the durable image in memory and reads the whole
// backing directory at Mount: it is meant for test-sized trees. Mounting
// needs /dev/fuse and either root (a direct mount) or fusermount3.
package faultfs
