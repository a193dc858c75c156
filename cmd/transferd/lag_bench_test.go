package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/ingest/atlassian"
	"github.com/transferd/transferd/ingest/simulator"
)

// BenchmarkLag is the time from a webhook's 200 to the moment its transfer
// is visible through GET /v1/transfers/{id}, on a whole `transferd serve`
// (embedded NATS, --sync always, the projector, bbolt, the query API) in
// this process, under an open-loop load at a fixed rate (BENCH_LAG_RATE,
// default 5,000 events/s) of the platform's shape: transfers of ~4.4
// signed Connect events (a trigger, 2 to 4 uploads, a settle for two in
// five) from 20 tenants, all shuffled together. It samples the first sent
// event of one transfer in four: before it, GET answers 404; the lag is
// from its 200 until GET answers 200 (polled every millisecond). It
// reports the rate reached, the p50 and p99 lag, the requests' p99 and the
// events per projector commit:
//
//	go test -run '^$' -bench '^BenchmarkLag$' -benchtime 50000x ./cmd/transferd/
//
// (b.N is the number of events.) A rate the server cannot keep up with
// shows as lag growing with the backlog: compare events/s with the rate.
func BenchmarkLag(b *testing.B) {
	rate := benchEnvInt(b, "BENCH_LAG_RATE", 5000)
	dir := b.TempDir()
	const tenants = 20
	secrets := make([][]byte, tenants)
	for i := range secrets {
		secrets[i] = fmt.Appendf(nil, "lag-secret-%02d-0123456789abcdefghijklmnop", i)
		file := filepath.Join(dir, "secret")
		if err := os.WriteFile(file, secrets[i], 0o600); err != nil {
			b.Fatal(err)
		}
		var out, errOut lockedBuffer
		argv := []string{"transferd", "tenants", "add", "--data", dir, "--client-key", simulator.ShapeTenant(i), "--shared-secret-file", file}
		if err := run(context.Background(), argv, noEnv, strings.NewReader(""), &out, &errOut); err != nil {
			b.Fatalf("tenants add: %v\n%s", err, errOut.String())
		}
	}
	srv := startServe(b, "--data", dir, "--api-token", "lag-token")
	auth := make([]string, tenants)
	for i := range auth {
		tok, err := atlassian.SignConnect("POST", simulator.DefaultConnectPath, "", simulator.ShapeTenant(i), secrets[i], 10*time.Minute, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		auth[i] = "JWT " + tok
	}
	reqs := lagWorkload(b.N, tenants)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: lagSenders + 64, MaxConnsPerHost: lagSenders + 64}}
	defer client.CloseIdleConnections()

	var (
		mu      sync.Mutex
		lags    []time.Duration
		reqLats []time.Duration
		sent    atomic.Int64
		pending = make(chan lagSample, 4096)
		work    = make(chan lagReq, 1024)
		senders sync.WaitGroup
		pollers sync.WaitGroup
	)
	// A poller per sample, so that a slow one never delays the next.
	pollers.Go(func() {
		for s := range pending {
			pollers.Go(func() {
				for {
					res, err := client.Do(lagGet(srv.url, s.id))
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, res.Body)
					res.Body.Close()
					if res.StatusCode == http.StatusOK {
						break
					}
					if res.StatusCode != http.StatusNotFound {
						b.Errorf("GET %s: %d", s.id, res.StatusCode)
						return
					}
					time.Sleep(time.Millisecond)
				}
				lag := time.Since(s.at)
				mu.Lock()
				lags = append(lags, lag)
				mu.Unlock()
			})
		}
	})
	for range lagSenders {
		senders.Go(func() {
			var mine []time.Duration
			for q := range work {
				req, _ := http.NewRequest("POST", srv.url+simulator.DefaultConnectPath, bytes.NewReader(q.body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", auth[q.tenant])
				t0 := time.Now()
				res, err := client.Do(req)
				if err != nil {
					b.Error(err)
					continue
				}
				reply, _ := io.ReadAll(res.Body)
				res.Body.Close()
				at := time.Now()
				mine = append(mine, at.Sub(t0))
				if res.StatusCode != http.StatusOK {
					b.Errorf("status %d: %s", res.StatusCode, reply)
					continue
				}
				sent.Add(1)
				if q.sample != "" {
					pending <- lagSample{id: q.sample, at: at}
				}
			}
			mu.Lock()
			reqLats = append(reqLats, mine...)
			mu.Unlock()
		})
	}

	b.ResetTimer()
	start := time.Now()
	interval := time.Second / time.Duration(rate)
	for i, q := range reqs {
		// Open loop: request i is due at start + i/rate, whether or not
		// the earlier ones were answered.
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		work <- q
	}
	close(work)
	senders.Wait()
	elapsed := time.Since(start)
	close(pending)
	pollers.Wait()
	b.StopTimer()

	b.ReportMetric(float64(rate), "target-events/s")
	b.ReportMetric(float64(sent.Load())/elapsed.Seconds(), "events/s")
	if len(lags) > 0 {
		slices.Sort(lags)
		b.ReportMetric(ms(lags[len(lags)/2]), "lag-p50-ms")
		b.ReportMetric(ms(lags[len(lags)*99/100]), "lag-p99-ms")
		b.ReportMetric(float64(len(lags)), "lag-samples")
	}
	if len(reqLats) > 0 {
		slices.Sort(reqLats)
		b.ReportMetric(ms(reqLats[len(reqLats)*99/100]), "request-p99-ms")
	}
	if commits := metricValue(b, srv.url, "transferd_projector_commits_total"); commits > 0 {
		b.ReportMetric(float64(sent.Load())/commits, "events/commit")
	}
}

// metricValue is the value of the unlabelled metric name on serve's
// /metrics, 0 when it is not there.
func metricValue(b *testing.B, url, name string) float64 {
	res, err := http.Get(url + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer res.Body.Close()
	text, err := io.ReadAll(res.Body)
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(text)) {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				b.Fatalf("%s: %v", name, err)
			}
			return f
		}
	}
	return 0
}

// benchEnvInt is the positive number in the environment variable name, or
// def when it is unset.
func benchEnvInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func lagGet(url, id string) *http.Request {
	req, _ := http.NewRequest("GET", url+"/v1/transfers/"+id, nil)
	req.Header.Set("Authorization", "Bearer lag-token")
	return req
}

// lagSenders is how many requests are in flight at most: the platform's
// 64 connections.
const lagSenders = 64

type lagReq struct {
	tenant int
	body   []byte
	sample string // the transfer id when this is the sampled first event of its transfer
}

type lagSample struct {
	id string
	at time.Time
}

// lagWorkload draws at least n requests of the platform's shape
// (simulator.Shape) from a fixed seed, and marks the first request sent of
// one transfer in four as a sample.
func lagWorkload(n, tenants int) []lagReq {
	shape := simulator.NewShape(3, n, tenants)
	reqs := make([]lagReq, 0, shape.Len())
	firsts := 0
	for e, ok := shape.Next(); ok; e, ok = shape.Next() {
		q := lagReq{tenant: e.Tenant, body: e.Body}
		if e.First {
			if firsts++; firsts%4 == 0 {
				q.sample = e.TransferID
			}
		}
		reqs = append(reqs, q)
	}
	return reqs
}
