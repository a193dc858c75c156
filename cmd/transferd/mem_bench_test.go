package main

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/engine/journal"
	"github.com/transferd/transferd/ingest/simulator"
	"github.com/transferd/transferd/projections"
)

// BenchmarkServeMemory measures what the serving stack holds in memory
// after BENCH_MEM_EVENTS events (default 200,000) of the platform's shape
// (simulator.Shape: ~4.4 events a transfer, 20 tenants, every transfer's
// events shuffled with all the others'): the embedded NATS, the journal,
// the bbolt projection and the projector wired as transferd serve wires
// them, with --sync interval. Events go through the journal (AppendOwned
// on a transfer's first event, Append for the rest, from 64 goroutines)
// rather than over HTTP, so that 1M events take two minutes; the memory
// measured is that of the whole process. It reports the peak RSS (VmHWM),
// the peak anonymous RSS (sampled; without the pages of bbolt's memory
// map), the Go heap in use after a GC, and the counts.
//
//	BENCH_MEM_EVENTS=1000000 go test -run '^$' -bench ServeMemory -benchtime 1x ./cmd/transferd/
func BenchmarkServeMemory(b *testing.B) {
	n := benchEnvInt(b, "BENCH_MEM_EVENTS", 200000)
	for b.Loop() {
		benchServeMemory(b, n)
	}
}

func benchServeMemory(b *testing.B, n int) {
	ctx := context.Background()
	dir := b.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	sf := storeFlags{data: dir, sync: syncInterval, transfersMaxAge: journal.TransfersMaxAge}
	j, err := sf.openJournal(ctx, log)
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	store, err := openStore(ctx, log, j, projectionFile(dir))
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	proj, err := projections.Start(ctx, j, store, projections.ProjectorOptions{Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		proj.Drain()
		<-proj.Closed()
	}()

	next, transfers := memWorkload(b, n)
	stopAnon := samplePeak(b, "RssAnon")
	start := time.Now()
	work := make(chan memEvent, 1024)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 64 {
		wg.Go(func() {
			for e := range work {
				var err error
				if e.first {
					_, _, err = j.AppendOwned(ctx, e.ev)
				} else {
					_, err = j.Append(ctx, e.ev)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	sent := 0
	for e, ok := next(); ok; e, ok = next() {
		work <- e
		sent++
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	appended := time.Since(start)
	for {
		l, err := proj.Lag(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if l.Behind == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	projected := time.Since(start)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	hwm, rss, anon := procStatus(b, "VmHWM"), procStatus(b, "VmRSS"), stopAnon()
	b.ReportMetric(float64(hwm)/(1<<20), "peak-RSS-MB")
	b.ReportMetric(float64(anon)/(1<<20), "peak-anon-RSS-MB")
	b.ReportMetric(float64(rss)/(1<<20), "RSS-MB")
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-inuse-MB")
	b.ReportMetric(float64(sent), "events")
	b.ReportMetric(float64(transfers), "transfers")
	b.Logf("%d events of %d transfers: appended in %v, projected in %v; peak RSS %d MB (anonymous %d MB), RSS %d MB, heap in use %d MB after GC",
		sent, transfers, appended.Round(time.Millisecond), projected.Round(time.Millisecond), hwm>>20, anon>>20, rss>>20, ms.HeapInuse>>20)
	if f := os.Getenv("BENCH_MEM_HEAPPROFILE"); f != "" {
		writeHeapProfile(b, f)
	}
}

type memEvent struct {
	ev    *engine.Event
	first bool
}

// memWorkload is at least n Connect events of the platform's shape
// (simulator.Shape: ~n/4.4 transfers across 20 tenants), parsed as ingest
// parses them. It makes each event only when next is called, so that the
// workload does not weigh on the memory measured; next returns false after
// the last.
func memWorkload(tb testing.TB, n int) (next func() (memEvent, bool), transfers int) {
	shape := simulator.NewShape(11, n, 20)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	return func() (memEvent, bool) {
		e, ok := shape.Next()
		if !ok {
			return memEvent{}, false
		}
		ev, err := engine.Parse(engine.SourceConnect, e.Body)
		if err != nil {
			tb.Fatal(err)
		}
		now = now.Add(time.Millisecond)
		ev.Issuer, ev.ReceivedAt = simulator.ShapeTenant(e.Tenant), now
		return memEvent{ev: ev, first: e.First}, true
	}, shape.Transfers()
}

// procStatus is a field of /proc/self/status in bytes (0 where there is none).
func procStatus(tb testing.TB, field string) uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != field {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			tb.Errorf("%s: %v", field, err) // Errorf: samplePeak calls this from its goroutine
			return 0
		}
		return kb << 10
	}
	return 0
}

// samplePeak samples a field of /proc/self/status every 50 ms until the
// returned function is called, which returns the largest value seen. It is
// for the fields the kernel keeps no peak of: RssAnon leaves out the pages
// of bbolt's memory map, which are the file's, not the process's.
func samplePeak(tb testing.TB, field string) (stop func() uint64) {
	var peak atomic.Uint64
	done := make(chan struct{})
	finished := make(chan struct{})
	sample := func() {
		if v := procStatus(tb, field); v > peak.Load() {
			peak.Store(v)
		}
	}
	go func() {
		defer close(finished)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				sample()
			}
		}
	}()
	return func() uint64 {
		close(done)
		<-finished
		sample()
		return peak.Load()
	}
}

// writeHeapProfile writes the process's heap profile to path.
func writeHeapProfile(tb testing.TB, path string) {
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		tb.Fatal(err)
	}
}
