package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/transferd/transferd/api/client"
	"github.com/transferd/transferd/ingest/simulator"
)

// TestReadPathEndToEnd plays the platform against serve (Connect and
// Forge, shuffled, duplicated, re-runs), then reads every transfer back
// through the query API and checks it against what the simulator says it
// must be; then, with serve stopped, replay --verify finds no difference,
// audit export returns exactly the stored events, and a rebuild verifies.
func TestReadPathEndToEnd(t *testing.T) {
	keys, err := simulator.StartKeyServer("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { keys.Close() })
	dir := t.TempDir()
	const token = "test-token-0123456789"
	srv := startServe(t, append([]string{"--data", dir, "--api-token", token}, keys.ServeFlags(simulator.DefaultAppARI)...)...)

	res, err := simulator.Run(context.Background(), simulator.Config{
		Target: srv.url, KeyServer: keys, Transfers: 200, Concurrency: 32, Seed: 20261123,
		Duplicates: simulator.DefaultDuplicates, Reruns: simulator.DefaultReruns, Bad: simulator.DefaultBad,
		Timeout: 45 * time.Second,
	})
	if err == nil {
		err = res.Err()
	}
	if err != nil {
		t.Fatalf("simulate: %v\n%s", err, srv.stderr)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := client.New(srv.url, token)
	expect := map[string]simulator.TransferExpect{}
	for _, x := range res.Expect {
		expect[x.TransferID] = x
	}
	// The projector catches up asynchronously: wait until every transfer
	// matches, then check the rest once.
	waitMatches(t, srv.url, token, res)

	// The transfers that need action are the ones listed as such.
	needs := map[string]bool{}
	for _, x := range res.Expect {
		if x.NeedsAction != "" {
			needs[x.TransferID] = true
		}
	}
	if len(needs) == 0 {
		t.Error("no transfer of the run needs action")
	}
	listedNeeds := 0
	for v, err := range c.ListAll(ctx, client.Filter{NeedsAction: "true"}) {
		if err != nil {
			t.Fatal(err)
		}
		listedNeeds++
		if !needs[v.TransferID] || v.NeedsAction == nil || *v.NeedsAction != "settle" {
			t.Errorf("listed %s as needing action (expected: %v; needsAction set: %v)", v.TransferID, needs[v.TransferID], v.NeedsAction != nil)
		}
	}
	if listedNeeds != len(needs) {
		t.Errorf("needsAction=true lists %d transfers, want %d", listedNeeds, len(needs))
	}

	// Lineage: every transfer's root is the end of its originalTransferId
	// chain, and the root's lineage lists the whole family, oldest first.
	rootOf := func(id string) string {
		for expect[id].OriginalTransferID != "" {
			id = expect[id].OriginalTransferID
		}
		return id
	}
	reruns := 0
	for _, x := range res.Expect {
		if x.OriginalTransferID == "" {
			continue
		}
		reruns++
		l, err := c.Lineage(ctx, x.TransferID)
		if err != nil {
			t.Fatal(err)
		}
		if l.Root != rootOf(x.TransferID) {
			t.Errorf("lineage of %s: root %s, want %s", x.TransferID, l.Root, rootOf(x.TransferID))
		}
		seen := map[string]bool{}
		for _, v := range l.Transfers {
			seen[v.TransferID] = true
		}
		if !seen[x.TransferID] || !seen[x.OriginalTransferID] {
			t.Errorf("lineage of %s lacks itself or its original %s", x.TransferID, x.OriginalTransferID)
		}
	}
	if reruns == 0 {
		t.Fatal("the workload had no re-runs")
	}

	// The CLI lists every transfer through the API.
	var out, errOut lockedBuffer
	env := func(k string) string {
		if k == "TRANSFERD_API_TOKEN" {
			return token
		}
		return ""
	}
	if err := run(ctx, []string{"transferd", "transfers", "list", "--server", srv.url, "--all", "--json", "--limit", "37"}, env, strings.NewReader(""), &out, &errOut); err != nil {
		t.Fatalf("transfers list: %v\n%s", err, errOut.String())
	}
	var listed struct {
		Transfers []struct {
			TransferID string `json:"transferId"`
			Phase      string `json:"phase"`
		} `json:"transfers"`
	}
	if err := json.Unmarshal([]byte(out.String()), &listed); err != nil {
		t.Fatal(err)
	}
	if len(listed.Transfers) != len(res.Expect) {
		t.Errorf("transfers list --all: %d transfers, want %d", len(listed.Transfers), len(res.Expect))
	}
	for _, l := range listed.Transfers {
		if x, ok := expect[l.TransferID]; !ok || string(x.Phase) != l.Phase {
			t.Errorf("listed %s in phase %s, want %s", l.TransferID, l.Phase, x.Phase)
		}
	}
	some := res.Expect[0]
	out = lockedBuffer{}
	if err := run(ctx, []string{"transferd", "transfers", "get", some.TransferID, "--server", srv.url}, env, strings.NewReader(""), &out, &errOut); err != nil {
		t.Fatalf("transfers get: %v", err)
	}
	if !strings.Contains(out.String(), string(some.Phase)) {
		t.Errorf("transfers get shows no phase %s:\n%s", some.Phase, out.String())
	}

	srv.stop(t)

	// Audit: the export holds each stored event once, payloads intact.
	exportFile := filepath.Join(t.TempDir(), "audit.jsonl")
	errOut = lockedBuffer{}
	if err := run(ctx, []string{"transferd", "audit", "export", "--data", dir, "--out", exportFile, "--quiet"}, noEnv, strings.NewReader(""), &out, &errOut); err != nil {
		t.Fatalf("audit export: %v\n%s", err, errOut.String())
	}
	f, err := os.Open(exportFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ids []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 4<<20)
	for sc.Scan() {
		var line struct {
			Seq     uint64          `json:"seq"`
			ID      string          `json:"id"`
			Payload json.RawMessage `json:"payload"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil || line.Seq == 0 || len(line.Payload) == 0 {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		ids = append(ids, line.ID)
	}
	if err := res.CheckStored(ids); err != nil {
		t.Errorf("audit export: %v", err)
	}

	// Replay: the live projection equals a rebuild, before and after a rebuild.
	for _, args := range [][]string{{"--verify"}, {"--rebuild"}, {"--verify"}} {
		out, errOut = lockedBuffer{}, lockedBuffer{}
		argv := append([]string{"transferd", "replay", "--data", dir}, args...)
		if err := run(ctx, argv, noEnv, strings.NewReader(""), &out, &errOut); err != nil {
			t.Fatalf("replay %v: %v\n%s%s", args, err, out.String(), errOut.String())
		}
	}
	if !strings.Contains(out.String(), "verified") {
		t.Errorf("replay --verify said: %s", out.String())
	}
}

// TestReplayVerifyWithoutProjection: verifying a data directory that has no
// projection fails with a message saying so (differences themselves are
// tested in package projections).
func TestReplayVerifyWithoutProjection(t *testing.T) {
	var out, errOut lockedBuffer
	err := run(context.Background(), []string{"transferd", "replay", "--verify", "--data", t.TempDir(), "--quiet"}, noEnv, strings.NewReader(""), &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "no projection") {
		t.Fatalf("replay --verify on an empty data dir: %v", err)
	}
}

// TestServeRebuildsAnOldProjection: a projection written by an older
// version (schema 1 here) is rebuilt from the journal when serve starts,
// instead of refusing to start or answering from stale facts, and replay
// --verify then finds nothing to report.
func TestServeRebuildsAnOldProjection(t *testing.T) {
	dir, args, srv, res := playServe(t, 60, 16, 20261203)
	srv.stop(t)

	// What an older version left: schema 1, and no triggeredAt.
	db, err := bolt.Open(projectionFile(dir), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte("schema"), binary.BigEndian.AppendUint64(nil, 1))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}

	srv = startServe(t, append(args, "--log-level", "info")...)
	waitMatches(t, srv.url, playToken, res)
	if !strings.Contains(srv.stderr.String(), "rebuilding the projection from the journal") {
		t.Errorf("serve did not say it rebuilt the projection:\n%s", srv.stderr)
	}
	srv.stop(t)
	var out, errOut lockedBuffer
	if err := run(context.Background(), []string{"transferd", "replay", "--verify", "--data", dir, "--quiet"}, noEnv, strings.NewReader(""), &out, &errOut); err != nil {
		t.Fatalf("replay --verify after the rebuild: %v\n%s%s", err, out.String(), errOut.String())
	}
}

// TestServeRebuildsATornProjection: serve commits its projection without
// syncs, under a mark that a clean stop removes; when the machine went
// down while serve ran (the mark names another boot) the file may be torn
// (here every page but the meta pages is zeroed), and serve rebuilds it
// from the journal at start, without reading it, instead of crashing on
// it.
func TestServeRebuildsATornProjection(t *testing.T) {
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		t.Skip("no boot id here: serve syncs every commit")
	}
	dir, args, srv, res := playServe(t, 40, 8, 20261204)
	mark := projectionFile(dir) + ".unsynced"
	if b, err := os.ReadFile(mark); err != nil || !bytes.Equal(bytes.TrimSpace(b), bytes.TrimSpace(boot)) {
		t.Errorf("mark while serving: %q, %v; want this boot's id", b, err)
	}
	srv.stop(t)
	if _, err := os.Stat(mark); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("mark after a clean stop: %v, want none", err)
	}

	// Left by a boot that ended with the projection's last commits in the
	// page cache only.
	if err := os.WriteFile(mark, []byte("00000000-0000-4000-8000-000000000000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(projectionFile(dir), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := f.Stat()
	page := int64(os.Getpagesize())
	if _, err := f.WriteAt(make([]byte, fi.Size()-2*page), 2*page); err != nil {
		t.Fatal(err)
	}
	f.Close()

	srv = startServe(t, append(args, "--log-level", "info")...)
	waitMatches(t, srv.url, playToken, res)
	if !strings.Contains(srv.stderr.String(), "the machine restarted while it had unsynced commits") {
		t.Errorf("serve did not say why it rebuilt the projection:\n%s", srv.stderr)
	}
	srv.stop(t)
	var out, errOut lockedBuffer
	if err := run(context.Background(), []string{"transferd", "replay", "--verify", "--data", dir, "--quiet"}, noEnv, strings.NewReader(""), &out, &errOut); err != nil {
		t.Fatalf("replay --verify after the rebuild: %v\n%s%s", err, out.String(), errOut.String())
	}
}

// playToken is playServe's API token.
const playToken = "test-token-0123456789"

// playServe starts serve on a new data directory, trusting a new key
// server, plays the simulator's seeded transfers against it with the given
// concurrency, and waits until the query API shows every transfer as the
// simulator expects. It returns the directory, serve's arguments, the
// serve (still running) and what the simulator expects.
func playServe(t *testing.T, transfers, concurrency int, seed int64) (string, []string, *serving, simulator.Result) {
	t.Helper()
	keys, err := simulator.StartKeyServer("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { keys.Close() })
	dir := t.TempDir()
	args := append([]string{"--data", dir, "--api-token", playToken}, keys.ServeFlags(simulator.DefaultAppARI)...)
	srv := startServe(t, args...)
	res, err := simulator.Run(context.Background(), simulator.Config{
		Target: srv.url, KeyServer: keys, Transfers: transfers, Concurrency: concurrency, Seed: seed, Timeout: 45 * time.Second,
	})
	if err == nil {
		err = res.Err()
	}
	if err != nil {
		t.Fatalf("simulate: %v\n%s", err, srv.stderr)
	}
	waitMatches(t, srv.url, playToken, res)
	return dir, args, srv, res
}

// waitMatches waits until every transfer of res reads back through the
// query API as the simulator expects.
func waitMatches(t *testing.T, url, token string, res simulator.Result) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := client.New(url, token)
	deadline := time.Now().Add(30 * time.Second)
	for _, x := range res.Expect {
		for {
			v, err := c.Transfer(ctx, x.TransferID)
			if err == nil {
				if err = x.Match(v.Transfer); err == nil {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("transfer %s through the API: %v", x.TransferID, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// TestServeRebuildsAProjectionAheadOfTheJournal: what a power cut can
// leave with --sync always, a projection that folded events the journal
// lost before syncing them (never acknowledged), is rebuilt from the
// journal when serve starts, instead of serve refusing to start.
func TestServeRebuildsAProjectionAheadOfTheJournal(t *testing.T) {
	long, _, srv, gone := playServe(t, 40, 8, 1)
	srv.stop(t)
	short, args, srv, kept := playServe(t, 5, 8, 2)
	srv.stop(t)
	data, err := os.ReadFile(projectionFile(long))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(projectionFile(short), data, 0o600); err != nil {
		t.Fatal(err)
	}

	srv = startServe(t, append(args, "--log-level", "info")...)
	waitMatches(t, srv.url, playToken, kept)
	if !strings.Contains(srv.stderr.String(), "it is ahead of the journal") {
		t.Errorf("serve did not say why it rebuilt the projection:\n%s", srv.stderr)
	}
	c := client.New(srv.url, playToken)
	for _, x := range gone.Expect {
		if _, err := c.Transfer(context.Background(), x.TransferID); err == nil {
			t.Errorf("transfer %s, not in the journal, still answered after the rebuild", x.TransferID)
		}
	}
	srv.stop(t)
}
