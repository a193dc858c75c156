package main

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/transferd/transferd/api/client"
)

// importerConfig is what `transferd work run` plays: importers that claim
// uploads and report them, failing a deterministic share.
type importerConfig struct {
	Importers int
	// FailRate is the share of uploads failed for good (not retryable);
	// RetryRate the share failed retryably at their first attempt and done
	// at the next. Which uploads is decided by importOutcome, so a test
	// (or a second run) knows them.
	FailRate, RetryRate float64
	// Idle is the pause after a claim found nothing (or the server did not
	// answer); UntilIdle, when set, stops once nothing was claimable for
	// that long.
	Idle, UntilIdle time.Duration
	// Work is how long one import takes.
	Work time.Duration
}

// importerStats counts what the importers reported.
type importerStats struct {
	Claims, Done, Failed, Retried, Errors atomic.Int64
	Progress                              atomic.Int64 // midway progress reports taken
}

// importDraw maps an upload to [0, 1), the same on every run.
func importDraw(transferID, key string) float64 {
	h := fnv.New64a()
	h.Write([]byte(transferID))
	h.Write([]byte{0})
	h.Write([]byte(key))
	return float64(h.Sum64()>>11) / (1 << 53)
}

// importOutcome is the report of an importer for an upload at an attempt:
// failed for good (FailRate of the uploads), failed retryably at the
// first attempt (the next RetryRate), else done.
func importOutcome(transferID, key string, attempt int, failRate, retryRate float64) client.WorkReport {
	d := importDraw(transferID, key)
	rep := client.WorkReport{Status: "done", Attempt: attempt}
	switch {
	case d < failRate:
		rep.Status, rep.Message = "failed", "simulated import failure"
	case d < failRate+retryRate && attempt <= 1:
		rep.Status, rep.Retryable, rep.Message = "failed", true, "simulated transient failure"
	}
	return rep
}

// runImporters claims and reports through c until ctx ends (or UntilIdle
// passes with nothing claimable). A report the server did not answer is
// sent again (reports are idempotent: the fold keeps the greatest); a
// refused one (4xx) is dropped, the upload comes back after its lease.
func runImporters(ctx context.Context, c *client.Client, cfg importerConfig, st *importerStats) {
	cfg.Importers = max(cfg.Importers, 1)
	if cfg.Idle <= 0 {
		cfg.Idle = 200 * time.Millisecond
	}
	var lastWork atomic.Int64
	lastWork.Store(time.Now().UnixNano())
	var wg sync.WaitGroup
	for range cfg.Importers {
		wg.Go(func() {
			for ctx.Err() == nil {
				it, err := c.Claim(ctx)
				if err != nil || it == nil {
					if err != nil && ctx.Err() == nil {
						st.Errors.Add(1)
					}
					if cfg.UntilIdle > 0 && time.Since(time.Unix(0, lastWork.Load())) > cfg.UntilIdle {
						return
					}
					pause(ctx, cfg.Idle)
					continue
				}
				lastWork.Store(time.Now().UnixNano())
				st.Claims.Add(1)
				// Midway, a progress report (a heartbeat: it extends the
				// lease). Best effort: the final report is what counts.
				pause(ctx, cfg.Work/2)
				if _, err := c.Report(ctx, it.TransferID, it.Key, client.WorkReport{Status: "progress", Percent: 50, Attempt: it.Attempt, Message: "halfway"}); err == nil {
					st.Progress.Add(1)
				}
				pause(ctx, cfg.Work-cfg.Work/2)
				rep := importOutcome(it.TransferID, it.Key, it.Attempt, cfg.FailRate, cfg.RetryRate)
				for ctx.Err() == nil {
					_, err := c.Report(ctx, it.TransferID, it.Key, rep)
					var apiErr *client.Error
					if err == nil || errors.As(err, &apiErr) && apiErr.Status < 500 {
						if err != nil {
							st.Errors.Add(1)
							break
						}
						switch {
						case rep.Status == "done":
							st.Done.Add(1)
						case rep.Retryable:
							st.Retried.Add(1)
						default:
							st.Failed.Add(1)
						}
						break
					}
					st.Errors.Add(1)
					pause(ctx, cfg.Idle)
				}
			}
		})
	}
	wg.Wait()
}

func pause(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

const workRunAbout = `Run importers against a running server (serve --work), for demos and tests:
each claims an upload, "imports" it and reports it. A deterministic share of
the uploads (by transfer and key) fails for good (--fail-rate: a dead letter),
another fails once retryably and is done at the next attempt (--retry-rate);
the rest are done. Runs until Ctrl-C, or until nothing was claimable for
--until-idle.

The API token is --api-token or TRANSFERD_API_TOKEN.`

func runWorkRun(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	fs := newFlags("work run", workRunAbout, stderr)
	var server, token string
	var cfg importerConfig
	fs.StringVar(&server, "server", "http://127.0.0.1:8080", "`URL` of the transferd server")
	fs.StringVar(&token, "api-token", "", "API `token` (partner-wide or tenant-scoped)")
	fs.IntVar(&cfg.Importers, "importers", 4, "importers claiming at the same time")
	fs.Float64Var(&cfg.FailRate, "fail-rate", 0.05, "share of the uploads failed for good")
	fs.Float64Var(&cfg.RetryRate, "retry-rate", 0.1, "share of the uploads failed retryably once, then done")
	fs.DurationVar(&cfg.Work, "work", 50*time.Millisecond, "how long one import takes")
	fs.DurationVar(&cfg.Idle, "idle", 500*time.Millisecond, "pause after a claim found nothing")
	fs.DurationVar(&cfg.UntilIdle, "until-idle", 0, "stop after nothing was claimable for this long (0: run until stopped)")
	if err := parse(fs, args, getenv); err != nil {
		return err
	}
	if len(fs.Args()) != 0 {
		return usageError("work run: takes no arguments")
	}
	if token == "" {
		return usageError("work: no API token: pass --api-token or set TRANSFERD_API_TOKEN")
	}
	if cfg.FailRate < 0 || cfg.RetryRate < 0 || cfg.FailRate+cfg.RetryRate > 1 {
		return usageError("work run: --fail-rate and --retry-rate must be ≥ 0 and add up to at most 1")
	}
	var st importerStats
	runImporters(ctx, client.New(server, token), cfg, &st)
	fmt.Fprintf(stdout, "importers: %d claims; %d done, %d failed for good, %d failed retryably; %d progress reports; %d errors\n",
		st.Claims.Load(), st.Done.Load(), st.Failed.Load(), st.Retried.Load(), st.Progress.Load(), st.Errors.Load())
	return nil
}
