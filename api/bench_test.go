package api_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/api/apitest"
)

// benchTransfers is the size of the benchmark's projection.
const benchTransfers = 10_000

var (
	benchOnce sync.Once
	benchEnv  *apitest.Env
)

// benchServer returns a server over a projection of benchTransfers
// transfers, shared by the benchmarks of one run.
func benchServer(b *testing.B) *apitest.Env {
	benchOnce.Do(func() {
		// The environment outlives the first benchmark: its cleanups run
		// when the process exits, not at the end of b.
		benchEnv = apitest.New(&keepTB{B: b}, apitest.Options{Transfers: benchTransfers, NoProjector: true})
	})
	return benchEnv
}

// keepTB is a testing.TB whose temporary directories and cleanups outlive
// the benchmark that created them: TestMain runs them after every test.
type keepTB struct {
	*testing.B
}

var (
	keptMu       sync.Mutex
	keptCleanups []func()
)

func (k *keepTB) Cleanup(fn func()) {
	keptMu.Lock()
	defer keptMu.Unlock()
	keptCleanups = append(keptCleanups, fn)
}

func (k *keepTB) TempDir() string {
	dir, err := os.MkdirTemp("", "transferd-api-bench-")
	if err != nil {
		k.Fatal(err)
	}
	k.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func TestMain(m *testing.M) {
	code := m.Run()
	keptMu.Lock()
	for i := len(keptCleanups) - 1; i >= 0; i-- {
		keptCleanups[i]()
	}
	keptMu.Unlock()
	os.Exit(code)
}

// BenchmarkGetTransfer measures GET /v1/transfers/{id} with 64 concurrent
// keep-alive clients over loopback against a real server and a bbolt
// projection of 10k transfers. "nethttp" uses net/http's client, whose own
// cost dominates on a small machine; "raw" writes requests and parses
// replies by hand over the same kind of connections, so that the figure is
// closer to what the server can do.
func BenchmarkGetTransfer(b *testing.B) {
	env := benchServer(b)
	paths := make([]string, benchTransfers)
	for i := range paths {
		paths[i] = "/v1/transfers/" + apitest.LoadID(i)
	}
	const clients = 64

	b.Run("nethttp", func(b *testing.B) {
		tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients, DisableCompression: true}
		defer tr.CloseIdleConnections()
		hc := &http.Client{Transport: tr}
		b.SetParallelism(max(1, clients/runtime.GOMAXPROCS(0)))
		b.ReportAllocs()
		b.ResetTimer()
		cpu := processCPU()
		defer func() { reportRates(b, processCPU()-cpu) }()
		b.RunParallel(func(pb *testing.PB) {
			rng := rand.New(rand.NewPCG(rand.Uint64(), 1))
			req, _ := http.NewRequest("GET", env.URL, nil)
			req.Header.Set("Authorization", "Bearer "+apitest.Token)
			for pb.Next() {
				r := req.Clone(req.Context())
				r.URL.Path = paths[rng.IntN(len(paths))]
				resp, err := hc.Do(r)
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Errorf("status %d", resp.StatusCode)
					return
				}
			}
		})
	})

	b.Run("raw", func(b *testing.B) {
		addr := strings.TrimPrefix(env.URL, "http://")
		b.SetParallelism(max(1, clients/runtime.GOMAXPROCS(0)))
		b.ReportAllocs()
		b.ResetTimer()
		cpu := processCPU()
		defer func() { reportRates(b, processCPU()-cpu) }()
		b.RunParallel(func(pb *testing.PB) {
			c, err := dialRaw(addr)
			if err != nil {
				b.Error(err)
				return
			}
			defer c.conn.Close()
			rng := rand.New(rand.NewPCG(rand.Uint64(), 2))
			for pb.Next() {
				status, err := c.get(paths[rng.IntN(len(paths))])
				if err != nil || status != 200 {
					b.Errorf("status %d: %v", status, err)
					return
				}
			}
		})
	})
}

// reportRates reports the request rate, and the process's CPU time per
// request (server and clients together: other load on the machine slows
// the rate but hardly changes the CPU spent per request), with the rate two
// idle cores would sustain at that cost.
func reportRates(b *testing.B, cpu time.Duration) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	if cpu > 0 {
		perReq := cpu.Seconds() / float64(b.N)
		b.ReportMetric(perReq*1e6, "cpu-µs/req")
		b.ReportMetric(2/perReq, "req/s@2cores")
	}
}

// rawConn is a minimal HTTP/1.1 keep-alive client: enough for replies with
// a Content-Length.
type rawConn struct {
	conn net.Conn
	br   *bufio.Reader
	req  []byte
	body []byte
}

func dialRaw(addr string) (*rawConn, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &rawConn{conn: conn, br: bufio.NewReaderSize(conn, 16<<10)}, nil
}

func (c *rawConn) get(path string) (int, error) {
	c.req = append(c.req[:0], "GET "...)
	c.req = append(c.req, path...)
	c.req = append(c.req, " HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer "+apitest.Token+"\r\n\r\n"...)
	if _, err := c.conn.Write(c.req); err != nil {
		return 0, err
	}
	status, length := 0, -1
	for first := true; ; first = false {
		line, err := c.br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if first {
			if len(line) < 12 {
				return 0, fmt.Errorf("status line %q", line)
			}
			status, _ = strconv.Atoi(string(line[9:12]))
			continue
		}
		if len(line) == 0 {
			break
		}
		if k, v, ok := bytes.Cut(line, []byte(": ")); ok && bytes.EqualFold(k, []byte("Content-Length")) {
			length, _ = strconv.Atoi(string(v))
		}
	}
	if length < 0 {
		return status, fmt.Errorf("no Content-Length")
	}
	if cap(c.body) < length {
		c.body = make([]byte, length)
	}
	_, err := io.ReadFull(c.br, c.body[:length])
	return status, err
}

// BenchmarkHandleTransfer is the handler of GET /v1/transfers/{id} alone,
// in process: routing, token check, bbolt read, view, metrics.
func BenchmarkHandleTransfer(b *testing.B) {
	env := benchServer(b)
	req, _ := http.NewRequest("GET", "/v1/transfers/"+apitest.LoadID(4242), nil)
	req.Header.Set("Authorization", "Bearer "+apitest.Token)
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		env.API.ServeHTTP(w, req)
		if w.status != 200 {
			b.Fatalf("status %d", w.status)
		}
	}
}

type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(status int)      { w.status = status }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
