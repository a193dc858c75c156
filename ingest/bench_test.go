package ingest_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/transferd/transferd/engine/journal/journaltest"
	"github.com/transferd/transferd/ingest"
)

// The ingest benchmarks share one load shape: 64 concurrent clients over
// keep-alive loopback HTTP, each POSTing distinct ~600-byte Connect events.
// BenchmarkCeiling* measure the same load against a bare net/http handler
// and against that handler plus one JetStream publish, so the ratio of
// BenchmarkIngest to them is the figure to watch.

const benchClients = 64

var benchSeq atomic.Int64

func benchBody() []byte {
	n := strconv.FormatInt(benchSeq.Add(1), 10)
	return []byte(`{"eventType":"app-data-uploaded","cloudAppKey":"my-cloud-app-key","transferId":"bench-` + strconv.FormatInt(benchSeq.Load()%5000, 10) +
		`","messageId":"msg-` + n + `","serverAppVersion":"1.0","migrationDetails":{"migrationId":"8e60dc59-78d6-484f-966a-a09ff8be8ed0",` +
		`"migrationScopeId":"442bdd69-622d-323d-889d-383b41d8e536","name":"Migration of my Confluence page","createdAt":1597211035,` +
		`"jiraClientKey":"unknown","confluenceClientKey":"tenant-a","cloudUrl":"https://cloud-site-under-migration.atlassian.net"},` +
		`"s3Key":"636abf0f-38a2-45c1-8c68-9c7edde97f3f-` + n + `","label":"some-optional-label"}`)
}

func runLoad(b *testing.B, url, auth string) {
	b.Helper()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: benchClients, MaxConnsPerHost: benchClients}}
	defer client.CloseIdleConnections()
	b.SetParallelism((benchClients + 1) / 2)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest("POST", url, bytes.NewReader(benchBody()))
			req.Header.Set("Content-Type", "application/json")
			if auth != "" {
				req.Header.Set("Authorization", auth)
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
	runLoad(b, p.srv.URL+connectPath, "JWT "+p.connectToken("tenant-a", p.secrets["tenant-a"], time.Hour))
}

// BenchmarkCeilingBare is a net/http handler that reads the body and answers 200.
func BenchmarkCeilingBare(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"accepted":true,"seq":1,"duplicate":false}`))
	}))
	defer srv.Close()
	runLoad(b, srv.URL+connectPath, "")
}

// BenchmarkCeilingPublish is the bare handler plus one synchronous
// JetStream publish (with a Nats-Msg-Id) to the same embedded server.
func BenchmarkCeilingPublish(b *testing.B) {
	runLoad(b, ceilingServer(b).URL+connectPath, "")
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
