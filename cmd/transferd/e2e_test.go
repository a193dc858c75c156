package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/engine/journal"
	"github.com/transferd/transferd/ingest/simulator"
)

// lockedBuffer is a bytes.Buffer safe for the concurrent writes of a
// command running in a goroutine.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func noEnv(string) string { return "" }

// serving is a `transferd serve` running in-process, through run.
type serving struct {
	url    string
	stderr *lockedBuffer
	stop   func(t testing.TB) // cancels serve and waits for a clean exit
}

// startServe runs `transferd serve --listen 127.0.0.1:0 args…` as main
// would, reads the address it prints, and waits until /healthz answers.
// The test ends with serve stopped.
func startServe(t testing.TB, args ...string) *serving {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	s := &serving{stderr: &lockedBuffer{}}
	done := make(chan error, 1)
	go func() {
		argv := append([]string{"transferd", "serve", "--listen", "127.0.0.1:0", "--log-level", "warn"}, args...)
		err := run(ctx, argv, noEnv, strings.NewReader(""), pw, s.stderr)
		pw.Close()
		done <- err
	}()
	var once sync.Once
	s.stop = func(t testing.TB) {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("serve: %v\n%s", err, s.stderr)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("serve did not stop within 30 s\n%s", s.stderr)
			}
		})
	}
	t.Cleanup(func() { s.stop(t) })

	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if addr, ok := strings.CutPrefix(sc.Text(), "listening on "); ok {
				lines <- addr
			}
		}
		io.Copy(io.Discard, pr)
	}()
	select {
	case s.url = <-lines:
	case err := <-done:
		t.Fatalf("serve exited: %v\n%s", err, s.stderr)
	case <-time.After(30 * time.Second):
		t.Fatalf("serve printed no address within 30 s\n%s", s.stderr)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(s.url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve at %s not healthy: %v", s.url, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkJournal opens the journal in dir (serve stopped) and checks it
// against res: exactly the acknowledged events stored, once each, none of
// the refused requests, and every transfer folding to what the simulator
// expects.
func checkJournal(t *testing.T, cfg journal.Config, res simulator.Result) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	j, err := journal.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	var ids []string
	byTransfer := map[string][]*engine.Event{}
	for env, err := range j.Scan(ctx, "") {
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, env.ID)
		e, err := env.Event()
		if err != nil {
			t.Fatal(err)
		}
		byTransfer[e.TransferID] = append(byTransfer[e.TransferID], e)
	}
	if len(ids) == 0 {
		t.Fatal("the stream is empty")
	}
	if err := res.CheckStored(ids); err != nil {
		t.Error(err)
	}
	if len(byTransfer) != len(res.Expect) {
		t.Errorf("%d transfers stored, %d expected", len(byTransfer), len(res.Expect))
	}
	for _, x := range res.Expect {
		if err := x.Match(engine.Fold(x.TransferID, byTransfer[x.TransferID])); err != nil {
			t.Error(err)
		}
	}
}

// TestEndToEnd runs serve as main does, plays the platform against it with
// 200 transfers from Connect and Forge tenants (signed installs, shuffled
// and duplicated events, re-runs, bad requests), stops serve, and reads the
// stream back.
func TestEndToEnd(t *testing.T) {
	keys, err := simulator.StartKeyServer("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { keys.Close() })
	dir := t.TempDir()
	srv := startServe(t, append([]string{"--data", dir}, keys.ServeFlags(simulator.DefaultAppARI)...)...)

	progress := &lockedBuffer{}
	res, err := simulator.Run(context.Background(), simulator.Config{
		Target: srv.url, KeyServer: keys, Transfers: 200, Concurrency: 32, Seed: 20260301,
		Duplicates: simulator.DefaultDuplicates, Reruns: simulator.DefaultReruns, Bad: 0.1,
		Timeout: 45 * time.Second, Progress: progress,
	})
	if err != nil {
		t.Fatalf("%v\n%s\n%s", err, progress, srv.stderr)
	}
	var summary strings.Builder
	res.WriteText(&summary)
	t.Log("\n" + summary.String())
	if err := res.Err(); err != nil {
		t.Fatalf("%v\n%s", err, srv.stderr)
	}
	if res.ConnectTenants == 0 || res.ForgeInstallations == 0 || res.Reruns != 30 || res.Sent <= int64(res.Events) {
		t.Fatalf("not the mixed workload asked for: %+v", res)
	}
	if res.Bad.Sent == 0 || res.Bad.Refused+res.Bad.RefusedOther != res.Bad.Sent {
		t.Errorf("bad requests: %+v", res.Bad)
	}
	for _, k := range simulator.BadKinds {
		if res.Bad.ByKind[k][k.Want()] == 0 {
			t.Errorf("no %s request refused with %d: %v", k, k.Want(), res.Bad.ByKind[k])
		}
	}

	srv.stop(t)
	checkJournal(t, journal.Config{DataDir: dir}, res)

	// The audit agrees with what serve wrote, with no rebuild first.
	var out, errOut lockedBuffer
	err = run(context.Background(), []string{"transferd", "replay", "--verify", "--quiet", "--data", dir}, noEnv, strings.NewReader(""), &out, &errOut)
	if err != nil || !strings.Contains(out.String(), "verified") {
		t.Errorf("replay --verify after serve: %v\n%s%s", err, out.String(), errOut.String())
	}
}

// TestSimulateCommand runs the simulate command itself, with unsigned
// installs against a serve that allows them.
func TestSimulateCommand(t *testing.T) {
	dir := t.TempDir()
	srv := startServe(t, "--data", dir, "--allow-unsigned-install")
	expect := filepath.Join(dir, "expect.json")
	var stdout, stderr lockedBuffer
	err := run(context.Background(), []string{"transferd", "simulate", "--target", srv.url, "--keys-listen", "127.0.0.1:0",
		"--install", "unsigned", "--source", "connect", "--transfers", "30", "-c", "8", "--seed", "9", "--tenants-file", "",
		"--json", "--expect", expect}, noEnv, strings.NewReader(""), &stdout, &stderr)
	if err != nil {
		t.Fatalf("simulate: %v\n%s", err, stderr.String())
	}
	var summary simulator.Result
	if err := json.Unmarshal([]byte(stdout.String()), &summary); err != nil {
		t.Fatalf("--json: %v\n%s", err, stdout.String())
	}
	if summary.Seed != 9 || summary.Acknowledged < int64(summary.Events) || summary.Events == 0 || summary.ForgeInstallations != 0 {
		t.Errorf("summary: %s", stdout.String())
	}
	var file simulator.ExpectFile
	b, err := os.ReadFile(expect)
	if err == nil {
		err = json.Unmarshal(b, &file)
	}
	if err != nil {
		t.Fatalf("--expect: %v", err)
	}
	if len(file.Acked) != summary.Events || len(file.Transfers) == 0 || len(file.Refused) == 0 {
		t.Errorf("expect file: %d acked of %d events, %d transfers, %d refused", len(file.Acked), summary.Events, len(file.Transfers), len(file.Refused))
	}
	if !strings.Contains(stderr.String(), "key server on http://127.0.0.1:") {
		t.Errorf("the chosen key server address is not shown:\n%s", stderr.String())
	}

	srv.stop(t)
	checkJournal(t, journal.Config{DataDir: dir}, simulator.Result{Acked: file.Acked, Refused: file.Refused, Expect: file.Transfers})
}

// TestSimulateReusesTenants runs simulate twice against one serve: the
// second run re-installs the first run's Connect tenants (signed with their
// shared secrets, as Connect re-installs) instead of installing new ones,
// and delivers new transfers. The tenants serve holds are the same set.
func TestSimulateReusesTenants(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	srv := startServe(t, "--data", dir, "--allow-unsigned-install")
	tenantsFile := filepath.Join(state, "tenants.json")
	issuers, transfers := []map[string]bool{}, map[string]int{}
	for i := range 2 {
		expect := filepath.Join(state, fmt.Sprintf("expect-%d.json", i))
		var stdout, stderr lockedBuffer
		err := run(context.Background(), []string{"transferd", "simulate", "--target", srv.url, "--keys-listen", "127.0.0.1:0",
			"--keys-file", filepath.Join(state, "keys.pem"), "--tenants-file", tenantsFile,
			"--install", "unsigned", "--source", "connect", "--tenants", "3", "--transfers", "20", "-c", "8", "--expect", expect},
			noEnv, strings.NewReader(""), &stdout, &stderr)
		if err != nil {
			t.Fatalf("simulate run %d: %v\n%s%s", i+1, err, stdout.String(), stderr.String())
		}
		if kept := strings.Contains(stderr.String(), "3 of its 3 tenants kept in "+tenantsFile); kept != (i == 1) {
			t.Errorf("run %d: tenants kept noted %v:\n%s", i+1, kept, stderr.String())
		}
		var file simulator.ExpectFile
		b, err := os.ReadFile(expect)
		if err == nil {
			err = json.Unmarshal(b, &file)
		}
		if err != nil {
			t.Fatal(err)
		}
		set := map[string]bool{}
		for _, x := range file.Transfers {
			set[x.Issuer] = true
			transfers[x.TransferID]++
		}
		issuers = append(issuers, set)
	}
	if len(issuers[0]) != 3 || !maps.Equal(issuers[0], issuers[1]) {
		t.Errorf("the runs played %v and %v, want the same 3 tenants", issuers[0], issuers[1])
	}
	for id, n := range transfers {
		if n > 1 {
			t.Errorf("transfer %s delivered by both runs", id)
		}
	}
	srv.stop(t)

	var out, errOut lockedBuffer
	if err := run(context.Background(), []string{"transferd", "tenants", "list", "--json", "--data", dir}, noEnv, strings.NewReader(""), &out, &errOut); err != nil {
		t.Fatalf("tenants list: %v\n%s", err, errOut.String())
	}
	var listed struct {
		Tenants []struct {
			ClientKey string `json:"clientKey"`
		} `json:"tenants"`
	}
	if err := json.Unmarshal([]byte(out.String()), &listed); err != nil {
		t.Fatal(err)
	}
	installed := map[string]bool{}
	for _, tn := range listed.Tenants {
		installed[tn.ClientKey] = true
	}
	if len(listed.Tenants) != 3 || !maps.Equal(installed, issuers[0]) {
		t.Errorf("serve holds tenants %v, want the runs' %v", installed, issuers[0])
	}
}

// TestSimulateRegisteredTenant uses a tenant added with `transferd tenants
// add` before serve starts.
func TestSimulateRegisteredTenant(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte("s3cret-of-acme-0123456789abcdefghij\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out lockedBuffer
	if err := run(context.Background(), []string{"transferd", "tenants", "add", "--data", dir, "--client-key", "acme", "--shared-secret-file", secretFile},
		noEnv, strings.NewReader(""), &out, &out); err != nil {
		t.Fatalf("tenants add: %v\n%s", err, out.String())
	}
	srv := startServe(t, "--data", dir)
	var stdout, stderr lockedBuffer
	err := run(context.Background(), []string{"transferd", "simulate", "--target", srv.url, "--keys-listen", "127.0.0.1:0",
		"--install", "none", "--tenant", "acme:s3cret-of-acme-0123456789abcdefghij", "--source", "connect", "--transfers", "15", "--seed", "3"},
		noEnv, strings.NewReader(""), &stdout, &stderr)
	if err != nil {
		t.Fatalf("simulate: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "OK: every good event acknowledged") {
		t.Errorf("summary:\n%s", stdout.String())
	}
}

// TestSimulateRefusedByUntrustingServer: against a serve started without
// the trust flags, simulate fails at once and says which flags to add.
func TestSimulateRefusedByUntrustingServer(t *testing.T) {
	srv := startServe(t, "--data", t.TempDir())
	var stdout, stderr lockedBuffer
	err := run(context.Background(), []string{"transferd", "simulate", "--target", srv.url, "--keys-listen", "127.0.0.1:0", "--source", "forge", "--transfers", "5", "--tenants-file", ""},
		noEnv, strings.NewReader(""), &stdout, &stderr)
	if err == nil || exitCode(err) != 1 || !strings.Contains(err.Error(), "--forge-app-ari "+simulator.DefaultAppARI) {
		t.Fatalf("simulate: %v (exit %d), want a failure naming the serve flags", err, exitCode(err))
	}
}

// TestSimulateRetriesWhileNATSIsDown stops the NATS server under serve
// before the events are sent and brings it back: every event is answered
// 503 until then, retried, and stored once.
func TestSimulateRetriesWhileNATSIsDown(t *testing.T) {
	opts := &server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true}
	ns := startNATS(t, opts)
	opts.Port = ns.Addr().(*net.TCPAddr).Port // the restarted server takes the same address
	url := ns.ClientURL()

	keys, err := simulator.StartKeyServer("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { keys.Close() })
	srv := startServe(t, append([]string{"--data", t.TempDir(), "--nats-url", url, "--append-timeout", "500ms", "--secrets-key-file", secretsKeyFile(t)}, keys.ServeFlags(simulator.DefaultAppARI)...)...)

	ns.Shutdown()
	ns.WaitForShutdown()
	restarted := make(chan *server.Server, 1)
	go func() {
		time.Sleep(1500 * time.Millisecond)
		restarted <- startNATS(t, opts)
	}()
	res, err := simulator.Run(context.Background(), simulator.Config{
		Target: srv.url, KeyServer: keys, Source: simulator.MixForge, Transfers: 20, Concurrency: 8, Seed: 5,
		Duplicates: 0.2, Timeout: 40 * time.Second,
	})
	<-restarted
	if err != nil {
		t.Fatalf("%v\n%s", err, srv.stderr)
	}
	if err := res.Err(); err != nil {
		t.Fatalf("%v\n%s", err, srv.stderr)
	}
	if res.Statuses[http.StatusServiceUnavailable] == 0 || res.Retries == 0 {
		t.Errorf("no 503 or no retry while NATS was down: %v, %d retries", res.Statuses, res.Retries)
	}
	srv.stop(t)
	checkJournal(t, journal.Config{URL: url}, res)
}

// startNATS starts a JetStream server with opts and stops it when the test
// ends (Shutdown is idempotent).
func startNATS(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	o := *opts
	s, err := server.NewServer(&o)
	if err != nil {
		t.Error(err)
		return nil
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Error("nats-server not ready")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

func TestSimulateFlags(t *testing.T) {
	envWith := func(vars map[string]string) env { return func(k string) string { return vars[k] } }
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string // in the error; "" for --help
	}{
		// Each run stops at the bad --source, after the flags are parsed.
		{"-c wins over TRANSFERD_SIMULATE_CONCURRENCY", []string{"-c", "8", "--source", "both"},
			map[string]string{"TRANSFERD_SIMULATE_CONCURRENCY": "lots"}, `source "both"`},
		{"TRANSFERD_SIMULATE_CONCURRENCY applies without -c", []string{"--source", "both"},
			map[string]string{"TRANSFERD_SIMULATE_CONCURRENCY": "lots"}, "TRANSFERD_SIMULATE_CONCURRENCY"},
		{"TRANSFERD_SIMULATE_C is not read", []string{"--source", "both"}, map[string]string{"TRANSFERD_SIMULATE_C": "lots"}, `source "both"`},
		{"bad -c", []string{"-c", "many"}, nil, "many"},
		{"bad --tenant", []string{"--install", "none", "--tenant", "nocolon"}, nil, "clientKey:sharedSecret"},
		{"stray argument", []string{"now"}, nil, `unexpected argument "now"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out lockedBuffer
			err := run(context.Background(), append([]string{"transferd", "simulate"}, tc.args...), envWith(tc.env), strings.NewReader(""), &out, &out)
			if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("simulate %v: %v (exit %d), want a usage error naming %q", tc.args, err, exitCode(err), tc.wantErr)
			}
		})
	}

	var out lockedBuffer
	err := run(context.Background(), []string{"transferd", "simulate", "--help"}, noEnv, strings.NewReader(""), &out, &out)
	if !errors.Is(err, errHelp) {
		t.Fatalf("--help: %v", err)
	}
	for _, want := range []string{"--forge-app-ari " + simulator.DefaultAppARI, "--forge-jwks-url http://127.0.0.1:8081/forge/jwks.json",
		"--install-keys-url http://127.0.0.1:8081/install-keys", "--allow-unsigned-install", "never use them in production", "--concurrency"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help does not mention %q:\n%s", want, out.String())
		}
	}
}
