package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/ingest/simulator"
)

// TestImporterOverNATSListen is the README's importer: with serve
// --nats-listen, a plain JetStream consumer in another process, with the
// credentials serve generated under --data, follows one phase of the
// TRANSFERS feed; an anonymous connection is refused, and the importer
// cannot read the tenants bucket.
func TestImporterOverNATSListen(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	keys, err := simulator.StartKeyServer("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { keys.Close() })
	data := t.TempDir()
	srv := startServe(t, append([]string{"--data", data, "--nats-listen", addr}, keys.ServeFlags(simulator.DefaultAppARI)...)...)

	res, err := simulator.Run(context.Background(), simulator.Config{
		Target: srv.url, KeyServer: keys, Transfers: 40, Concurrency: 8, Seed: 7, Timeout: 30 * time.Second,
	})
	if err == nil {
		err = res.Err()
	}
	if err != nil {
		t.Fatal(err)
	}
	settled := map[string]bool{}
	for _, x := range res.Expect {
		if x.Phase == engine.PhaseSettled {
			settled[x.TransferID] = true
		}
	}
	if len(settled) == 0 {
		t.Fatal("the workload settled no transfer")
	}

	if nc, err := nats.Connect("nats://" + addr); err == nil {
		nc.Close()
		t.Fatal("an anonymous connection to --nats-listen was accepted")
	}
	users, err := os.ReadFile(filepath.Join(data, "nats-users"))
	if err != nil {
		t.Fatal(err)
	}
	var user, pass string
	for _, line := range strings.Split(string(users), "\n") {
		if f := strings.Fields(line); len(f) == 2 && !strings.HasPrefix(f[0], "#") {
			user, pass = f[0], f[1]
		}
	}
	nc, err := nats.Connect("nats://"+addr, nats.UserInfo(user, pass))
	if err != nil {
		t.Fatalf("connect to --nats-listen %s as %q: %v", addr, user, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cons, err := js.CreateOrUpdateConsumer(ctx, "TRANSFERS", jetstream.ConsumerConfig{
		Durable: "settle-worker", FilterSubject: "migrations.transfers.*.settled", AckPolicy: jetstream.AckExplicitPolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for len(got) < len(settled) && ctx.Err() == nil {
		batch, err := cons.Fetch(100, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			var v engine.View
			if err := json.Unmarshal(m.Data(), &v); err != nil || v.Transfer == nil {
				t.Fatalf("feed message %s: %v", m.Data(), err)
			}
			if v.Phase != engine.PhaseSettled || !settled[v.TransferID] {
				t.Errorf("consumer got %s in phase %s", v.TransferID, v.Phase)
			}
			got[v.TransferID] = true
			m.Ack()
		}
	}
	if len(got) != len(settled) {
		t.Errorf("consumer saw %d settled transfers of %d", len(got), len(settled))
	}
	kctx, kcancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer kcancel()
	if _, err := js.KeyValue(kctx, "transferd_tenants"); err == nil {
		t.Error("the importer opened the tenants bucket")
	}
}
