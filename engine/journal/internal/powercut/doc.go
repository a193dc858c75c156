// Package powercut proves by experiment what an acknowledged append
// survives. Its test runs the journal's embedded store on a faultfs mount
// in a child process, appends under concurrency, cuts the power at random
// moments (SIGKILL, then every write not made durable is thrown away),
// restarts on what is left and checks that every acknowledged event is
// there exactly once, that the stream recovers and that the projection
// rebuilds; with the sync interval it must find acknowledged events lost.
//
// The package holds only that test. It needs /dev/fuse (and root, or
// fusermount3) and skips without: see README.md, "Durability".
package powercut
