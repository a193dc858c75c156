package projections_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/engine/journal"
	"github.com/transferd/transferd/engine/journal/journaltest"
)

// genEpoch is when generated traffic starts.
var genEpoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// generator makes realistic, deterministic migration traffic: a window of
// concurrently active transfers, each going through its lifecycle
// (triggered, a few uploads, export completed, sometimes errored and
// cancelled, usually settled), grouped into migrations, with re-runs of
// finished transfers and occasional unknown event types. Every event has a
// messageId, so its identity is known without parsing.
type generator struct {
	rng     *rand.Rand
	now     time.Time
	active  []*genTransfer
	done    []*genTransfer // recently finished, candidates for re-runs
	migs    []genMigration
	nextMig int
}

type genTransfer struct {
	id, original string
	src          engine.Source
	issuer       string
	mig          genMigration
	script       []engine.Kind
	step         int
}

type genMigration struct {
	id, scope, name, cloud string
	createdAt              int64 // epoch milliseconds
}

func newGenerator(seed uint64, window int) *generator {
	g := &generator{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), now: genEpoch}
	for range window {
		g.active = append(g.active, g.newTransfer())
	}
	return g
}

func (g *generator) uuid() string {
	a, b := g.rng.Uint64(), g.rng.Uint64()
	return fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", a>>32, a>>16&0xffff, a&0xffff, b>>48, b&0xffffffffffff)
}

func (g *generator) migration() genMigration {
	if len(g.migs) == 0 || g.rng.IntN(3) == 0 {
		g.nextMig++
		m := genMigration{
			id: g.uuid(), scope: g.uuid(), name: fmt.Sprintf("Migration %d", g.nextMig),
			cloud:     fmt.Sprintf("https://site-%d.atlassian.net", g.rng.IntN(50)),
			createdAt: g.now.UnixMilli(),
		}
		g.migs = append(g.migs, m)
		if len(g.migs) > 64 {
			g.migs = g.migs[1:]
		}
		return m
	}
	return g.migs[g.rng.IntN(len(g.migs))]
}

func (g *generator) newTransfer() *genTransfer {
	t := &genTransfer{id: g.uuid()}
	if len(g.done) > 0 && g.rng.IntN(20) == 0 {
		orig := g.done[g.rng.IntN(len(g.done))]
		t.original, t.src, t.issuer, t.mig = orig.id, orig.src, orig.issuer, orig.mig
	} else {
		t.src = engine.SourceForge
		if g.rng.IntN(3) == 0 {
			t.src = engine.SourceConnect
		}
		t.issuer = fmt.Sprintf("%s-tenant-%d", t.src, g.rng.IntN(8))
		t.mig = g.migration()
	}
	t.script = []engine.Kind{engine.KindListenerTriggered}
	for range 1 + g.rng.IntN(4) {
		t.script = append(t.script, engine.KindAppDataUploaded)
	}
	if t.src == engine.SourceForge {
		t.script = append(t.script, engine.KindExportPhaseCompleted)
	}
	if g.rng.IntN(10) == 0 {
		t.script = append(t.script, engine.KindUnknown)
	}
	if g.rng.IntN(8) == 0 {
		t.script = append(t.script, engine.KindListenerErrored)
		if g.rng.IntN(2) == 0 {
			t.script = append(t.script, engine.KindCancellationRequested)
		}
	}
	if g.rng.IntN(10) != 0 {
		t.script = append(t.script, engine.KindTransferSettled)
	}
	return t
}

// next returns the next event of the traffic.
func (g *generator) next() *engine.Event {
	i := g.rng.IntN(len(g.active))
	t := g.active[i]
	k := t.script[t.step]
	t.step++
	if t.step == len(t.script) {
		g.done = append(g.done, t)
		if len(g.done) > 256 {
			g.done = g.done[1:]
		}
		g.active[i] = g.newTransfer()
	}
	g.now = g.now.Add(time.Duration(1+g.rng.IntN(20)) * time.Millisecond)
	return g.event(t, k)
}

func (g *generator) event(t *genTransfer, k engine.Kind) *engine.Event {
	id := g.uuid()
	eventType := engine.ForgeEventType(k)
	if t.src == engine.SourceConnect {
		eventType = engine.ConnectEventType(k)
	}
	if k == engine.KindUnknown {
		eventType = "avi:ecosystem.migration:brand:new"
	}
	body := fmt.Sprintf(`{"eventType":%q,"transferId":%q,"messageId":%q`, eventType, t.id, id)
	if t.original != "" {
		body += fmt.Sprintf(`,"originalTransferId":%q`, t.original)
	}
	body += fmt.Sprintf(`,"migrationDetails":{"migrationId":%q,"migrationScopeId":%q,"name":%q,"createdAt":%d,"cloudUrl":%q`,
		t.mig.id, t.mig.scope, t.mig.name, t.mig.createdAt, t.mig.cloud)
	if t.src == engine.SourceConnect {
		body += fmt.Sprintf(`,"jiraClientKey":%q,"confluenceClientKey":"unknown"`, t.issuer)
	}
	body += "}"
	switch k {
	case engine.KindAppDataUploaded:
		key := "s3Key"
		if t.src == engine.SourceForge {
			key = "key"
		}
		body += fmt.Sprintf(`,%q:%q,"label":"attachments-%d"`, key, g.uuid(), g.rng.IntN(3))
	case engine.KindListenerErrored:
		body += `,"transferError":{"exceptionType":"java.lang.IllegalStateException","safeStackTrace":"at com.example.Listener.onStartAppMigration(Listener.java:42)"}`
	case engine.KindTransferSettled:
		body += `,"status":"` + []string{"SUCCESS", "SUCCESS", "SUCCESS", "FAILED", "INCOMPLETE"}[g.rng.IntN(5)] + `"`
	}
	body += "}"
	e := &engine.Event{
		ID: id, MessageID: id, Source: t.src, Kind: k, EventType: eventType, TransferID: t.id,
		Issuer: t.issuer, ReceivedAt: g.now, OriginalTransferID: t.original, Payload: []byte(body),
	}
	// The digest, as ingest's Parse sets it: it is part of the event's key
	// (Event.Key), which appendFast puts in the Nats-Msg-Id as Append does.
	if p, err := engine.Parse(t.src, e.Payload); err == nil {
		e.Digest = p.Digest
	}
	return e
}

// generate returns n events of traffic from seed.
func generate(seed uint64, n int) []*engine.Event {
	g := newGenerator(seed, 64)
	events := make([]*engine.Event, n)
	for i := range events {
		events[i] = g.next()
	}
	return events
}

// appendFast appends events to j's MIGRATIONS stream with asynchronous
// publishes, exactly as journal.Append lays them out, and waits for every
// acknowledgement.
func appendFast(tb testing.TB, j *journal.Journal, events []*engine.Event) {
	tb.Helper()
	appendFastIDs(tb, j, events, (*engine.Event).DedupeKey)
}

// appendFastIDs is appendFast with the Nats-Msg-Id of each event chosen by
// msgID: a different one stores a re-delivery that JetStream's duplicate
// window would otherwise drop, as if it came after the window.
func appendFastIDs(tb testing.TB, j *journal.Journal, events []*engine.Event, msgID func(*engine.Event) string) {
	tb.Helper()
	js, err := jetstream.New(journaltest.Conn(j), jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		tb.Fatal(err)
	}
	futures := make([]jetstream.PubAckFuture, 0, len(events))
	for _, e := range events {
		f, err := js.PublishMsgAsync(&nats.Msg{
			Subject: journal.EventSubject(e.Source, e.TransferID, e.Kind),
			Header:  nats.Header{jetstream.MsgIDHeader: []string{msgID(e)}},
			Data:    journal.Encode(e),
		}, jetstream.WithStallWait(time.Minute))
		if err != nil {
			tb.Fatalf("publish: %v", err)
		}
		futures = append(futures, f)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		tb.Fatal("appends not acknowledged in time")
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			tb.Fatalf("append %s: %v", f.Msg().Header.Get(jetstream.MsgIDHeader), err)
		}
	}
}
