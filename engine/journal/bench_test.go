package journal_test

import (
	"context"
	"fmt"
	"runtime"
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
