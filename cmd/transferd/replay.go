package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/transferd/transferd/projections"
)

const replayAbout = `Rebuild the bbolt projection from the MIGRATIONS stream, or verify it.

  transferd replay --verify    rebuild into a temporary file up to the live
                               projection's checkpoint and compare every
                               transfer byte for byte; exit 1 and list the
                               differences when they differ
  transferd replay --rebuild   rebuild from the first event and swap the new
                               file in place of the old one

Both read the stream from the data directory (stop serve first: the
embedded NATS store is locked while it runs) or from an external NATS with
--nats-url.`

// projectionFile is where serve keeps the projection inside --data.
func projectionFile(data string) string { return filepath.Join(data, "projection.db") }

func runReplay(ctx context.Context, args []string, getenv env, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("replay", replayAbout, stderr)
	var store storeFlags
	store.register(fs)
	var verify, rebuild, quiet bool
	var maxDiffs int
	fs.BoolVar(&verify, "verify", false, "compare a rebuild with the live projection")
	fs.BoolVar(&rebuild, "rebuild", false, "rebuild the projection and swap it in")
	fs.IntVar(&maxDiffs, "max-diffs", 50, "differences to print in full with --verify")
	fs.BoolVar(&quiet, "quiet", false, "no progress on standard error")
	if err := parse(fs, args, getenv); err != nil {
		return err
	}
	if verify == rebuild {
		return usageError("replay: give exactly one of --verify or --rebuild")
	}
	log, _ := newLogger(stderr, "warn")
	j, err := store.openJournal(ctx, log)
	if err != nil {
		return err
	}
	defer j.Close()
	path := projectionFile(store.data)
	var progress func(done, total uint64)
	if !quiet {
		p := newProgress(stderr, "events")
		defer p.finish()
		progress = p.update
	}

	if rebuild {
		start := time.Now()
		if err := projections.Rebuild(ctx, j, path, progress); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "rebuilt %s in %s\n", path, time.Since(start).Round(time.Millisecond))
		return nil
	}
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("replay --verify: no projection at %s (run serve, or replay --rebuild): %w", path, err)
	}
	diffs, err := projections.Verify(ctx, j, path, progress)
	if errors.Is(err, projections.ErrOldSchema) || errors.Is(err, projections.ErrUnsynced) {
		return fmt.Errorf("replay --verify: %w: nothing to compare; serve rebuilds it when it starts, or run replay --rebuild", err)
	}
	if err != nil {
		return err
	}
	if len(diffs) == 0 {
		fmt.Fprintf(stdout, "verified %s: the rebuild equals the live projection\n", path)
		return nil
	}
	for i, d := range diffs {
		if i == maxDiffs {
			fmt.Fprintf(stdout, "… and %d more\n", len(diffs)-maxDiffs)
			break
		}
		fmt.Fprintf(stdout, "%s %s\n  live:    %s\n  rebuilt: %s\n", d.Bucket, d.Name(), d.Text(d.Live), d.Text(d.Rebuilt))
	}
	return fmt.Errorf("replay --verify: %d differences between the live projection and a rebuild", len(diffs))
}

// progress draws a progress bar on a terminal, or a line every few
// seconds elsewhere.
type progress struct {
	w     io.Writer
	unit  string
	tty   bool
	start time.Time
	last  time.Time
	done  uint64
	total uint64
}

func newProgress(w io.Writer, unit string) *progress {
	p := &progress{w: w, unit: unit, start: time.Now()}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *progress) update(done, total uint64) {
	p.done, p.total = done, total
	now := time.Now()
	every := 5 * time.Second
	if p.tty {
		every = 100 * time.Millisecond
	}
	if now.Sub(p.last) < every && done != total {
		return
	}
	p.last = now
	p.draw(now)
}

func (p *progress) draw(now time.Time) {
	rate := float64(p.done) / max(now.Sub(p.start).Seconds(), 1e-3)
	pct := 100.0
	if p.total > 0 {
		pct = 100 * float64(p.done) / float64(p.total)
	}
	eta := "-"
	if rate > 0 && p.total >= p.done {
		eta = (time.Duration(float64(p.total-p.done)/rate) * time.Second).Round(time.Second).String()
	}
	if !p.tty {
		fmt.Fprintf(p.w, "%d/%d %s (%.0f%%), %.0f/s, ETA %s\n", p.done, p.total, p.unit, pct, rate, eta)
		return
	}
	const width = 30
	filled := int(pct / 100 * width)
	bar := make([]byte, width)
	for i := range bar {
		bar[i] = ' '
		if i < filled {
			bar[i] = '#'
		}
	}
	fmt.Fprintf(p.w, "\r[%s] %5.1f%% %d/%d %s, %.0f/s, ETA %s\033[K", bar, pct, p.done, p.total, p.unit, rate, eta)
}

func (p *progress) finish() {
	if p.done > 0 || p.total > 0 {
		p.draw(time.Now())
	}
	if p.tty {
		fmt.Fprintln(p.w)
	}
}
