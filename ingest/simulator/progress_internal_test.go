package simulator

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncBuffer) lines() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Split(strings.TrimSuffix(w.b.String(), "\n"), "\n")[:strings.Count(w.b.String(), "\n")]
}

// On a non-terminal, progress used to repeat its last line every interval
// while nothing moved (a stalled server, the tail of a run): every line it
// writes now reports something new.
func TestProgressSkipsRepeats(t *testing.T) {
	s := &sender{}
	var out syncBuffer
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); s.progress(&out, time.Millisecond, 10, stop) }()
	defer func() { close(stop); <-done }()

	waitLines := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); len(out.lines()) < n; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("want %d progress lines, have %q", n, out.lines())
			}
		}
	}
	s.started.Add(1)
	s.acked.Add(1)
	waitLines(1)
	time.Sleep(30 * time.Millisecond) // many intervals with nothing new
	s.acked.Add(1)
	waitLines(2)
	time.Sleep(30 * time.Millisecond)
	lines := out.lines()
	if len(lines) != 2 {
		t.Fatalf("progress wrote %d lines for two changes: %q", len(lines), lines)
	}
	for i := 1; i < len(lines); i++ {
		if lines[i] == lines[i-1] {
			t.Errorf("line %d repeats line %d: %q", i, i-1, lines[i])
		}
	}
}
