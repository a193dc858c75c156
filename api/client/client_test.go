package client_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/api/apitest"
	"github.com/transferd/transferd/api/client"
	"github.com/transferd/transferd/engine"
)

// world appends t-1 (triggered, uploaded, errored), t-2 (triggered, in
// mig-2) and t-3 (a re-run of t-1) and waits for the projection.
func world(t *testing.T) (*apitest.Env, []*engine.Event, []uint64) {
	t.Helper()
	env := apitest.New(t, apitest.Options{})
	sec := func(n int) time.Time { return apitest.Epoch.Add(time.Duration(n) * time.Second) }
	events := []*engine.Event{
		apitest.Event(t, apitest.Spec{TransferID: "t-1", MessageID: "m-1", ReceivedAt: sec(0), Extra: `"note" : "é \u00e9 <&>"`}),
		apitest.Event(t, apitest.Spec{TransferID: "t-1", Kind: engine.KindAppDataUploaded, MessageID: "m-2", ReceivedAt: sec(1)}),
		apitest.Event(t, apitest.Spec{TransferID: "t-1", Kind: engine.KindListenerErrored, MessageID: "m-3", ReceivedAt: sec(2)}),
		apitest.Event(t, apitest.Spec{TransferID: "t-2", MessageID: "m-4", ReceivedAt: sec(3), MigrationID: "mig-2"}),
		apitest.Event(t, apitest.Spec{TransferID: "t-3", MessageID: "m-5", ReceivedAt: sec(4), Original: "t-1"}),
	}
	var seqs []uint64
	for _, a := range env.Append(events...) {
		seqs = append(seqs, a.Seq)
	}
	env.Sync()
	return env, events, seqs
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestClient(t *testing.T) {
	env, events, seqs := world(t)
	ctx := testContext(t)
	c := client.New(env.URL+"/", apitest.Token)

	v, err := c.Transfer(ctx, "t-1")
	if err != nil || v.Phase != engine.PhaseListenerErrored || v.Version != 3 || v.NeedsAction == nil {
		t.Errorf("Transfer(t-1) = %+v, %v", v, err)
	}
	v, err = c.TransferAt(ctx, "t-1", client.Seq(seqs[1]))
	if err != nil || v.Phase != engine.PhaseDataUploaded || v.Version != 2 {
		t.Errorf("TransferAt(t-1, seq %d) = %+v, %v", seqs[1], v, err)
	}
	v, err = c.TransferAt(ctx, "t-1", client.Time(apitest.Epoch.In(time.FixedZone("x", -7200))))
	if err != nil || v.Phase != engine.PhaseListenerTriggered || v.Version != 1 {
		t.Errorf("TransferAt(t-1, epoch) = %+v, %v", v, err)
	}

	page, err := c.List(ctx, client.Filter{MigrationID: "mig-1"})
	if err != nil || len(page.Transfers) != 2 || page.NextCursor != "" {
		t.Errorf("List(mig-1) = %+v, %v", page, err)
	}
	var all []string
	for v, err := range c.ListAll(ctx, client.Filter{Limit: 1}) {
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, v.TransferID)
	}
	if want := []string{"t-3", "t-2", "t-1"}; !slices.Equal(all, want) {
		t.Errorf("ListAll = %v, want %v", all, want)
	}

	evs, err := c.Events(ctx, "t-1")
	if err != nil || len(evs) != 3 {
		t.Fatalf("Events(t-1) = %+v, %v", evs, err)
	}
	for i, e := range evs {
		if e.Seq != seqs[i] || e.ID != events[i].ID || !bytes.Equal(e.Payload, events[i].Payload) || !e.ReceivedAt.Equal(events[i].ReceivedAt) {
			t.Errorf("event %d = %+v", i, e)
		}
	}

	l, err := c.Lineage(ctx, "t-3")
	if err != nil || l.Root != "t-1" || len(l.Transfers) != 2 {
		t.Errorf("Lineage(t-3) = %+v, %v", l, err)
	}
	m, err := c.Migration(ctx, "mig-2")
	if err != nil || m.MigrationID != "mig-2" || m.Migration == nil || len(m.Transfers) != 1 {
		t.Errorf("Migration(mig-2) = %+v, %v", m, err)
	}
}

func TestClientErrors(t *testing.T) {
	env, _, _ := world(t)
	ctx := testContext(t)
	c := client.New(env.URL, apitest.Token)
	tests := []struct {
		name  string
		call  func() error
		want  error
		param string
	}{
		{"unknown transfer", func() error { _, err := c.Transfer(ctx, "nope"); return err }, client.ErrNotFound, ""},
		{"not yet", func() error { _, err := c.TransferAt(ctx, "t-2", client.Seq(1)); return err }, client.ErrNotFound, ""},
		{"bad phase", func() error { _, err := c.List(ctx, client.Filter{Phase: "done"}); return err }, client.ErrInvalid, "phase"},
		{"bad limit", func() error { _, err := c.List(ctx, client.Filter{Limit: 1000}); return err }, client.ErrInvalid, "limit"},
		{"unknown migration", func() error { _, err := c.Migration(ctx, "nope"); return err }, client.ErrNotFound, ""},
		{"wrong token", func() error { _, err := client.New(env.URL, "wrong").Transfer(ctx, "t-1"); return err }, client.ErrUnauthorized, ""},
		{"follow refused", func() error {
			return client.New(env.URL, "wrong").Follow(ctx, client.FollowOptions{}, func(client.Message) error { return nil })
		}, client.ErrUnauthorized, ""},
		{"follow invalid", func() error {
			return c.Follow(ctx, client.FollowOptions{Kind: "nope"}, func(client.Message) error { return nil })
		}, client.ErrInvalid, "kind"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			var e *client.Error
			if !errors.Is(err, tc.want) || !errors.As(err, &e) || e.Param != tc.param {
				t.Errorf("err = %v (%+v), want %v naming %q", err, e, tc.want, tc.param)
			}
		})
	}
}

// TestFollowResumes drops every connection twice while Follow reads, and
// checks that fn saw every message once, in order.
func TestFollowResumes(t *testing.T) {
	for _, typ := range []string{"events", "transfers"} {
		t.Run(typ, func(t *testing.T) {
			env, _, _ := world(t)
			ctx, cancel := context.WithCancel(testContext(t))
			defer cancel()
			c := client.New(env.URL, apitest.Token)

			var mu sync.Mutex
			var ids []uint64
			final := map[string]int{}
			want := map[string]int{"t-1": 3, "t-2": 2, "t-3": 1, "t-4": 1}
			more := []*engine.Event{
				apitest.Event(t, apitest.Spec{TransferID: "t-2", Kind: engine.KindAppDataUploaded, MessageID: "m-6", MigrationID: "mig-2"}),
				apitest.Event(t, apitest.Spec{TransferID: "t-4", MessageID: "m-7"}),
			}
			done := make(chan error, 1)
			appendNow := make(chan struct{})
			var once sync.Once
			go func() {
				done <- c.Follow(ctx, client.FollowOptions{Type: typ, From: 1, RetryDelay: 10 * time.Millisecond}, func(m client.Message) error {
					mu.Lock()
					defer mu.Unlock()
					ids = append(ids, m.ID)
					if typ == "events" {
						e, err := m.Envelope()
						if err != nil || e.Seq != m.ID || string(e.Kind) != m.Event {
							t.Errorf("message %+v: %+v, %v", m, e, err)
						}
						final[e.TransferID]++
					} else {
						v, err := m.Transfer()
						if err != nil || string(v.Phase) != m.Event {
							t.Errorf("message %+v: %v", m, err)
						}
						final[v.TransferID] = max(final[v.TransferID], v.Version)
					}
					if len(ids) == 1 || len(ids) == 3 {
						env.Server.CloseClientConnections() // drop mid-stream
					}
					if len(ids) == 2 {
						once.Do(func() { close(appendNow) })
					}
					for k, v := range want {
						if final[k] < v {
							return nil
						}
					}
					return errDone
				})
			}()
			select {
			case <-appendNow:
				env.Append(more...)
			case err := <-done:
				t.Fatalf("Follow = %v before two messages", err)
			case <-time.After(10 * time.Second):
				t.Fatal("Follow delivered fewer than two messages")
			}
			select {
			case err := <-done:
				if !errors.Is(err, errDone) {
					t.Fatalf("Follow = %v", err)
				}
			case <-time.After(10 * time.Second):
				mu.Lock()
				t.Fatalf("Follow did not see every message: %v, %v", ids, final)
			}
			for i, id := range ids {
				if id != uint64(i+1) {
					t.Fatalf("ids %v: want 1, 2, 3, … without gaps or repeats", ids)
				}
			}
		})
	}
}

var errDone = errors.New("done")
