package journal_test

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/engine/journal"
	"github.com/transferd/transferd/engine/journal/journaltest"
)

// BenchmarkAppend measures appends of ~700-byte events from 64 concurrent
// callers (the ingest hot path), against the embedded server over its
// in-process connection and against a loopback TCP server, through
// PublishAsync and its future (Append) and through the synchronous publish.
func BenchmarkAppend(b *testing.B) {
	template := event(b, "t", 1)
	for _, srv := range []string{"embedded", "tcp"} {
		for _, mode := range []string{"async", "sync"} {
			b.Run(srv+"/"+mode, func(b *testing.B) {
				var j *journal.Journal
				if srv == "embedded" {
					j = journaltest.Open(b)
				} else {
					j = journaltest.OpenConfig(b, journal.Config{URL: journaltest.Server(b)})
				}
				appendFn := j.Append
				if mode == "sync" {
					appendFn = func(ctx context.Context, e *engine.Event) (journal.Ack, error) {
						return journal.AppendSync(ctx, j, e)
					}
				}
				var n atomic.Int64
				b.SetBytes(int64(len(journal.Encode(template))))
				b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0))) // 64 goroutines
				b.ResetTimer()
				start := time.Now()
				b.RunParallel(func(pb *testing.PB) {
					ctx := context.Background()
					for pb.Next() {
						e := *template
						i := n.Add(1)
						e.ID = "m-" + strconv.FormatInt(i, 10)
						e.TransferID = "t-" + strconv.FormatInt(i%1000, 10)
						if _, err := appendFn(ctx, &e); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(n.Load())/time.Since(start).Seconds(), "appends/s")
			})
		}
	}
}

// BenchmarkRead measures a projector's catch-up: reading and decoding
// every envelope from the start in batches of 1000.
func BenchmarkRead(b *testing.B) {
	const events = 50_000
	j := journaltest.Open(b)
	template := event(b, "t", 1)
	ctx := context.Background()
	sem := make(chan struct{}, 64)
	for i := range events {
		e := *template
		e.ID = fmt.Sprintf("m-%d", i)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			if _, err := j.Append(ctx, &e); err != nil {
				b.Error(err)
			}
		}()
	}
	for range cap(sem) {
		sem <- struct{}{}
	}
	b.ResetTimer()
	start := time.Now()
	total := 0
	for b.Loop() {
		r, err := j.Read(ctx, 0, "")
		if err != nil {
			b.Fatal(err)
		}
		for r.Pending() > 0 {
			batch, err := r.Next(ctx, 1000)
			if err != nil {
				b.Fatal(err)
			}
			total += len(batch)
		}
		r.Stop()
	}
	b.ReportMetric(float64(total)/time.Since(start).Seconds(), "envelopes/s")
}

// BenchmarkAppendDurable measures appends of ~700-byte events from 64
// concurrent callers to the embedded server in each durability mode:
// syncing every write with each GroupCommit (sync, transferd serve's
// default; atomic batches; none), and syncing by interval, without and
// with atomic batches; and to a three-node cluster with three replicas. It
// reports appends/s, the 50th and 99th percentile latencies, and how many
// appends shared a sync or a batch.
func BenchmarkAppendDurable(b *testing.B) {
	for _, mode := range []struct {
		name string
		cfg  journal.Config
	}{
		{"always-sync", journal.Config{SyncAlways: true}},
		{"always-atomic", journal.Config{SyncAlways: true, GroupCommit: journal.GroupCommitAtomic}},
		{"always-off", journal.Config{SyncAlways: true, GroupCommit: journal.GroupCommitOff}},
		{"interval", journal.Config{}},
		{"interval-atomic", journal.Config{GroupCommit: journal.GroupCommitAtomic}},
		// A three-node cluster on this machine (servers at their default
		// sync interval): one replication round per message, or per batch.
		{"cluster-r3-off", journal.Config{Replicas: 3, GroupCommit: journal.GroupCommitOff}},
		{"cluster-r3-atomic", journal.Config{Replicas: 3}},
	} {
		b.Run(mode.name, func(b *testing.B) {
			cfg := mode.cfg
			if cfg.Replicas == 3 {
				cfg.URL = journaltest.Cluster(b, 3)
			}
			j := journaltest.OpenConfig(b, cfg)
			benchAppends(b, j.Append, 64)
			s := j.CommitStats()
			if s.Batches > 0 {
				b.ReportMetric(float64(s.Batched)/float64(s.Batches), "appends/batch")
			}
			if s.Syncs > 0 {
				b.ReportMetric(float64(s.Synced)/float64(s.Syncs), "appends/sync")
			}
		})
	}
}

// benchAppends runs b.N appends from clients concurrent callers and
// reports the rate and latency percentiles.
func benchAppends(b *testing.B, appendFn func(context.Context, *engine.Event) (journal.Ack, error), clients int) {
	template := event(b, "t", 1)
	var n atomic.Int64
	lat := make([]time.Duration, b.N)
	b.SetParallelism(max(1, clients/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			e := *template
			i := n.Add(1)
			e.ID = "m-" + strconv.FormatInt(i, 10)
			e.TransferID = "t-" + strconv.FormatInt(i%1000, 10)
			t0 := time.Now()
			if _, err := appendFn(ctx, &e); err != nil {
				b.Error(err)
				return
			}
			lat[i-1] = time.Since(t0)
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(n.Load())/elapsed.Seconds(), "appends/s")
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
