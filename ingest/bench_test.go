package ingest_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/transferd/transferd/engine/journal/journaltest"
	"github.com/transferd/transferd/ingest"
)

// The ingest benchmarks share one load: benchClients concurrent clients
// over keep-alive loopback HTTP playing a benchWorkload (the platform's
// shape, see shape_bench_test.go). BenchmarkCeiling* measure the same load
// against a bare net/http handler and against that handler plus one
// JetStream publish, so the ratio of BenchmarkIngest to them is the figure
// to watch (BenchmarkDurability runs them side by side).

const benchClients = 64

// runLoad plays a workload of b.N requests against url; auth holds the
// Authorization header of each tenant (nil for none).
func runLoad(b *testing.B, url string, auth []string) {
	b.Helper()
	w := newBenchWorkload(b.N)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: benchClients, MaxConnsPerHost: benchClients}}
	defer client.CloseIdleConnections()
	b.SetParallelism((benchClients + 1) / 2)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			q := w.take()
			req, _ := http.NewRequest("POST", url, bytes.NewReader(q.body))
			req.Header.Set("Content-Type", "application/json")
			if auth != nil {
				req.Header.Set("Authorization", auth[q.tenant])
			}
			res, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != 200 {
				b.Errorf("status %d", res.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkIngest is the whole ingest path: HS256 + qsh verification,
// parsing, the tenant binding and the append to embedded JetStream.
func BenchmarkIngest(b *testing.B) {
	p := newPlatform(b, journaltest.Open(b), ingest.Config{})
	runLoad(b, p.srv.URL+connectPath, newBenchWorkload(0).connectAuth(b, p))
}

// BenchmarkCeilingBare is a net/http handler that reads the body and answers 200.
func BenchmarkCeilingBare(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"accepted":true,"seq":1,"duplicate":false}`))
	}))
	defer srv.Close()
	runLoad(b, srv.URL+connectPath, nil)
}

// BenchmarkCeilingPublish is the bare handler plus one synchronous
// JetStream publish (with a Nats-Msg-Id) to the same embedded server.
func BenchmarkCeilingPublish(b *testing.B) {
	runLoad(b, ceilingServer(b).URL+connectPath, nil)
}

// ceilingServer is the ceiling every ingest figure is compared with: a
// bare net/http handler that publishes each body to an embedded JetStream
// without any sync, and answers as ingest does.
func ceilingServer(b *testing.B) *httptest.Server {
	js := journaltest.JetStream(journaltest.Open(b))
	var id atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		m := &nats.Msg{Subject: "migrations.events.connect.bench.app-data-uploaded", Data: body,
			Header: nats.Header{jetstream.MsgIDHeader: []string{strconv.FormatInt(id.Add(1), 10)}}}
		if _, err := js.PublishMsg(r.Context(), m); err != nil {
			http.Error(w, err.Error(), 503)
			return
		}
		w.Write([]byte(`{"accepted":true,"seq":1,"duplicate":false}`))
	}))
	b.Cleanup(srv.Close)
	return srv
}
