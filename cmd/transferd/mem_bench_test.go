package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/projections"
)

// BenchmarkServeMemory measures what the serving stack holds in memory
// after BENCH_MEM_EVENTS events (default 200,000) of a quarter as many
// transfers across 20 tenants, every transfer's events shuffled with all
// the others': the embedded NATS, the journal, the bbolt projection and the
// projector wired as transferd serve wires them, with --sync interval.
// Events go through the journal (AppendOwned on a transfer's first event,
// Append for the rest, from 64 goroutines) rather than over HTTP, so that
// 1M events take a minute; the memory measured is that of the whole
// process. It reports
// the peak RSS (VmHWM), the Go heap in use after a GC, and the counts.
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
	sf := storeFlags{data: dir, sync: syncInterval}
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

	next, transfers := memWorkload(n)
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
	for range n {
		work <- next()
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
	hwm, rss := procStatus(b, "VmHWM"), procStatus(b, "VmRSS")
	b.ReportMetric(float64(hwm)/(1<<20), "peak-RSS-MB")
	b.ReportMetric(float64(rss)/(1<<20), "RSS-MB")
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-inuse-MB")
	b.ReportMetric(float64(n), "events")
	b.ReportMetric(float64(transfers), "transfers")
	b.Logf("%d events of %d transfers: appended in %v, projected in %v; peak RSS %d MB, RSS %d MB, heap in use %d MB after GC",
		n, transfers, appended.Round(time.Millisecond), projected.Round(time.Millisecond), hwm>>20, rss>>20, ms.HeapInuse>>20)
	if f := os.Getenv("BENCH_MEM_HEAPPROFILE"); f != "" {
		writeHeapProfile(b, f)
	}
}

type memEvent struct {
	ev    *engine.Event
	first bool
}

// memWorkload is n Connect events of n/4 transfers across 20 tenants
// (a listener-triggered, two uploads, a settled), shuffled from a fixed
// seed. It makes each event only when next is called, so that the
// workload does not weigh on the memory measured.
func memWorkload(n int) (next func() memEvent, transfers int) {
	r := rand.New(rand.NewPCG(11, 4))
	kinds := []engine.Kind{engine.KindListenerTriggered, engine.KindAppDataUploaded, engine.KindAppDataUploaded, engine.KindTransferSettled}
	nt := (n + 3) / 4
	steps := make([]uint8, nt)
	slots := make([]int32, 0, n)
	for i := range nt {
		for range kinds {
			slots = append(slots, int32(i))
		}
	}
	slots = slots[:n]
	r.Shuffle(len(slots), func(a, b int) { slots[a], slots[b] = slots[b], slots[a] })
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	i := 0
	return func() memEvent {
		s := int(slots[i])
		i++
		tid := fmt.Sprintf("%08x-0000-4000-8000-%012x", uint32(s)*2654435761, s)
		issuer := fmt.Sprintf("bench-tenant-%02d", s%20)
		k := kinds[steps[s]]
		first := steps[s] == 0
		steps[s]++
		id := fmt.Sprintf("%016x%016x", r.Uint64(), r.Uint64())
		et := engine.ConnectEventType(k)
		body := fmt.Sprintf(`{"eventType":%q,"transferId":%q,"messageId":%q,"migrationDetails":{"migrationId":"m-%d","migrationScopeId":"s","name":"bench","createdAt":1772366400000,"cloudUrl":"https://x.atlassian.net","jiraClientKey":%q,"confluenceClientKey":"unknown"}`,
			et, tid, id, s%97, issuer)
		switch k {
		case engine.KindAppDataUploaded:
			body += fmt.Sprintf(`,"s3Key":"%x","label":"attachments"`, r.Uint64())
		case engine.KindTransferSettled:
			body += `,"status":"SUCCESS"`
		}
		body += "}"
		now = now.Add(time.Millisecond)
		return memEvent{first: first, ev: &engine.Event{ID: id, MessageID: id, Source: engine.SourceConnect, Kind: k, EventType: et,
			TransferID: tid, Issuer: issuer, ReceivedAt: now, Payload: []byte(body)}}
	}, nt
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
			tb.Fatalf("%s: %v", field, err)
		}
		return kb << 10
	}
	return 0
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
