package simulator

import (
	"fmt"
	"io"
	"time"
)

// DefaultProgressQuiet is the longest a progress line waits, on a
// non-terminal, while the counters move between two 10 % steps.
const DefaultProgressQuiet = 10 * time.Second

// progressCounts is what a progress line reports.
type progressCounts struct {
	done, total                                 int64 // requests answered for good, of the planned ones
	sent, acked, duplicates, retries, badRefuse int64
}

// progressWriter writes the progress lines of a run. Every line tells
// something new: a line is written only when the counters moved since the
// last one. On a terminal that is at every update; elsewhere (a log file, a
// CI job) at each 10 % step of the answered requests, or after quiet at
// most. finish writes the one closing line.
type progressWriter struct {
	out      io.Writer
	terminal bool
	quiet    time.Duration

	start    time.Time
	last     progressCounts
	lastAt   time.Time
	step     int64 // the last 10 % step written
	written  bool
	finished bool
}

func newProgressWriter(out io.Writer, terminal bool, quiet time.Duration, start time.Time) *progressWriter {
	if quiet <= 0 {
		quiet = DefaultProgressQuiet
	}
	return &progressWriter{out: out, terminal: terminal, quiet: quiet, start: start, lastAt: start}
}

func (c progressCounts) tenth() int64 {
	if c.total <= 0 {
		return 10
	}
	return min(10, c.done*10/c.total)
}

// update writes a line about c at now when it is due.
func (p *progressWriter) update(now time.Time, c progressCounts) {
	if p.finished || (p.written && c == p.last) || c == (progressCounts{total: c.total}) {
		return
	}
	step := c.tenth()
	if !p.terminal && step <= p.step && now.Sub(p.lastAt) < p.quiet {
		return
	}
	rate := float64(c.acked-p.last.acked) / max(now.Sub(p.lastAt).Seconds(), 1e-3)
	fmt.Fprintf(p.out, "simulate: %3d%%  answered %d/%d  sent %d  acked %d  duplicates %d  retries %d  bad refused %d  %.0f events/s\n",
		percent(c), c.done, c.total, c.sent, c.acked, c.duplicates, c.retries, c.badRefuse, rate)
	p.last, p.lastAt, p.step, p.written = c, now, step, true
}

// finish writes the closing line, once.
func (p *progressWriter) finish(now time.Time, c progressCounts) {
	if p.finished {
		return
	}
	p.finished = true
	elapsed := now.Sub(p.start)
	rate := float64(c.acked) / max(elapsed.Seconds(), 1e-3)
	fmt.Fprintf(p.out, "simulate: done: answered %d/%d  sent %d  acked %d  duplicates %d  retries %d  bad refused %d  in %s (%.0f events/s)\n",
		c.done, c.total, c.sent, c.acked, c.duplicates, c.retries, c.badRefuse, elapsed.Round(time.Millisecond), rate)
}

func percent(c progressCounts) int64 {
	if c.total <= 0 {
		return 100
	}
	return min(100, c.done*100/c.total)
}
