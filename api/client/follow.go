package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/transferd/transferd/engine"
)

// FollowOptions select a feed for Follow.
type FollowOptions struct {
	// Type is "events" (envelopes from MIGRATIONS, the default) or
	// "transfers" (transfer states from TRANSFERS).
	Type string
	// Kind keeps only events of one kind (events only).
	Kind engine.Kind
	// TransferID keeps only one transfer's events or states.
	TransferID string
	// Phase keeps only states in one phase (transfers only).
	Phase engine.Phase
	// From is the first stream sequence to deliver; 0 delivers only
	// messages stored after Follow connects.
	From uint64
	// RetryDelay is the pause before reconnecting after a dropped
	// connection; default 1 s, or what the server asks for.
	RetryDelay time.Duration
}

// Message is one message of a feed.
type Message struct {
	// ID is the message's sequence in its stream (MIGRATIONS or TRANSFERS).
	ID uint64
	// Event is the event's kind (events) or the transfer's phase (transfers).
	Event string
	// Data is an envelope with "seq" (events) or a transfer view (transfers).
	Data json.RawMessage
}

// Envelope decodes an envelope of the events feed.
func (m Message) Envelope() (Event, error) {
	var e Event
	err := json.Unmarshal(m.Data, &e)
	return e, err
}

// Transfer decodes a transfer view of the transfers feed.
func (m Message) Transfer() (*engine.View, error) {
	var v engine.View
	err := json.Unmarshal(m.Data, &v)
	return &v, err
}

// errStopped wraps an error returned by Follow's callback.
type errStopped struct{ err error }

func (e errStopped) Error() string { return e.err.Error() }

// Follow streams the feed opts selects into fn, one message at a time in
// stream order, until ctx ends (it then returns ctx's error), fn returns an
// error (returned as is), or the server refuses the request (an *Error,
// e.g. ErrUnauthorized or ErrInvalid). When the connection drops or the
// server is unavailable, Follow reconnects after RetryDelay and resumes
// with Last-Event-ID just after the last message delivered (or the
// position the server announced), so that fn sees every message once,
// without gaps.
func (c *Client) Follow(ctx context.Context, opts FollowOptions, fn func(Message) error) error {
	q := url.Values{}
	if opts.Type != "" {
		q.Set("type", opts.Type)
	}
	if opts.Kind != "" {
		q.Set("kind", string(opts.Kind))
	}
	if opts.TransferID != "" {
		q.Set("transferId", opts.TransferID)
	}
	if opts.Phase != "" {
		q.Set("phase", string(opts.Phase))
	}
	if opts.From > 0 {
		q.Set("from", strconv.FormatUint(opts.From, 10))
	}
	st := &sseState{retry: opts.RetryDelay, fixed: opts.RetryDelay > 0}
	if !st.fixed {
		st.retry = time.Second
	}
	for {
		err := c.follow(ctx, q, st, fn)
		var stop errStopped
		var apiErr *Error
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.As(err, &stop):
			return stop.err
		case errors.As(err, &apiErr) && apiErr.Status < 500:
			return err
		}
		t := time.NewTimer(st.retry)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// sseState is what outlives one connection: the last event id and the
// reconnection delay.
type sseState struct {
	lastID string
	retry  time.Duration
	fixed  bool // RetryDelay was given: ignore the server's retry field
}

// follow runs one connection until it ends.
func (c *Client) follow(ctx context.Context, q url.Values, st *sseState, fn func(Message) error) error {
	req, err := c.request(ctx, "/v1/stream", q)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	if st.lastID != "" {
		req.Header.Set("Last-Event-ID", st.lastID)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("transferd: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return replyError(resp)
	}
	return readSSE(resp.Body, st, fn)
}

// readSSE parses an event stream (the WHATWG "event stream interpretation"),
// calling fn for each event with data; st.lastID follows every dispatched
// block, with data or without.
func readSSE(r io.Reader, st *sseState, fn func(Message) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var id, event string
	var data []byte
	hasID, hasData := false, false
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			if err == io.EOF {
				return io.ErrUnexpectedEOF // the server never ends a stream
			}
			return err
		}
		line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
		if len(line) == 0 {
			if hasID {
				st.lastID = id
			}
			if hasData {
				n, err := strconv.ParseUint(st.lastID, 10, 64)
				if err != nil {
					return fmt.Errorf("transferd: event id %q is not a sequence", st.lastID)
				}
				if err := fn(Message{ID: n, Event: event, Data: json.RawMessage(data)}); err != nil {
					return errStopped{err}
				}
			}
			event, data, hasID, hasData = "", nil, false, false
			continue
		}
		if line[0] == ':' {
			continue
		}
		name, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(name) {
		case "id":
			id, hasID = string(value), true
		case "event":
			event = string(value)
		case "data":
			if hasData {
				data = append(data, '\n')
			}
			data, hasData = append(data, value...), true
		case "retry":
			if ms, err := strconv.Atoi(string(value)); err == nil && ms > 0 && !st.fixed {
				st.retry = time.Duration(ms) * time.Millisecond
			}
		}
	}
}
