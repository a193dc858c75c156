package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/engine/journal"
)

// The feeds of GET /v1/stream (?type=).
const (
	feedEvents    = "events"    // envelopes from MIGRATIONS; event = kind
	feedTransfers = "transfers" // transfer views from TRANSFERS; event = phase
)

// message is one Server-Sent Event: id is the stream sequence.
type message struct {
	seq   uint64
	event string
	data  []byte // one line of JSON
}

// feed reads one stream from a position on, for one SSE response. next
// blocks until messages are available or ctx ends; stop releases the
// consumer. Only the pump goroutine calls them.
type feed struct {
	after uint64 // the position the feed starts strictly after
	next  func(ctx context.Context) ([]message, error)
	stop  func()
}

// streamRequest is a parsed GET /v1/stream.
type streamRequest struct {
	typ        string
	kind       engine.Kind
	transferID string
	phase      engine.Phase
	after      uint64
	now        bool // start after the stream's last message
}

func parseStream(r *http.Request) (streamRequest, error) {
	q, err := values(r, "type", "kind", "transferId", "phase", "from", "lastEventId")
	if err != nil {
		return streamRequest{}, err
	}
	sr := streamRequest{typ: q.Get("type"), now: true}
	switch sr.typ {
	case "":
		sr.typ = feedEvents
	case feedEvents, feedTransfers:
	default:
		return sr, invalidParam("type", "want events or transfers")
	}
	if k := q.Get("kind"); k != "" {
		if sr.typ != feedEvents {
			return sr, invalidParam("kind", "only for type=events")
		}
		if sr.kind = engine.Kind(k); !sr.kind.Valid() {
			return sr, invalidParam("kind", "unknown kind "+strconv.Quote(k))
		}
	}
	if p := q.Get("phase"); p != "" {
		if sr.typ != feedTransfers {
			return sr, invalidParam("phase", "only for type=transfers")
		}
		if sr.phase = engine.Phase(p); !sr.phase.Valid() {
			return sr, invalidParam("phase", "unknown phase "+strconv.Quote(p))
		}
	}
	if id := q.Get("transferId"); id != "" {
		if !engine.ValidID(id) {
			return sr, invalidParam("transferId", "not a transfer id")
		}
		sr.transferID = id
	}
	// A reconnecting EventSource repeats the original URL and adds the
	// header, so the header wins over the parameters.
	switch h, p, from := r.Header.Get("Last-Event-ID"), q.Get("lastEventId"), q.Get("from"); {
	case h != "":
		sr.after, err = parseSeq("Last-Event-ID", strings.TrimSpace(h))
		sr.now = false
	case p != "":
		sr.after, err = parseSeq("lastEventId", p)
		sr.now = false
	case from != "":
		sr.after, err = parseSeq("from", from)
		sr.after = max(sr.after, 1) - 1
		sr.now = false
	}
	return sr, err
}

// subject is the subject filter of the request's feed.
func (sr streamRequest) subject() string {
	if sr.typ == feedTransfers {
		return journal.TransferFilter(sr.transferID, sr.phase)
	}
	return journal.EventFilter(sr.transferID, sr.kind)
}

// handleStream serves GET /v1/stream as Server-Sent Events: "id:" the
// stream sequence, "event:" the kind (type=events) or the phase
// (type=transfers), "data:" the envelope or the transfer view as one line
// of JSON. The first block carries only "id:", the position the feed
// starts after, so that a client that reconnects with Last-Event-ID before
// any event arrived misses nothing.
func (s *Server) handleStream(w http.ResponseWriter, r *http.Request) error {
	sr, err := parseStream(r)
	if err != nil {
		return err
	}
	if r.Method == http.MethodHead {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		return nil
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stopOnClose := context.AfterFunc(s.ctx, cancel)
	defer stopOnClose()

	if err := s.enterStream(); err != nil {
		return err
	}
	defer s.leaveStream()
	f, err := s.openFeed(ctx, sr)
	if err != nil {
		return err
	}
	s.metrics.streams.Inc()
	defer s.metrics.streams.Dec()
	batches := pump(ctx, f)
	defer func() {
		cancel()
		for range batches { // wait for the pump to stop the consumer
		}
	}()

	rc := http.NewResponseController(w)
	// The server's deadlines are for ordinary requests: a read deadline
	// would cancel this request's context and a write deadline cut the
	// stream. Each write gets its own deadline instead, so that a client
	// that stops reading cannot hold the handler forever.
	rc.SetReadDeadline(time.Time{})
	defer restoreWriteDeadline(r, rc)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	buf := make([]byte, 0, 4096)
	buf = append(buf, "retry: 2000\nid: "...)
	buf = strconv.AppendUint(buf, f.after, 10)
	buf = append(buf, "\n\n"...)
	if err := s.send(w, rc, buf); err != nil {
		return nil
	}
	heartbeat := time.NewTicker(s.cfg.Heartbeat)
	defer heartbeat.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-heartbeat.C:
			if err := s.send(w, rc, []byte(": heartbeat\n\n")); err != nil {
				return nil
			}
		case b, ok := <-batches:
			if !ok {
				return nil
			}
			for _, m := range b.msgs {
				buf = appendSSE(buf[:0], m)
				if err := s.send(w, rc, buf); err != nil {
					return nil
				}
			}
			if b.err != nil {
				// The client reconnects with the last id it got.
				s.log.Warn("stream: feed ended", "type", sr.typ, "err", b.err)
				return nil
			}
			heartbeat.Reset(s.cfg.Heartbeat)
		}
	}
}

// send writes one block and flushes it, within the stream write timeout.
// An error means the client is gone.
func (s *Server) send(w http.ResponseWriter, rc *http.ResponseController, b []byte) error {
	rc.SetWriteDeadline(time.Now().Add(s.cfg.StreamWriteTimeout))
	if _, err := w.Write(b); err != nil {
		return err
	}
	return rc.Flush()
}

// restoreWriteDeadline puts back the server's write deadline after a
// stream, for the next request on a kept-alive connection: net/http only
// sets one when the server has a WriteTimeout.
func restoreWriteDeadline(r *http.Request, rc *http.ResponseController) {
	var d time.Time
	if srv, ok := r.Context().Value(http.ServerContextKey).(*http.Server); ok && srv.WriteTimeout > 0 {
		d = time.Now().Add(srv.WriteTimeout)
	}
	rc.SetWriteDeadline(d)
}

func appendSSE(b []byte, m message) []byte {
	b = append(b, "id: "...)
	b = strconv.AppendUint(b, m.seq, 10)
	b = append(b, "\nevent: "...)
	b = append(b, m.event...)
	b = append(b, "\ndata: "...)
	b = append(b, m.data...)
	return append(b, "\n\n"...)
}

// batch is what the pump hands the handler: messages, or the error that
// ended the feed.
type batch struct {
	msgs []message
	err  error
}

// pump reads f in a goroutine until ctx ends or the feed fails, and then
// stops f and closes the channel.
func pump(ctx context.Context, f *feed) <-chan batch {
	ch := make(chan batch)
	go func() {
		defer close(ch)
		defer f.stop()
		for {
			msgs, err := f.next(ctx)
			if ctx.Err() != nil {
				return
			}
			if len(msgs) == 0 && err == nil {
				continue
			}
			select {
			case ch <- batch{msgs, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return ch
}

// openFeed positions a consumer for sr. Failures (the journal down) are
// returned before anything is written, as a JSON 503.
func (s *Server) openFeed(ctx context.Context, sr streamRequest) (*feed, error) {
	octx, cancel := context.WithTimeout(ctx, s.cfg.ReadyTimeout)
	defer cancel()
	if sr.typ == feedTransfers {
		return s.openTransfers(octx, sr)
	}
	if sr.now {
		last, err := s.journal.LastSeq(octx)
		if err != nil {
			return nil, err
		}
		sr.after = last
	}
	rd, err := s.journal.Read(octx, sr.after, sr.subject())
	if err != nil {
		return nil, err
	}
	return &feed{
		after: sr.after,
		stop:  rd.Stop,
		next: func(ctx context.Context) ([]message, error) {
			envs, err := rd.Next(ctx, 256)
			var cerr *journal.CorruptError
			if errors.As(err, &cerr) {
				s.log.Warn("stream: skipping a message that does not decode", "seq", cerr.Seq, "err", err)
				return nil, nil
			}
			msgs := make([]message, 0, len(envs))
			for i := range envs {
				msgs = append(msgs, message{
					seq:   envs[i].Seq,
					event: string(envs[i].Kind),
					data:  oneLine(appendEnvelope(nil, &envs[i], 0, false)),
				})
			}
			return msgs, err
		},
	}, nil
}

func (s *Server) openTransfers(ctx context.Context, sr streamRequest) (*feed, error) {
	if sr.now {
		st, err := s.journal.State(ctx, journal.StreamTransfers)
		if err != nil {
			return nil, err
		}
		sr.after = st.LastSeq
	}
	rd, err := s.journal.ReadTransfers(ctx, sr.after, sr.subject())
	if err != nil {
		return nil, err
	}
	return &feed{
		after: sr.after,
		stop:  rd.Stop,
		next: func(ctx context.Context) ([]message, error) {
			c, err := rd.Next(ctx)
			if err != nil {
				return nil, err
			}
			data, err := s.transferData(c.Data)
			if err != nil {
				s.log.Warn("stream: skipping a transfer state that does not decode", "seq", c.Seq, "err", err)
				return nil, nil
			}
			return []message{{seq: c.Seq, event: string(c.Phase), data: data}}, nil
		},
	}, nil
}

// oneLine returns b without line breaks: an SSE data line ends at the first
// one. Valid JSON has line breaks only between tokens, so compacting it
// changes no value.
func oneLine(b []byte) []byte {
	if !bytes.ContainsAny(b, "\r\n") {
		return b
	}
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		return bytes.Map(func(r rune) rune {
			if r == '\r' || r == '\n' {
				return ' '
			}
			return r
		}, b)
	}
	return out.Bytes()
}
