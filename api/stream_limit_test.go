package api_test

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/api"
	"github.com/transferd/transferd/api/apitest"
	"github.com/transferd/transferd/api/httperr"
	"github.com/transferd/transferd/engine/journal"
)

// consumers returns how many consumers each stream has.
func consumers(t testing.TB, env *apitest.Env) (events, transfers int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, name := range []string{journal.StreamEvents, journal.StreamTransfers} {
		st, err := env.Journal.State(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if name == journal.StreamEvents {
			events = st.Consumers
		} else {
			transfers = st.Consumers
		}
	}
	return events, transfers
}

// startStream opens a stream and reads its first block; it returns the
// status and a function that drops the connection.
func startStream(ctx context.Context, url, query string) (int, http.Header, func(), error) {
	ctx, cancel := context.WithCancel(ctx)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v1/stream"+query, nil)
	req.Header.Set("Authorization", "Bearer "+apitest.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		return 0, nil, nil, err
	}
	done := func() { cancel(); resp.Body.Close() }
	if resp.StatusCode == http.StatusOK {
		br := bufio.NewReader(resp.Body)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				done()
				return 0, nil, nil, err
			}
			if line == "\n" {
				break
			}
		}
	}
	return resp.StatusCode, resp.Header, done, nil
}

// Finding 10.B: streams used to leave their type=transfers consumers
// behind for minutes, and enough open streams made every new stream,
// /events and ?at= answer 503. Many clients coming and going leave the
// consumer count where it was, and everything still works.
func TestStreamsComingAndGoingReleaseConsumers(t *testing.T) {
	env := apitest.New(t, apitest.Options{})
	env.Append(apitest.Event(t, apitest.Spec{TransferID: "t-1", MessageID: "m1"}))
	env.Sync()
	baseEvents, baseTransfers := consumers(t, env)

	const clients, parallel = 2000, 32
	var failed atomic.Int64
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i := range clients {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			query := "?type=events"
			if i%2 == 1 {
				query = "?type=transfers"
			}
			status, _, done, err := startStream(t.Context(), env.URL, query)
			if err != nil || status != http.StatusOK {
				failed.Add(1)
				return
			}
			done()
		})
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d streams failed to open", n, clients)
	}

	// Every consumer is released (not left to expire).
	deadline := time.Now().Add(10 * time.Second)
	for {
		ev, tr := consumers(t, env)
		if ev == baseEvents && tr == baseTransfers {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumers: MIGRATIONS %d (baseline %d), TRANSFERS %d (baseline %d)", ev, baseEvents, tr, baseTransfers)
		}
		time.Sleep(50 * time.Millisecond)
	}
	c := openStream(t, env, "?type=transfers", "")
	c.start()
	c.close()
	mustGet(t, env, "/v1/transfers/t-1/events", nil)
	mustGet(t, env, "/v1/transfers/t-1?at=1", nil)
}

// Beyond Config.MaxStreams a new stream is refused with 503, Retry-After
// and the standard error body, and history and ?at= keep working.
func TestMaxStreams(t *testing.T) {
	env := apitest.New(t, apitest.Options{API: api.Config{MaxStreams: 2}})
	env.Append(apitest.Event(t, apitest.Spec{TransferID: "t-1", MessageID: "m1"}))
	env.Sync()
	a := openStream(t, env, "", "")
	b := openStream(t, env, "?type=transfers", "")
	a.start()
	b.start()
	status, h, done, err := startStream(t.Context(), env.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	done()
	if status != http.StatusServiceUnavailable || h.Get("Retry-After") == "" {
		t.Fatalf("third stream = %d (Retry-After %q), want 503 with Retry-After", status, h.Get("Retry-After"))
	}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, env.URL+"/v1/stream", nil)
	req.Header.Set("Authorization", "Bearer "+apitest.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	wantError(t, resp.StatusCode, body, http.StatusServiceUnavailable, httperr.CodeUnavailable, "")
	if !strings.Contains(string(body), "too many open streams") {
		t.Errorf("body %s", body)
	}
	mustGet(t, env, "/v1/transfers/t-1/events", nil)
	mustGet(t, env, "/v1/transfers/t-1?at=1", nil)

	a.close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, _, done, err := startStream(t.Context(), env.URL, "")
		if err == nil {
			done()
		}
		if status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a stream closed, a new one is still refused: %d %v", status, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
