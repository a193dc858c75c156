package journal_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/transferd/transferd/engine/journal"
	"github.com/transferd/transferd/engine/journal/journaltest"
)

// TestListenImporters: the embedded server's listener admits only its
// importers, who can consume MIGRATIONS and TRANSFERS through pull
// consumers and ack, but cannot read or write the buckets, publish events,
// or create a push consumer; an anonymous connection, a wrong password and
// a listener without users are refused.
func TestListenImporters(t *testing.T) {
	if _, err := journal.Open(testContext(t), journal.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0"}); err == nil {
		t.Fatal("Open with Listen and no ListenUsers succeeded")
	}
	j := journaltest.OpenConfig(t, journal.Config{Listen: "127.0.0.1:0",
		ListenUsers: []journal.ListenUser{{Name: "importer", Password: "importer-pass-0123456789"}}})
	ctx := testContext(t)
	for i := range 3 {
		mustAppend(t, j, event(t, "t-listen", i))
	}
	if _, err := j.Publish(ctx, "migrations.transfers.t-listen.settled", "", []byte(`{"transferId":"t-listen"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Tenants().Put(ctx, "tenant-1", []byte(`{"clientKey":"tenant-1","sharedSecret":"do-not-read"}`)); err != nil {
		t.Fatal(err)
	}
	url := j.ClientURL()

	for name, opts := range map[string][]nats.Option{
		"anonymous":      nil,
		"wrong password": {nats.UserInfo("importer", "guess")},
		"internal user":  {nats.UserInfo("transferd", "guess")},
	} {
		if nc, err := nats.Connect(url, opts...); err == nil {
			nc.Close()
			t.Errorf("%s connection accepted", name)
		}
	}

	violations := make(chan error, 16)
	nc, err := nats.Connect(url, nats.UserInfo("importer", "importer-pass-0123456789"),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { violations <- err }))
	if err != nil {
		t.Fatalf("importer connection: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for stream, want := range map[string]int{journal.StreamEvents: 3, journal.StreamTransfers: 1} {
		cons, err := js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{Durable: "imp-" + stream, AckPolicy: jetstream.AckExplicitPolicy})
		if err != nil {
			t.Fatalf("create a consumer on %s: %v", stream, err)
		}
		batch, err := cons.Fetch(want, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range batch.Messages() {
			if err := m.DoubleAck(ctx); err != nil {
				t.Errorf("ack on %s: %v", stream, err)
			}
			got++
		}
		if got != want {
			t.Errorf("consumer on %s got %d messages, want %d", stream, got, want)
		}
		oc, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
		if err != nil {
			t.Fatalf("ordered consumer on %s: %v", stream, err)
		}
		if m, err := oc.Next(jetstream.FetchMaxWait(2 * time.Second)); err != nil || m == nil {
			t.Errorf("ordered consumer on %s: %v", stream, err)
		}
	}

	// Push consumers deliver in the journal's account: refused.
	_, err = js.CreateOrUpdateConsumer(ctx, journal.StreamTransfers, jetstream.ConsumerConfig{
		Durable: "push", DeliverSubject: "$KV.transferd_tenants.tenant-1", AckPolicy: jetstream.AckNonePolicy})
	if err == nil || !strings.Contains(err.Error(), "push consumers") {
		t.Errorf("push consumer: %v", err)
	}

	// The buckets: neither the KV API nor its subjects.
	if _, err := js.KeyValue(ctx, journal.BucketTenants); err == nil {
		t.Error("importer opened the tenants bucket")
	}
	if _, err := js.Stream(ctx, "KV_"+journal.BucketTenants); err == nil {
		t.Error("importer read the tenants bucket's stream info")
	}
	if m, err := nc.Request("$JS.API.DIRECT.GET.KV_transferd_tenants.$KV.transferd_tenants.tenant-1", nil, time.Second); err == nil {
		t.Errorf("importer read a tenant: %q", m.Data)
	}
	sub, err := nc.SubscribeSync("$KV.transferd_tenants.>")
	if err == nil {
		nc.Flush()
		if m, err := sub.NextMsg(500 * time.Millisecond); err == nil {
			t.Errorf("importer got a tenant message %q", m.Data)
		}
	}
	ctx = testContext(t) // the refusals above each waited out a timeout
	before := mustLastSeq(t, j)
	nc.Publish("migrations.events.connect.t-listen.forged", []byte(`{}`))
	nc.Publish("$KV.transferd_tenants.tenant-1", []byte(`{}`))
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, err := js.Publish(pctx, "migrations.events.connect.t-listen.forged", []byte(`{}`)); err == nil {
		t.Error("importer published an event")
	}
	nc.Flush()
	if after := mustLastSeq(t, j); after != before {
		t.Errorf("MIGRATIONS went from %d to %d messages after the importer's publishes", before, after)
	}
	if e, err := j.Tenants().Get(ctx, "tenant-1"); err != nil || !strings.Contains(string(e.Value), "do-not-read") {
		t.Errorf("tenant after the importer's publish: %v", err)
	}
	deadline := time.After(2 * time.Second)
	var seen []string
	for len(seen) < 2 {
		select {
		case err := <-violations:
			if errors.Is(err, nats.ErrPermissionViolation) || strings.Contains(err.Error(), "Permissions Violation") {
				seen = append(seen, err.Error())
			}
		case <-deadline:
			t.Fatalf("permission violations reported: %q", seen)
		}
	}
}
