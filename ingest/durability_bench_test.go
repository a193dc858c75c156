package ingest_test

import (
	"bytes"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/engine/journal"
	"github.com/transferd/transferd/engine/journal/journaltest"
	"github.com/transferd/transferd/ingest"
)

// BenchmarkDurability is the whole ingest path in each sync mode of
// transferd serve, beside its ceiling, under the load of BenchmarkIngest
// (64 keep-alive clients playing the platform's shape: ~600-byte Connect
// events of N/4.4 transfers and 20 tenants, shuffled together):
//
//   - ceiling: a bare net/http handler that publishes each body to the
//     embedded JetStream, which does not sync (BenchmarkCeilingPublish);
//   - interval: ingest on a journal whose server syncs every 2 minutes;
//   - always: ingest on a journal that syncs before every acknowledgement,
//     appends sharing a sync (transferd serve's default:
//     journal.GroupCommitSync);
//   - atomic: the same with appends sharing atomic batches
//     (journal.GroupCommitAtomic), for comparison.
//
// The four run side by side and take turns in slices of 250 ms, so that a
// change of the machine's load weighs on all alike. Each reports events/s
// and the 50th and 99th percentile latencies of a request; interval/ceiling
// and always/ceiling are the ratios to watch (make bench runs this):
//
//	go test -run '^$' -bench Durability -benchtime 100000x ./ingest/
func BenchmarkDurability(b *testing.B) {
	targets := []*loadTarget{ceilingTarget(b)}
	targets[0].work = newBenchWorkload(b.N)
	for _, mode := range []struct {
		name string
		cfg  journal.Config
	}{
		{"interval", journal.Config{}},
		{"always", journal.Config{SyncAlways: true}},
		{"atomic", journal.Config{SyncAlways: true, GroupCommit: journal.GroupCommitAtomic}},
	} {
		j := journaltest.OpenConfig(b, mode.cfg)
		p := newPlatform(b, j, ingest.Config{})
		w := newBenchWorkload(b.N)
		targets = append(targets, &loadTarget{name: mode.name, journal: j, work: w,
			url: p.srv.URL + connectPath, auth: w.connectAuth(b, p)})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		for _, t := range targets {
			done += t.run(b, 250*time.Millisecond, b.N-done)
		}
	}
	b.StopTimer()
	for _, t := range targets {
		t.report(b)
	}
	if c := targets[0].rate(); c > 0 {
		b.ReportMetric(targets[1].rate()/c, "interval/ceiling")
		b.ReportMetric(targets[2].rate()/c, "always/ceiling")
	}
}

// loadTarget is one server under the benchmark's load, and what it saw.
type loadTarget struct {
	name, url string
	auth      []string // per tenant of work; nil for none
	work      *benchWorkload
	journal   *journal.Journal // nil for the ceiling
	client    *http.Client

	requests int
	busy     time.Duration
	lat      []time.Duration
}

func ceilingTarget(b *testing.B) *loadTarget {
	return &loadTarget{name: "ceiling", url: ceilingServer(b).URL + connectPath}
}

// run loads t from benchClients clients for d, or until it has answered
// max requests, and returns how many it answered.
func (t *loadTarget) run(b *testing.B, d time.Duration, max int) int {
	if t.client == nil {
		t.client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: benchClients, MaxConnsPerHost: benchClients}}
		b.Cleanup(t.client.CloseIdleConnections)
	}
	var (
		mu   sync.Mutex
		n    atomic.Int64
		wg   sync.WaitGroup
		stop = time.Now().Add(d)
	)
	start := time.Now()
	for range benchClients {
		wg.Go(func() {
			var mine []time.Duration
			for time.Now().Before(stop) && n.Add(1) <= int64(max) {
				q := t.work.take()
				req, _ := http.NewRequest("POST", t.url, bytes.NewReader(q.body))
				req.Header.Set("Content-Type", "application/json")
				if t.auth != nil {
					req.Header.Set("Authorization", t.auth[q.tenant])
				}
				t0 := time.Now()
				res, err := t.client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				reply, _ := io.ReadAll(res.Body)
				res.Body.Close()
				mine = append(mine, time.Since(t0))
				if res.StatusCode != 200 {
					b.Errorf("%s: status %d: %s", t.name, res.StatusCode, reply)
					return
				}
			}
			mu.Lock()
			t.lat = append(t.lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	t.busy += time.Since(start)
	answered := len(t.lat) - t.requests
	t.requests = len(t.lat)
	return answered
}

func (t *loadTarget) rate() float64 {
	if t.busy == 0 {
		return 0
	}
	return float64(t.requests) / t.busy.Seconds()
}

func (t *loadTarget) report(b *testing.B) {
	b.ReportMetric(t.rate(), t.name+"-events/s")
	if len(t.lat) == 0 {
		return
	}
	slices.Sort(t.lat)
	b.ReportMetric(float64(t.lat[len(t.lat)/2].Microseconds())/1000, t.name+"-p50-ms")
	b.ReportMetric(float64(t.lat[len(t.lat)*99/100].Microseconds())/1000, t.name+"-p99-ms")
	if t.journal == nil {
		return
	}
	switch s := t.journal.CommitStats(); {
	case s.Syncs > 0:
		b.ReportMetric(float64(s.Synced)/float64(s.Syncs), t.name+"-writes/sync")
	case s.Batches > 0:
		b.ReportMetric(float64(s.Batched)/float64(s.Batches), t.name+"-events/batch")
	}
}
