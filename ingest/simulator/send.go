package simulator

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/transferd/transferd/engine"
)

// Retry schedule of a request the server did not acknowledge: exponential
// from retryBase up to retryCap, with jitter; a Retry-After is honoured up
// to retryAfterCap.
const (
	retryBase     = 20 * time.Millisecond
	retryCap      = time.Second
	retryAfterCap = 5 * time.Second
	maxReplyBytes = 64 << 10
	keepFailures  = 100
)

// sender delivers a workload and counts what the server answered.
type sender struct {
	cfg        Config
	client     *http.Client
	signer     *signer
	connectURL string
	forgeURL   string

	started, requests, done                    atomic.Int64 // done: requests answered for good
	acked, duplicates, retries, failed, seqMis atomic.Int64
	badSent, badRefused, badOther, badAccepted atomic.Int64
	statuses                                   [600]atomic.Int64 // answers by status; [0] network errors

	deferred chan *badRequest

	mu       sync.Mutex
	failures []Failure
	refused  []RefusedRequest
	byKind   map[BadKind]map[int]int64
}

// reply is what one request got.
type reply struct {
	status     int
	accepted   acceptedBody
	code, msg  string
	retryAfter time.Duration
}

type acceptedBody struct {
	Accepted  bool   `json:"accepted"`
	Seq       uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate"`
}

func newClient(cfg Config) *http.Client {
	return &http.Client{
		Timeout: cfg.RequestTimeout,
		Transport: &http.Transport{
			Proxy:               nil, // loopback load: never through a proxy
			DialContext:         (&net.Dialer{Timeout: cfg.RequestTimeout, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        cfg.Concurrency,
			MaxIdleConnsPerHost: cfg.Concurrency,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
}

// post sends one request and reads the reply. A network error, including a
// timeout, is returned as the error.
func (s *sender) post(ctx context.Context, url, auth, contentType string, body []byte) (reply, error) {
	return s.postAs(ctx, url, auth, "", contentType, body)
}

// postAs is post with the Forge app system token in x-forge-oauth-system
// when sysToken is not empty, as Forge sends it with each event.
func (s *sender) postAs(ctx context.Context, url, auth, sysToken, contentType string, body []byte) (reply, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return reply{}, err
	}
	req.Header = http.Header{"Content-Type": {contentType}}
	if auth != "" {
		req.Header["Authorization"] = []string{auth}
	}
	if sysToken != "" {
		req.Header["X-Forge-Oauth-System"] = []string{sysToken}
	}
	s.requests.Add(1)
	resp, err := s.client.Do(req)
	if err != nil {
		s.statuses[0].Add(1)
		return reply{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxReplyBytes))
	io.Copy(io.Discard, resp.Body) // keep the connection reusable
	if err != nil {
		s.statuses[0].Add(1)
		return reply{}, err
	}
	rep := reply{status: resp.StatusCode}
	if rep.status > 0 && rep.status < len(s.statuses) {
		s.statuses[rep.status].Add(1)
	}
	if rep.status == http.StatusOK {
		// Events are answered {"accepted":true,…}; lifecycle callbacks
		// otherwise, which deliver does not accept.
		json.Unmarshal(data, &rep.accepted)
		return rep, nil
	}
	rep.code, rep.msg = decodeError(data)
	if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
		rep.retryAfter = min(time.Duration(secs)*time.Second, retryAfterCap)
	}
	return rep, nil
}

// retryable reports whether the platform would send again after rep:
// network errors (status 0), 408, 429 and 5xx.
func retryable(rep reply) bool {
	return rep.status == 0 || rep.status == http.StatusRequestTimeout || rep.status == http.StatusTooManyRequests || rep.status >= 500
}

// pause waits before retry number attempt (0-based), honouring the
// server's Retry-After; false when ctx ended first.
func pause(ctx context.Context, attempt int, retryAfter time.Duration) bool {
	d := min(retryBase<<min(attempt, 10), retryCap)
	d = d/2 + rand.N(d/2+1) // jitter: no thundering herd after an outage
	return sleep(ctx, max(d, retryAfter))
}

// sleep waits for d; false when ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (s *sender) url(src engine.Source) string {
	if src == engine.SourceConnect {
		return s.connectURL
	}
	return s.forgeURL
}

// deliver sends one good event until the server acknowledges it, it is
// refused with a 4xx, or ctx ends. lat collects the latency of the
// acknowledged request.
func (s *sender) deliver(ctx context.Context, e *event, lat *[]time.Duration) {
	s.started.Add(1)
	t := e.transfer
	url := s.url(t.tenant.source)
	for attempt := 0; ; attempt++ {
		auth, err := s.signer.authorization(t.tenant)
		if err != nil {
			s.fail(e, reply{}, err)
			return
		}
		start := time.Now()
		rep, err := s.postAs(ctx, url, auth, t.tenant.sysToken, "application/json", e.body)
		if !retryable(rep) {
			if rep.status != http.StatusOK || !rep.accepted.Accepted {
				s.fail(e, rep, err)
				return
			}
			s.done.Add(1)
			*lat = append(*lat, time.Since(start))
			s.acked.Add(1)
			if rep.accepted.Duplicate {
				s.duplicates.Add(1)
			}
			e.acks.Add(1)
			if !e.seq.CompareAndSwap(0, rep.accepted.Seq) && e.seq.Load() != rep.accepted.Seq {
				s.seqMis.Add(1)
			}
			if t.acked.CompareAndSwap(false, true) {
				for _, b := range t.deferred {
					s.deferred <- b
				}
			}
			return
		}
		if ctx.Err() != nil {
			return // the run's deadline: the event stays unacknowledged
		}
		s.retries.Add(1)
		if !pause(ctx, attempt, rep.retryAfter) {
			return
		}
	}
}

func (s *sender) fail(e *event, rep reply, err error) {
	s.failed.Add(1)
	s.done.Add(1)
	f := Failure{ID: e.id, TransferID: e.transfer.id, Kind: e.kind, Status: rep.status, Code: rep.code, Message: rep.msg}
	switch {
	case err != nil:
		f.Message = err.Error()
	case rep.status == http.StatusOK:
		f.Message = `answered 200 without {"accepted":true}`
	}
	s.mu.Lock()
	s.keepFailure(f)
	s.mu.Unlock()
}

// keepFailure records f unless enough are kept already; s.mu is held.
func (s *sender) keepFailure(f Failure) {
	if len(s.failures) < keepFailures {
		s.failures = append(s.failures, f)
	}
}

// refuse sends one bad request until the server answers it with something
// other than a retryable status, or ctx ends.
func (s *sender) refuse(ctx context.Context, b *badRequest) {
	s.started.Add(1)
	s.badSent.Add(1)
	url := s.url(b.sender.source)
	for attempt := 0; ; attempt++ {
		auth, err := s.signer.bad(b.sender, b.auth)
		if err != nil {
			s.record(b, reply{}, err)
			return
		}
		rep, _ := s.post(ctx, url, auth, b.contentType, b.body)
		if !retryable(rep) {
			s.record(b, rep, nil)
			return
		}
		if ctx.Err() != nil {
			return
		}
		s.retries.Add(1)
		if !pause(ctx, attempt, rep.retryAfter) {
			return
		}
	}
}

func (s *sender) record(b *badRequest, rep reply, err error) {
	s.done.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byKind[b.kind] == nil {
		s.byKind[b.kind] = map[int]int64{}
	}
	s.byKind[b.kind][rep.status]++
	switch {
	case err != nil:
		// Could not even be signed: neither refused nor accepted.
		s.keepFailure(Failure{ID: b.id, TransferID: b.transferID, Bad: b.kind, Message: err.Error()})
		return
	case rep.status >= 200 && rep.status < 300:
		s.badAccepted.Add(1)
		s.keepFailure(Failure{ID: b.id, TransferID: b.transferID, Bad: b.kind, Status: rep.status,
			Message: "bad request accepted; want " + strconv.Itoa(b.kind.Want())})
		return
	case rep.status == b.kind.Want():
		s.badRefused.Add(1)
	default:
		s.badOther.Add(1)
	}
	s.refused = append(s.refused, RefusedRequest{ID: b.id, TransferID: b.transferID, Kind: b.kind, Status: rep.status, Want: b.kind.Want(), Code: rep.code})
}

// send runs the workload with cfg.Concurrency workers until every job is
// done or ctx ends, and returns the latencies of the acknowledged requests.
func (s *sender) send(ctx context.Context, w *workload) []time.Duration {
	s.deferred = make(chan *badRequest, w.deferred)
	s.byKind = map[BadKind]map[int]int64{}
	workers := min(s.cfg.Concurrency, max(1, len(w.jobs)))
	lats := make([][]time.Duration, workers)
	var next atomic.Int64
	var wg sync.WaitGroup
	for i := range workers {
		lats[i] = make([]time.Duration, 0, len(w.jobs)/workers+1)
		wg.Go(func() {
			for ctx.Err() == nil {
				select {
				case b := <-s.deferred:
					s.refuse(ctx, b)
					continue
				default:
				}
				n := next.Add(1) - 1
				if n >= int64(len(w.jobs)) {
					return
				}
				if j := w.jobs[n]; j.ev != nil {
					s.deliver(ctx, j.ev, &lats[i])
				} else {
					s.refuse(ctx, j.bad)
				}
			}
		})
	}
	wg.Wait()
	// Every good event is done: no cross-tenant request is released now.
	close(s.deferred)
	for range min(workers, len(s.deferred)) {
		wg.Go(func() {
			for b := range s.deferred {
				if ctx.Err() == nil {
					s.refuse(ctx, b)
				}
			}
		})
	}
	wg.Wait()
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	return all
}

// counts is what the progress lines report, of total planned requests.
func (s *sender) counts(total int) progressCounts {
	return progressCounts{
		done: s.done.Load(), total: int64(total), sent: s.started.Load(), acked: s.acked.Load(),
		duplicates: s.duplicates.Load(), retries: s.retries.Load(), badRefuse: s.badRefused.Load() + s.badOther.Load(),
	}
}

// progress updates p every interval until stop is closed, then closes
// exited.
func (s *sender) progress(p *progressWriter, interval time.Duration, total int, stop <-chan struct{}, exited chan<- struct{}) {
	defer close(exited)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			p.update(now, s.counts(total))
		}
	}
}

// setup sends one request of the preparation (installs, probes), retrying
// while the server is unreachable or answers 5xx, for at most a while: a
// server that is still starting gets time, one that is absent an error.
func (s *sender) setup(ctx context.Context, url, auth string, body []byte) (reply, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for attempt := 0; ; attempt++ {
		rep, err := s.post(ctx, url, auth, "application/json", body)
		if !retryable(rep) {
			return rep, err
		}
		if !pause(ctx, attempt+3, rep.retryAfter) {
			if err == nil {
				err = fmt.Errorf("%d %s: %s", rep.status, rep.code, rep.msg)
			}
			return rep, fmt.Errorf("%s: %w", url, err)
		}
	}
}
