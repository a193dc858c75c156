package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/transferd/transferd/api"
	"github.com/transferd/transferd/api/apitest"
	"github.com/transferd/transferd/api/httperr"
	"github.com/transferd/transferd/engine"
)

// sseConn is one open GET /v1/stream.
type sseConn struct {
	t      testing.TB
	resp   *http.Response
	br     *bufio.Reader
	cancel context.CancelFunc
}

// sseBlock is one block of an event stream: an event, an id-only block, or
// comments.
type sseBlock struct {
	id, event, data string
	retry           string
	comment         bool
}

// openStream opens /v1/stream?query, sending Last-Event-ID when lastID is
// not empty.
func openStream(t testing.TB, env *apitest.Env, query, lastID string) *sseConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, env.URL+"/v1/stream"+query, nil)
	req.Header.Set("Authorization", "Bearer "+apitest.Token)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	c := &sseConn{t: t, resp: resp, br: bufio.NewReader(resp.Body), cancel: cancel}
	t.Cleanup(c.close)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/stream%s = %d %s", query, resp.StatusCode, readAll(t, resp))
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type = %q", ct)
	}
	return c
}

// close drops the connection.
func (c *sseConn) close() {
	c.cancel()
	c.resp.Body.Close()
}

// block reads the next block.
func (c *sseConn) block() (sseBlock, error) {
	var b sseBlock
	lines := 0
	for {
		line, err := c.br.ReadString('\n')
		if err != nil {
			return b, err
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			if lines == 0 {
				continue
			}
			return b, nil
		}
		lines++
		name, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch name {
		case "":
			b.comment = true
		case "id":
			b.id = value
		case "event":
			b.event = value
		case "data":
			b.data = value
		case "retry":
			b.retry = value
		default:
			c.t.Errorf("unexpected line %q", line)
		}
	}
}

// start reads the first block, which announces the starting position.
func (c *sseConn) start() uint64 {
	c.t.Helper()
	b, err := c.block()
	if err != nil {
		c.t.Fatal(err)
	}
	if b.data != "" || b.id == "" || b.retry == "" {
		c.t.Fatalf("first block = %+v, want retry and id only", b)
	}
	n, err := strconv.ParseUint(b.id, 10, 64)
	if err != nil {
		c.t.Fatal(err)
	}
	return n
}

// next reads the next event, skipping heartbeats.
func (c *sseConn) next() sseBlock {
	c.t.Helper()
	for {
		b, err := c.block()
		if err != nil {
			c.t.Fatalf("reading the stream: %v", err)
		}
		if b.comment && b.data == "" {
			continue
		}
		if b.id == "" || b.event == "" || b.data == "" {
			c.t.Fatalf("block %+v lacks id, event or data", b)
		}
		return b
	}
}

type streamEnvelope struct {
	Seq        uint64          `json:"seq"`
	ID         string          `json:"id"`
	Kind       engine.Kind     `json:"kind"`
	TransferID string          `json:"transferId"`
	Payload    json.RawMessage `json:"payload"`
}

func decodeEnvelope(t testing.TB, b sseBlock) streamEnvelope {
	t.Helper()
	var e streamEnvelope
	if err := json.Unmarshal([]byte(b.data), &e); err != nil {
		t.Fatalf("data %s: %v", b.data, err)
	}
	if strconv.FormatUint(e.Seq, 10) != b.id || string(e.Kind) != b.event {
		t.Errorf("block id %s event %s, data seq %d kind %s", b.id, b.event, e.Seq, e.Kind)
	}
	return e
}

// TestStreamEventsResume reads part of the stream, drops the connection,
// appends more, and resumes with Last-Event-ID: together the connections
// deliver every event once, in order.
func TestStreamEventsResume(t *testing.T) {
	f := newFixture(t)
	c := openStream(t, f.env, "?from=1", "")
	if at := c.start(); at != 0 {
		t.Errorf("from=1 starts after %d, want 0", at)
	}
	var seen []uint64
	for i := range 3 {
		e := decodeEnvelope(t, c.next())
		if e.ID != f.events[i].ID || string(e.Payload) != string(f.events[i].Payload) {
			t.Errorf("event %d = %+v, want %s with its payload verbatim", i, e, f.events[i].ID)
		}
		seen = append(seen, e.Seq)
	}
	c.close()

	more := []*engine.Event{
		apitest.Event(t, apitest.Spec{TransferID: "t-2", Kind: engine.KindAppDataUploaded, MessageID: "m-6", Issuer: "tenant-b", MigrationID: "mig-2", CloudURL: "https://b.atlassian.net"}),
		apitest.Event(t, apitest.Spec{TransferID: "t-4", MessageID: "m-7"}),
	}
	acks := f.env.Append(more...)
	last := strconv.FormatUint(seen[len(seen)-1], 10)
	c = openStream(t, f.env, "?from=1", last) // the header wins over from
	if at := c.start(); strconv.FormatUint(at, 10) != last {
		t.Errorf("resumed after %d, want %s", at, last)
	}
	for seen[len(seen)-1] < acks[len(acks)-1].Seq {
		seen = append(seen, decodeEnvelope(t, c.next()).Seq)
	}
	wantSeqs(t, seen, 1, acks[len(acks)-1].Seq)
}

// wantSeqs checks that seen is exactly first, first+1, …, last.
func wantSeqs(t testing.TB, seen []uint64, first, last uint64) {
	t.Helper()
	if uint64(len(seen)) != last-first+1 {
		t.Fatalf("seqs %v, want %d..%d without gaps or repeats", seen, first, last)
	}
	for i, s := range seen {
		if s != first+uint64(i) {
			t.Fatalf("seqs %v, want %d..%d without gaps or repeats", seen, first, last)
		}
	}
}

// TestStreamFromNow starts without a position: only new events arrive, and
// a client that drops before any arrived resumes from the announced
// position without missing one.
func TestStreamFromNow(t *testing.T) {
	f := newFixture(t)
	c := openStream(t, f.env, "", "")
	start := c.start()
	if start != f.seqs[len(f.seqs)-1] {
		t.Fatalf("starts after %d, want the last sequence %d", start, f.seqs[len(f.seqs)-1])
	}
	c.close()
	acks := f.env.Append(
		apitest.Event(t, apitest.Spec{TransferID: "t-5", MessageID: "m-8"}),
		apitest.Event(t, apitest.Spec{TransferID: "t-5", Kind: engine.KindAppDataUploaded, MessageID: "m-9"}),
	)
	c = openStream(t, f.env, "", strconv.FormatUint(start, 10))
	c.start()
	var seen []uint64
	for range acks {
		seen = append(seen, decodeEnvelope(t, c.next()).Seq)
	}
	wantSeqs(t, seen, acks[0].Seq, acks[1].Seq)

	// ?lastEventId= does the same as the header, for clients that cannot
	// set headers.
	c = openStream(t, f.env, "?lastEventId="+strconv.FormatUint(acks[0].Seq, 10), "")
	c.start()
	if got := decodeEnvelope(t, c.next()).Seq; got != acks[1].Seq {
		t.Errorf("lastEventId=%d gave %d first", acks[0].Seq, got)
	}
}

func TestStreamFilters(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		query string
		want  []string // event ids
	}{
		{"?from=1&transferId=t-1", []string{"m-1", "m-2", "m-3"}},
		{"?from=1&kind=listener-triggered", []string{"m-1", "m-4", "m-5"}},
		{"?from=1&kind=listener-triggered&transferId=t-2", []string{"m-4"}},
		{"?from=3&transferId=t-1", []string{"m-3"}},
	}
	for _, tc := range tests {
		t.Run(tc.query, func(t *testing.T) {
			c := openStream(t, f.env, tc.query, "")
			c.start()
			for _, id := range tc.want {
				if e := decodeEnvelope(t, c.next()); e.ID != id {
					t.Fatalf("got %s, want %s", e.ID, id)
				}
			}
			// Nothing else matches: the next event to arrive is a new one.
			ack := f.env.Append(apitest.Event(t, apitest.Spec{TransferID: "t-2", MessageID: "probe-" + tc.query, Kind: engine.KindListenerTriggered}))[0]
			if strings.Contains(tc.query, "t-1") {
				return
			}
			// Probes of earlier cases match some filters too; no fixture
			// event may come after the expected ones.
			for {
				e := decodeEnvelope(t, c.next())
				if !strings.HasPrefix(e.ID, "probe-") {
					t.Fatalf("after the expected events got %s", e.ID)
				}
				if e.Seq == ack.Seq {
					break
				}
			}
		})
	}

	errs := []struct{ query, lastID, param string }{
		{"?type=logs", "", "type"},
		{"?kind=nope", "", "kind"},
		{"?phase=settled", "", "phase"},
		{"?type=transfers&kind=listener-triggered", "", "kind"},
		{"?type=transfers&phase=done", "", "phase"},
		{"?transferId=a.b", "", "transferId"},
		{"?from=-1", "", "from"},
		{"?lastEventId=x", "", "lastEventId"},
		{"", "abc", "Last-Event-ID"},
		{"?since=1", "", "since"},
	}
	for _, tc := range errs {
		t.Run("error"+tc.query+tc.lastID, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), "GET", f.env.URL+"/v1/stream"+tc.query, nil)
			req.Header.Set("Authorization", "Bearer "+apitest.Token)
			if tc.lastID != "" {
				req.Header.Set("Last-Event-ID", tc.lastID)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			wantError(t, resp.StatusCode, readAll(t, resp), 400, httperr.CodeInvalidRequest, tc.param)
		})
	}
}

type streamView struct {
	TransferID  string       `json:"transferId"`
	Phase       engine.Phase `json:"phase"`
	Version     int          `json:"version"`
	NeedsAction *string      `json:"needsAction"`
	Deadlines   *struct{}    `json:"deadlines"`
}

func decodeView(t testing.TB, b sseBlock) streamView {
	t.Helper()
	var v streamView
	if err := json.Unmarshal([]byte(b.data), &v); err != nil {
		t.Fatalf("data %s: %v", b.data, err)
	}
	if string(v.Phase) != b.event || v.Deadlines == nil {
		t.Errorf("block event %s, data %s: want the phase as event and a view", b.event, b.data)
	}
	return v
}

// TestStreamTransfersResume does for type=transfers what
// TestStreamEventsResume does for events: the TRANSFERS sequences seen
// over two connections are 1, 2, … without gaps or repeats, and the final
// states arrive.
func TestStreamTransfersResume(t *testing.T) {
	f := newFixture(t)
	c := openStream(t, f.env, "?type=transfers&from=1", "")
	c.start()
	first := c.next()
	c.close() // drop after one message, while more are in the stream

	f.env.Append(
		apitest.Event(t, apitest.Spec{TransferID: "t-2", Kind: engine.KindAppDataUploaded, MessageID: "m-6", Issuer: "tenant-b", MigrationID: "mig-2", CloudURL: "https://b.atlassian.net"}),
		apitest.Event(t, apitest.Spec{TransferID: "t-4", MessageID: "m-7"}),
	)
	want := map[string]int{"t-1": 3, "t-2": 2, "t-3": 1, "t-4": 1} // final versions
	got := map[string]int{}
	var seen []uint64
	record := func(b sseBlock) {
		v := decodeView(t, b)
		got[v.TransferID] = max(got[v.TransferID], v.Version)
		seen = append(seen, mustSeq(t, b.id))
	}
	record(first)
	c = openStream(t, f.env, "?type=transfers&from=1", first.id)
	c.start()
	deadline := time.Now().Add(10 * time.Second)
	for !mapsEqual(got, want) {
		if time.Now().After(deadline) {
			t.Fatalf("final states not seen: got %v, want %v", got, want)
		}
		record(c.next())
	}
	wantSeqs(t, seen, 1, seen[len(seen)-1])

	// The phase filter.
	c = openStream(t, f.env, "?type=transfers&from=1&phase=listener_errored", "")
	c.start()
	if v := decodeView(t, c.next()); v.TransferID != "t-1" || v.NeedsAction == nil {
		t.Errorf("phase=listener_errored gave %+v", v)
	}
}

func mustSeq(t testing.TB, s string) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestStreamOutlivesServerTimeouts checks that the server's read and write
// timeouts do not cut a stream, and that heartbeats keep it alive.
func TestStreamOutlivesServerTimeouts(t *testing.T) {
	env := apitest.New(t, apitest.Options{
		API: api.Config{Heartbeat: 100 * time.Millisecond},
		HTTPServer: func(s *http.Server) {
			s.ReadTimeout = 300 * time.Millisecond
			s.WriteTimeout = 300 * time.Millisecond
		},
	})
	c := openStream(t, env, "", "")
	c.start()
	heartbeats := 0
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		b, err := c.block()
		if err != nil {
			t.Fatalf("stream cut after %d heartbeats: %v", heartbeats, err)
		}
		if !b.comment {
			t.Fatalf("unexpected block %+v", b)
		}
		heartbeats++
	}
	if heartbeats < 5 {
		t.Errorf("%d heartbeats in a second, want about 10", heartbeats)
	}
	ack := env.Append(apitest.Event(t, apitest.Spec{TransferID: "late", MessageID: "late-1"}))[0]
	if e := decodeEnvelope(t, c.next()); e.Seq != ack.Seq {
		t.Errorf("got seq %d, want %d", e.Seq, ack.Seq)
	}
}

// TestCloseEndsStreams checks that Server.Close ends open streams, refuses
// new ones, and lets http.Server.Shutdown return.
func TestCloseEndsStreams(t *testing.T) {
	env := apitest.New(t, apitest.Options{})
	srv := &http.Server{Handler: env.API}
	srv.RegisterOnShutdown(func() { env.API.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	env2 := *env
	env2.URL = "http://" + ln.Addr().String()
	conns := []*sseConn{openStream(t, &env2, "", ""), openStream(t, &env2, "?type=transfers", "")}
	for _, c := range conns {
		c.start()
	}

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Shutdown took %v", d)
	}
	for _, c := range conns {
		if _, err := c.block(); err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("stream still open after Shutdown: %v", err)
		}
	}
	// The API's own server still answers, but refuses new streams.
	status, body := get(t, env, "/v1/stream")
	wantError(t, status, body, http.StatusServiceUnavailable, httperr.CodeUnavailable, "")
}
