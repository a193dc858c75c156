package projections_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/engine/journal"
	"github.com/transferd/transferd/engine/journal/journaltest"
	"github.com/transferd/transferd/projections"
)

func TestFeed(t *testing.T) {
	j := journaltest.Open(t)
	appendFast(t, j, generate(9, 2000))
	s := newStore(t)
	mustCatchUp(t, j, s, projections.ProjectorOptions{MaxBatch: 250})

	msgs := readFeed(t, j, "")
	seen := map[string]bool{}
	for _, m := range msgs {
		if seen[m.MsgID] {
			t.Fatalf("state %s published twice", m.MsgID)
		}
		seen[m.MsgID] = true
		var v struct {
			TransferID string       `json:"transferId"`
			Phase      engine.Phase `json:"phase"`
			Version    int          `json:"version"`
		}
		if err := json.Unmarshal(m.Data, &v); err != nil {
			t.Fatal(err)
		}
		if m.Subject != journal.TransferSubject(v.TransferID, v.Phase) || m.MsgID != v.TransferID+":"+strconv.Itoa(v.Version) {
			t.Fatalf("message %s on %s carries %+v", m.MsgID, m.Subject, v)
		}
	}
	// Every transfer's latest state is on the feed, exactly as FeedMessage
	// encodes it.
	latest := map[string]feedMsg{}
	for _, m := range msgs {
		latest[m.MsgID] = m
	}
	for id, tr := range folded(t, j) {
		subject, msgID, data := projections.FeedMessage(tr)
		m, ok := latest[msgID]
		if !ok {
			t.Fatalf("transfer %s: latest state %s not published", id, msgID)
		}
		if m.Subject != subject || string(m.Data) != string(data) {
			t.Fatalf("transfer %s: published %s %s, want %s %s", id, m.Subject, m.Data, subject, data)
		}
	}
	if st, _ := s.Stats(); st.FeedPending != 0 {
		t.Errorf("%d transfers still in the outbox after a drained catch-up", st.FeedPending)
	}

	// A restart publishes nothing new.
	n := feedCount(t, j)
	mustCatchUp(t, j, s, projections.ProjectorOptions{})
	p, err := projections.Start(testContext(t), j, s, projections.ProjectorOptions{})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	p.Drain()
	<-p.Closed()
	if got := feedCount(t, j); got != n {
		t.Errorf("restarts published %d more states", got-n)
	}
}

// TestFeedCancellationConsumer is the README's importer: a plain JetStream
// consumer of TRANSFERS filtered on one phase.
func TestFeedCancellationConsumer(t *testing.T) {
	j := journaltest.Open(t)
	lifecycle := map[string][]string{
		"t-a": {"listener-triggered", "listener-errored", "transfer-cancellation-requested"},
		"t-b": {"listener-triggered", "app-data-uploaded", "transfer-settled"},
		"t-c": {"listener-triggered", "transfer-cancellation-requested"},
		"t-d": {"listener-triggered", "listener-errored"},
	}
	for _, id := range sortedKeys(lifecycle) {
		for i, typ := range lifecycle[id] {
			mustAppend(t, j, event(t, engine.SourceConnect, fmt.Sprintf(
				`{"eventType":%q,"transferId":%q,"messageId":"%s-%d","s3Key":"k"}`, typ, id, id, i), genEpoch))
		}
	}
	s := newStore(t)
	mustCatchUp(t, j, s, projections.ProjectorOptions{})

	// An importer that must settle cancelled transfers:
	ctx := testContext(t)
	cons, err := journaltest.JetStream(j).CreateOrUpdateConsumer(ctx, "TRANSFERS", jetstream.ConsumerConfig{
		Durable:       "settler",
		FilterSubject: "migrations.transfers.*.cancellation_requested",
		AckPolicy:     jetstream.AckExplicitPolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(10, jetstream.FetchMaxWait(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for m := range batch.Messages() {
		var tr struct {
			TransferID  string  `json:"transferId"`
			Phase       string  `json:"phase"`
			NeedsAction *string `json:"needsAction"`
		}
		if err := json.Unmarshal(m.Data(), &tr); err != nil {
			t.Fatal(err)
		}
		if tr.Phase != "cancellation_requested" || tr.NeedsAction == nil || *tr.NeedsAction != "settle" {
			t.Errorf("received %s", m.Data())
		}
		got = append(got, tr.TransferID)
		if err := m.Ack(); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"t-a", "t-c"}) {
		t.Errorf("consumer received %v, want [t-a t-c]", got)
	}
}

// TestFeedRepublishesTheOutbox: what a crash between commit and publish
// leaves behind (an outbox with entries, some of them already published)
// is published by the next projector, without duplicates.
func TestFeedRepublishesTheOutbox(t *testing.T) {
	j := journaltest.Open(t)
	appendFast(t, j, generate(10, 500))
	s := newStore(t)
	mustCatchUp(t, j, s, projections.ProjectorOptions{NoPublish: true})
	all := folded(t, j)
	if st, _ := s.Stats(); st.FeedPending != len(all) || feedCount(t, j) != 0 {
		t.Fatalf("after a NoPublish catch-up: outbox %d, feed %d; want %d and 0", st.FeedPending, feedCount(t, j), len(all))
	}
	// Publish half of them as if the crashed projector had got that far.
	for _, id := range sortedKeys(all)[:len(all)/2] {
		subject, msgID, data := projections.FeedMessage(all[id])
		if _, err := j.Publish(testContext(t), subject, msgID, data); err != nil {
			t.Fatal(err)
		}
	}
	mustCatchUp(t, j, s, projections.ProjectorOptions{})
	if n := feedCount(t, j); n != uint64(len(all)) {
		t.Errorf("feed has %d states, want one per transfer (%d)", n, len(all))
	}
	if st, _ := s.Stats(); st.FeedPending != 0 {
		t.Errorf("outbox has %d entries left", st.FeedPending)
	}
}

// TestFeedFailureDoesNotStopTheProjection: with TRANSFERS gone, the
// projection goes on and the outbox keeps the changes until the feed can
// publish them.
func TestFeedFailureDoesNotStopTheProjection(t *testing.T) {
	j := journaltest.Open(t)
	ctx := testContext(t)
	if err := journaltest.JetStream(j).DeleteStream(ctx, journal.StreamTransfers); err != nil {
		t.Fatal(err)
	}
	appendFast(t, j, generate(11, 300))
	s := newStore(t)
	mustCatchUp(t, j, s, projections.ProjectorOptions{DrainTimeout: 300 * time.Millisecond})
	last, _ := j.LastSeq(ctx)
	all := folded(t, j)
	if st, _ := s.Stats(); s.Checkpoint() != last || st.FeedPending != len(all) {
		t.Fatalf("checkpoint %d of %d, outbox %d of %d", s.Checkpoint(), last, st.FeedPending, len(all))
	}

	if _, err := journaltest.JetStream(j).CreateStream(ctx, jetstream.StreamConfig{
		Name: journal.StreamTransfers, Subjects: []string{"migrations.transfers.>"}, Storage: jetstream.FileStorage,
	}); err != nil {
		t.Fatal(err)
	}
	mustCatchUp(t, j, s, projections.ProjectorOptions{})
	if n := feedCount(t, j); n != uint64(len(all)) {
		t.Errorf("feed has %d states, want %d", n, len(all))
	}
	for _, m := range readFeed(t, j, "") {
		if !strings.HasPrefix(m.Subject, "migrations.transfers.") {
			t.Errorf("subject %s", m.Subject)
		}
	}
}

// TestFeedSyncsBeforeRemoval: the feed publishes a round of states without
// a sync each and syncs once; until that sync has returned, nothing it
// published leaves the outbox, so a power cut cannot lose a state change.
func TestFeedSyncsBeforeRemoval(t *testing.T) {
	j := journaltest.OpenConfig(t, journal.Config{SyncAlways: true})
	appendFast(t, j, generate(12, 600))
	s := newStore(t)
	all := folded(t, j)

	var syncs atomic.Int32
	entered, release := make(chan struct{}), make(chan struct{})
	opts := projections.WithFeedSync(projections.ProjectorOptions{}, func(ctx context.Context, sync func(context.Context) error) error {
		if syncs.Add(1) == 1 {
			close(entered)
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return sync(ctx)
	})
	p, err := projections.Start(testContext(t), j, s, opts)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-entered:
	case <-time.After(20 * time.Second):
		t.Fatal("the feed never synced")
	}
	// The first round's states are on TRANSFERS, not yet synced: however
	// long the projector goes on committing, the outbox keeps them all.
	published := feedCount(t, j)
	if published == 0 {
		t.Fatal("the feed synced before publishing anything")
	}
	// More events make the projector commit, and each commit removes the
	// entries the feed has handed over.
	appendFast(t, j, generate(14, 300))
	all = folded(t, j)
	deadline := time.Now().Add(20 * time.Second)
	for s.Checkpoint() < lastSeq(t, j) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(600 * time.Millisecond) // well past the projector's delay before removing acknowledged entries
	if n := len(projections.Outbox(s)); n != len(all) {
		t.Fatalf("outbox holds %d of %d transfers while the feed's first sync has not returned", n, len(all))
	}
	close(release)
	p.Drain()
	<-p.Closed()
	if n := len(projections.Outbox(s)); n != 0 {
		t.Errorf("outbox holds %d entries after the sync and a drain", n)
	}
	if n := feedCount(t, j); n != uint64(len(all)) {
		t.Errorf("feed has %d states, want one per transfer (%d)", n, len(all))
	}
	// One sync per round, not one per state.
	if n := int(syncs.Load()); n >= len(all)/4 {
		t.Errorf("%d syncs for %d states", n, len(all))
	}
}

// TestFeedSyncFailure: when the sync after a round fails, the round's
// states stay in the outbox and are published again (JetStream drops the
// copies by their Nats-Msg-Id) and synced by a later round.
func TestFeedSyncFailure(t *testing.T) {
	j := journaltest.OpenConfig(t, journal.Config{SyncAlways: true})
	appendFast(t, j, generate(13, 400))
	s := newStore(t)
	all := folded(t, j)

	var syncs, failed atomic.Int32
	opts := projections.WithFeedSync(projections.ProjectorOptions{}, func(ctx context.Context, sync func(context.Context) error) error {
		if syncs.Add(1) <= 2 {
			if n := len(projections.Outbox(s)); n != len(all) {
				t.Errorf("outbox holds %d of %d transfers before any sync succeeded", n, len(all))
			}
			failed.Add(1)
			return errors.New("injected sync failure")
		}
		return sync(ctx)
	})
	mustCatchUp(t, j, s, opts)
	if failed.Load() != 2 {
		t.Fatalf("%d syncs failed, want 2", failed.Load())
	}
	if n := len(projections.Outbox(s)); n != 0 {
		t.Errorf("outbox holds %d entries after a drained catch-up", n)
	}
	if n := feedCount(t, j); n != uint64(len(all)) {
		t.Errorf("feed has %d states, want one per transfer (%d)", n, len(all))
	}
}

func lastSeq(tb testing.TB, j *journal.Journal) uint64 {
	tb.Helper()
	seq, err := j.LastSeq(testContext(tb))
	if err != nil {
		tb.Fatal(err)
	}
	return seq
}
