package projections_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/engine/journal"
	"github.com/transferd/transferd/engine/journal/journaltest"
	"github.com/transferd/transferd/projections"
)

// BenchmarkCatchUp measures how fast a projection is built from a stream
// of realistic traffic (about 7 events per transfer, 440-byte payloads):
// "serve" is a projector's first build into a live store (fsync per
// batch, the TRANSFERS feed published), "rebuild" is Rebuild. Run it with
//
//	go test -run '^$' -bench CatchUp -benchtime 1x ./projections/
//
// (-short skips the million-event stream; PROJECTIONS_BENCH_EVENTS=N runs
// one stream of N events instead). It reports events/s, CPU time
// per event, the peak live Go heap while catching up, which must not
// grow with the stream, and this process's peak RSS (peak-RSS-MB, VmHWM
// reset before each build; the NATS server's child process is not
// counted) and peak anonymous RSS (peak-anon-RSS-MB, sampled: bbolt's
// mapped file excluded). mode=rebuild also reports read-events/s, the
// rate of reading and decoding the stream alone: the ceiling.
func BenchmarkCatchUp(b *testing.B) {
	sizes := []int{100_000, 1_000_000}
	if n, err := strconv.Atoi(os.Getenv("PROJECTIONS_BENCH_EVENTS")); err == nil && n > 0 {
		sizes = []int{n}
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			if n > 100_000 && len(sizes) > 1 && testing.Short() {
				b.Skip("-short")
			}
			j, server := benchJournal(b, n)
			b.Run("mode=serve", func(b *testing.B) {
				benchmarkCatchUp(b, j, server, n, func(path string) error {
					s, err := projections.Open(path, projections.Options{})
					if err != nil {
						return err
					}
					defer s.Close()
					maxBatch, _ := strconv.Atoi(os.Getenv("PROJECTIONS_BENCH_BATCH"))
					return projections.CatchUp(b.Context(), j, s, projections.ProjectorOptions{MaxBatch: maxBatch})
				})
			})
			b.Run("mode=rebuild", func(b *testing.B) {
				b.ReportMetric(readRate(b, j, n), "read-events/s")
				benchmarkCatchUp(b, j, server, n, func(path string) error {
					return projections.Rebuild(b.Context(), j, path, nil)
				})
			})
		})
	}
}

func benchmarkCatchUp(b *testing.B, j *journal.Journal, server *os.Process, n int, build func(path string) error) {
	var peak, peakAnon atomic.Uint64
	stop := sampleHeap(&peak, &peakAnon)
	defer stop()
	var hwm uint64
	var cpu, serverCPU time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		path := filepath.Join(b.TempDir(), "p.db")
		runtime.GC()
		peak.Store(0)
		peakAnon.Store(0)
		resetPeakRSS()
		cpu0, scpu0 := cpuTime(b), processCPU(b, server)
		b.StartTimer()
		if err := build(path); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		hwm = max(hwm, procStatus("VmHWM"))
		cpu += cpuTime(b) - cpu0
		serverCPU += processCPU(b, server) - scpu0
		b.StartTimer()
	}
	events := float64(n) * float64(b.N)
	b.ReportMetric(events/b.Elapsed().Seconds(), "events/s")
	// The machine may be shared: CPU time per event says what idle cores
	// would do. The server runs embedded in transferd serve by default.
	b.ReportMetric(float64(cpu.Microseconds())/events, "cpu-µs/event")
	b.ReportMetric(float64(serverCPU.Microseconds())/events, "server-cpu-µs/event")
	b.ReportMetric(float64(peak.Load())/(1<<20), "peak-live-heap-MB")
	b.ReportMetric(float64(hwm)/(1<<20), "peak-RSS-MB")
	b.ReportMetric(float64(max(peakAnon.Load(), procStatus("RssAnon")))/(1<<20), "peak-anon-RSS-MB")
}

// readRate reads and decodes the stream's n events as a projector does,
// without folding them, and returns the events per second.
func readRate(b *testing.B, j *journal.Journal, n int) float64 {
	b.StopTimer()
	defer b.StartTimer()
	defer b.ResetTimer()
	start := time.Now()
	r, err := j.Read(b.Context(), 0, "")
	if err != nil {
		b.Fatal(err)
	}
	defer r.Stop()
	for done := 0; done < n; {
		envs, err := r.Next(b.Context(), projections.RebuildMaxBatch)
		if err != nil {
			b.Fatal(err)
		}
		for _, e := range envs {
			if _, err := e.Event(); err != nil {
				b.Fatal(err)
			}
		}
		done += len(envs)
	}
	return float64(n) / time.Since(start).Seconds()
}

// procStatus returns a size field of /proc/self/status in bytes (0 when
// it cannot be read: not Linux).
func procStatus(field string) uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// resetPeakRSS resets VmHWM to the current RSS (Linux ≥ 4.0), so that the
// stream's generation and earlier builds do not count.
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// cpuTime returns the user and system CPU time this process has used.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// sampleHeap records the largest live heap (as measured by the last
// garbage collection) and anonymous RSS seen until stop is called.
func sampleHeap(peak, peakAnon *atomic.Uint64) (stop func()) {
	done := make(chan struct{})
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	go func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				metrics.Read(s)
				if v := s[0].Value.Uint64(); v > peak.Load() {
					peak.Store(v)
				}
				if v := procStatus("RssAnon"); v > peakAnon.Load() {
					peakAnon.Store(v)
				}
			}
		}
	}()
	return func() { close(done) }
}

// benchJournal returns a journal holding n generated events, served by a
// NATS server in a child process, so that the heap and CPU measured are
// the projector's (the server's CPU is reported on its own); with
// PROJECTIONS_BENCH_NATS=embedded, by an embedded server as in transferd
// serve's default set-up (server nil). With PROJECTIONS_BENCH_DIR set,
// the stream is kept in that directory and reused by later runs
// (appending a million events takes a while).
func benchJournal(b *testing.B, n int) (*journal.Journal, *os.Process) {
	embedded := os.Getenv("PROJECTIONS_BENCH_NATS") == "embedded"
	dir := b.TempDir()
	if d := os.Getenv("PROJECTIONS_BENCH_DIR"); d != "" {
		dir = filepath.Join(d, fmt.Sprintf("stream-%d-embedded=%t", n, embedded))
	}
	var j *journal.Journal
	var server *os.Process
	if embedded {
		j = journaltest.OpenConfig(b, journal.Config{DataDir: dir, Timeout: time.Minute})
	} else {
		var url string
		url, server = startServerProcess(b, dir)
		j = journaltest.OpenConfig(b, journal.Config{URL: url, Timeout: time.Minute})
	}
	last, err := j.LastSeq(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	if last != uint64(n) {
		if last != 0 {
			b.Fatalf("%s holds %d events, not %d: remove it", dir, last, n)
		}
		appendGenerated(b, j, 42, n)
	}
	return j, server
}

// startServerProcess runs a JetStream server storing in dir in a child
// process and returns its URL; the server stops when the benchmark ends.
func startServerProcess(b *testing.B, dir string) (string, *os.Process) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"=nats-server", helperDB+"="+dir)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close() // the server shuts down cleanly at EOF
		cmd.Wait()
	})
	url, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatalf("nats-server process: %v", err)
	}
	return strings.TrimSpace(url), cmd.Process
}

// helperServer runs a JetStream server until stdin closes, printing its
// URL first.
func helperServer() error {
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true,
		StoreDir: os.Getenv(helperDB), NoLog: true, NoSigs: true,
	})
	if err != nil {
		return err
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		return errors.New("nats-server not ready")
	}
	fmt.Println(s.ClientURL())
	io.Copy(io.Discard, os.Stdin)
	s.Shutdown()
	s.WaitForShutdown()
	return nil
}

// processCPU returns the CPU time another process has used (0 for nil).
func processCPU(tb testing.TB, p *os.Process) time.Duration {
	if p == nil {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Pid))
	if err != nil {
		tb.Fatal(err)
	}
	// Fields after the command name (which may hold spaces): state is
	// field 3, utime 14 and stime 15, in clock ticks (100 per second).
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// appendGenerated appends n generated events in chunks, so that the
// benchmark does not hold them all in memory.
func appendGenerated(tb testing.TB, j *journal.Journal, seed uint64, n int) {
	tb.Helper()
	g := newGenerator(seed, 256)
	const chunk = 20000
	start := time.Now()
	for done := 0; done < n; done += chunk {
		events := make([]*engine.Event, min(chunk, n-done))
		for i := range events {
			events[i] = g.next()
		}
		appendFast(tb, j, events)
	}
	tb.Logf("appended %d events in %v", n, time.Since(start).Round(time.Millisecond))
}
