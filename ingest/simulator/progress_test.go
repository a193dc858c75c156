package simulator

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
)

// progressLines drives a progress writer with a run that moves, stalls (a
// server down: nothing answered, the same counters for a minute), moves
// again, stalls at its end while the last requests are retried, and
// finishes; it returns the lines written.
func progressLines(t *testing.T, terminal bool) []string {
	t.Helper()
	var buf bytes.Buffer
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	p := newProgressWriter(&buf, terminal, 10*time.Second, start)
	c := progressCounts{total: 1000}
	now := start
	tick := func() {
		now = now.Add(time.Second)
		p.update(now, c)
	}
	for range 3 { // nothing sent yet: installs, probes
		tick()
	}
	for range 30 {
		c.sent, c.done, c.acked = c.sent+20, c.done+15, c.acked+14
		tick()
	}
	for range 60 { // stalled
		tick()
	}
	for c.done < 990 {
		c.sent, c.done, c.acked, c.retries = min(c.sent+20, 1000), min(c.done+15, 990), c.acked+14, c.retries+1
		tick()
	}
	for range 40 { // the last requests keep failing, unchanged
		tick()
	}
	c.done, c.acked = 1000, c.acked+10
	p.finish(now.Add(time.Second), c)
	p.finish(now.Add(2*time.Second), c)
	p.update(now.Add(3*time.Second), c)
	return strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
}

func TestProgressNonTerminal(t *testing.T) {
	lines := progressLines(t, false)
	for i := 1; i < len(lines); i++ {
		if lines[i] == lines[i-1] {
			t.Errorf("line %d repeats the last: %q", i, lines[i])
		}
	}
	done := 0
	for i, l := range lines {
		if strings.HasPrefix(l, "simulate: done:") {
			done++
			if i != len(lines)-1 {
				t.Errorf("the closing line is not last: %q", lines)
			}
		}
	}
	if done != 1 {
		t.Errorf("%d closing lines, want 1:\n%s", done, strings.Join(lines, "\n"))
	}
	// 10 % steps and one line per quiet period while moving, nothing while
	// stalled: far fewer lines than ticks.
	if len(lines) < 5 || len(lines) > 25 {
		t.Errorf("%d lines:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	// Each 10 % step has its line.
	steps := map[int]bool{}
	for _, l := range lines {
		var pct int
		if _, err := fmt.Sscanf(l, "simulate: %d%%", &pct); err == nil {
			steps[pct/10] = true
		}
	}
	for step := 1; step <= 9; step++ {
		if !steps[step] {
			t.Errorf("no line at the %d0 %% step:\n%s", step, strings.Join(lines, "\n"))
		}
	}
}

func TestProgressTerminal(t *testing.T) {
	lines := progressLines(t, true)
	for i := 1; i < len(lines); i++ {
		if lines[i] == lines[i-1] {
			t.Errorf("line %d repeats the last: %q", i, lines[i])
		}
	}
	// A line per tick while the counters move, none while they do not.
	if n := len(lines); n < 60 || n > 120 {
		t.Errorf("%d lines on a terminal", n)
	}
}
