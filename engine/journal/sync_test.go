package journal

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/engine/journal/internal/faultfs"
)

// TestSyncerBlocks checks on a faultfs mount what a syncer makes durable:
// the newest block's new bytes, blocks added since the last round and
// their directory entries; with every, rewritten old blocks too. The whole
// journal is checked by the power-cut test.
func TestSyncerBlocks(t *testing.T) {
	for _, every := range []bool{false, true} {
		t.Run(map[bool]string{false: "append", true: "every"}[every], func(t *testing.T) {
			backing, mnt := t.TempDir(), t.TempDir()
			msgs := streamMsgsDir(backing, "S")
			if err := os.MkdirAll(msgs, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(msgs, "1.blk"), []byte("one"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(msgs, "2.blk"), []byte("two"), 0o600); err != nil {
				t.Fatal(err)
			}
			fsys, err := faultfs.Mount(backing, mnt)
			if errors.Is(err, faultfs.ErrNoFUSE) {
				t.Skipf("needs FUSE: %v", err)
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { fsys.Unmount() })

			var stats commitCounters
			s, err := newSyncer(mnt, map[string]bool{"S": every}, &stats, nil)
			if err != nil {
				t.Fatal(err)
			}
			dir := streamMsgsDir(mnt, "S")
			appendTo := func(name, data string) {
				f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := f.WriteString(data); err != nil {
					t.Fatal(err)
				}
				f.Close()
			}
			appendTo("1.blk", " rewritten") // an old block: synced only with every
			appendTo("2.blk", " more")
			appendTo("3.blk", "three")
			appendTo("4.blk", "four")
			if err := s.sync(context.Background(), "S", nil); err != nil {
				t.Fatal(err)
			}
			appendTo("4.blk", " lost") // after the sync
			s.close()
			if err := fsys.Cut(); err != nil {
				t.Fatal(err)
			}

			want := map[string]string{"1.blk": "one", "2.blk": "two more", "3.blk": "three", "4.blk": "four"}
			if every {
				want["1.blk"] = "one rewritten"
			}
			for name, data := range want {
				b, err := os.ReadFile(filepath.Join(msgs, name))
				if err != nil || string(b) != data {
					t.Errorf("%s after the cut: %q, %v; want %q", name, b, err, data)
				}
			}
			if st := stats.snapshot(); st.Syncs != 1 || st.Synced != 1 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

// TestSyncerFailureSticks: once a sync fails, every later one fails too,
// even if the files are back: the kernel may have dropped what the failed
// sync did not write.
func TestSyncerFailureSticks(t *testing.T) {
	store := t.TempDir()
	msgs := streamMsgsDir(store, "S")
	if err := os.MkdirAll(msgs, 0o700); err != nil {
		t.Fatal(err)
	}
	var stats commitCounters
	s, err := newSyncer(store, map[string]bool{"S": true}, &stats, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	ctx := context.Background()
	if err := s.sync(ctx, "S", nil); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(msgs); err != nil {
		t.Fatal(err)
	}
	first := s.sync(ctx, "S", nil)
	if first == nil {
		t.Fatal("sync of a removed directory succeeded")
	}
	if err := os.MkdirAll(msgs, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := s.sync(ctx, "S", nil); err == nil || err.Error() != first.Error() {
		t.Errorf("sync after a failure: %v, want %v", err, first)
	}
}

// TestSyncerRoundsOverlap: a round does not wait for the one syncing before
// it, so a slow sync of one stream does not hold up the writes to another
// (or the next writes to the same one).
func TestSyncerRoundsOverlap(t *testing.T) {
	store := t.TempDir()
	for _, name := range []string{"A", "B"} {
		if err := os.MkdirAll(streamMsgsDir(store, name), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	var stats commitCounters
	s, err := newSyncer(store, map[string]bool{"A": true, "B": true}, &stats, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	inA, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	defer free() // before s.close, which waits for the round
	s.syncing = func(stream string) {
		if stream == "A" {
			close(inA)
			<-release
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	doneA := make(chan error, 1)
	go func() { doneA <- s.sync(ctx, "A", nil) }()
	<-inA
	if err := s.sync(ctx, "B", nil); err != nil {
		t.Fatalf("sync of B while a round syncs A: %v", err)
	}
	select {
	case err := <-doneA:
		t.Fatalf("the round syncing A ended before it was released: %v", err)
	default:
	}
	free()
	if err := <-doneA; err != nil {
		t.Fatal(err)
	}
}
