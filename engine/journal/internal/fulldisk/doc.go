// Package fulldisk proves by experiment that transferd comes back on its
// own after its disk was full: its test runs a serving stack (journal with
// --sync always, ingest, query API and projector) on a faultfs mount, fills
// the disk, frees it, and checks the answers and the stream.
//
// The package holds only that test. It needs /dev/fuse (and root, or
// fusermount3) and skips without, except under CI=true, where it fails.
package fulldisk
