package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/transferd/transferd/api/client"
	"github.com/transferd/transferd/engine/journal"
	"github.com/transferd/transferd/ingest/atlassian"
	"github.com/transferd/transferd/ingest/simulator"
)

// TestClusterScaleOut is the scale-out deployment of docs/deploy.md in one
// process: three nats-server nodes clustered on loopback, two `transferd
// serve` instances sharing them with --replicas 3, each with its own
// projection. A tenant installed through instance A sends its events
// through instance B; both instances take load at once, and the node that
// leads stream MIGRATIONS, and serves a transferd connection, is stopped in
// the middle of it. Then every acknowledged event is in the stream exactly
// once, every transfer is what the platform's acknowledged events make it
// in both projections, and the stopped node, restarted, catches up.
func TestClusterScaleOut(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node NATS cluster")
	}
	start := time.Now()
	cl := clStartCluster(t, 3)
	t.Logf("cluster of %d ready in %s", len(cl.nodes), time.Since(start).Round(time.Millisecond))

	keys, err := simulator.StartKeyServer("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { keys.Close() })
	// Behind a load balancer every instance knows the app by the same
	// public base URL, which signed installs and qsh are checked against.
	const (
		token   = "cl-token-0123456789"
		baseURL = "http://transferd.cluster.test"
	)
	keyFile := secretsKeyFile(t) // shared by every instance
	serveArgs := func(data string) []string {
		args := []string{"--nats-url", cl.urls(), "--replicas", "3", "--data", data,
			"--api-token", token, "--base-url", baseURL, "--secrets-key-file", keyFile}
		return append(args, keys.ServeFlags(simulator.DefaultAppARI)...)
	}
	clSetUp(t, cl.urls())
	a := startServe(t, serveArgs(t.TempDir())...)
	b := startServe(t, serveArgs(t.TempDir())...)

	obs := cl.observe(t)
	ctx, cancel := context.WithTimeout(context.Background(), 80*time.Second)
	defer cancel()
	if info, err := obs.stream(ctx); err != nil {
		t.Fatal(err)
	} else if r := info.CachedInfo().Config.Replicas; r != 3 {
		t.Fatalf("stream %s has %d replicas, want 3", journal.StreamEvents, r)
	}

	// A Connect tenant installed through A, whose events go through B.
	shared := simulator.Credential{ClientKey: "cl-shared-tenant", SharedSecret: "cl-shared-secret-0123456789abcdef"}
	clInstall(t, a.url, baseURL, keys, shared)

	type outcome struct {
		res simulator.Result
		err error
	}
	run := func(target string, cfg simulator.Config) <-chan outcome {
		cfg.Target, cfg.BaseURL, cfg.KeyServer = target, baseURL, keys
		cfg.Transfers, cfg.Concurrency, cfg.Timeout = 70, 12, 60*time.Second
		cfg.Duplicates, cfg.Reruns, cfg.Bad = simulator.DefaultDuplicates, simulator.DefaultReruns, simulator.DefaultBad
		done := make(chan outcome, 1)
		go func() {
			res, err := simulator.Run(ctx, cfg)
			done <- outcome{res, err}
		}()
		return done
	}
	doneA := run(a.url, simulator.Config{Seed: 20260501})
	doneB := run(b.url, simulator.Config{Seed: 20260502, Install: simulator.InstallNone,
		ConnectTenants: []simulator.Credential{shared}})

	// Mid-load: once the stream holds some events, stop the node that
	// leads MIGRATIONS and serves a transferd instance.
	const stopAfter = 60
	if err := clWaitFor(ctx, 40*time.Second, func() error {
		if n := obs.lastSeq(ctx); n < stopAfter {
			return fmt.Errorf("%d events stored, waiting for %d", n, stopAfter)
		}
		return nil
	}); err != nil {
		t.Fatalf("load: %v\nA:\n%s\nB:\n%s", err, a.stderr, b.stderr)
	}
	victim := cl.victim(t, ctx, obs)
	seqAtStop := obs.lastSeq(ctx)
	cl.stop(victim)
	t.Logf("stopped %s (leader of %s, serving transferd) at stream sequence %d, %s into the test",
		cl.nodes[victim].Name(), journal.StreamEvents, seqAtStop, time.Since(start).Round(time.Millisecond))
	select {
	case <-doneA:
		t.Fatal("the load through A ended before the node was stopped: not mid-load")
	case <-doneB:
		t.Fatal("the load through B ended before the node was stopped: not mid-load")
	default:
	}

	var results []simulator.Result
	for name, done := range map[string]<-chan outcome{"A": doneA, "B": doneB} {
		o := <-done
		var summary strings.Builder
		o.res.WriteText(&summary)
		t.Logf("through %s:\n%s", name, summary.String())
		if o.err == nil {
			o.err = o.res.Err()
		}
		if o.err != nil {
			t.Fatalf("simulate through %s: %v\nA:\n%s\nB:\n%s", name, o.err, a.stderr, b.stderr)
		}
		results = append(results, o.res)
	}
	all := clMerge(results...)
	if seq := obs.lastSeq(ctx); seq <= seqAtStop {
		t.Errorf("nothing was stored after the node stopped (last sequence %d, %d at the stop)", seq, seqAtStop)
	}
	if n := clIssuedBy(all, shared.ClientKey); n == 0 {
		t.Errorf("no transfer of tenant %s (installed through A) was acknowledged through B", shared.ClientKey)
	}

	// The stream: every acknowledged event once, nothing refused, every
	// transfer folding to what the platform expects.
	checkJournal(t, journal.Config{URL: cl.urls(), Replicas: 3}, all)

	// Both projections converge on every transfer, whichever instance
	// took its events.
	for _, inst := range []struct {
		name string
		srv  *serving
	}{{"A", a}, {"B", b}} {
		if err := clConverged(ctx, inst.srv.url, token, all); err != nil {
			t.Errorf("projection of %s: %v\n%s", inst.name, err, inst.srv.stderr)
		}
	}

	// The stopped node comes back and catches up: the stream is at three
	// current replicas again.
	cl.restart(t, victim)
	if err := clWaitFor(ctx, 30*time.Second, func() error { return obs.replicated(ctx) }); err != nil {
		t.Errorf("after the restart of %s: %v", cl.nodes[victim].Name(), err)
	}
	t.Logf("%d transfers, %d events through two instances; done in %s",
		len(all.Expect), len(all.Acked), time.Since(start).Round(time.Millisecond))
}

// clSetUp creates the streams and buckets with three replicas, as the
// first serve would, retrying while the young cluster settles: on a cluster
// formed a moment ago, under load, the answer to the first creation can be
// lost, and serve, which gives each request 5 s and does not retry, would
// exit (in production its supervisor restarts it).
func clSetUp(t *testing.T, urls string) {
	t.Helper()
	attempts := 0
	err := clWaitFor(context.Background(), 45*time.Second, func() error {
		attempts++
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		j, err := journal.Open(ctx, journal.Config{URL: urls, Replicas: 3})
		if err != nil {
			return err
		}
		return j.Close()
	})
	if err != nil {
		t.Fatalf("set up the journal on the cluster: %v", err)
	}
	if attempts > 1 {
		t.Logf("the journal was set up at attempt %d", attempts)
	}
}

// clCluster is nats-server nodes with JetStream clustered on loopback.
type clCluster struct {
	opts  []*server.Options
	nodes []*server.Server
	log   *lockedBuffer // shown when the test fails
}

// clStartCluster starts n clustered nodes, each routed to every other, and
// waits until the JetStream meta group has a leader that knows them all.
// The nodes stop when the test ends.
func clStartCluster(t *testing.T, n int) *clCluster {
	t.Helper()
	// JetStream clustering wants configured routes on every node, so the
	// cluster ports are chosen up front. Client ports are random.
	ports := clFreePorts(t, n)
	routes := make([]*url.URL, n)
	for i, p := range ports {
		routes[i] = &url.URL{Scheme: "nats-route", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(p))}
	}
	c := &clCluster{opts: make([]*server.Options, n), nodes: make([]*server.Server, n), log: &lockedBuffer{}}
	// A name of its own: a node of a cluster from another test run never
	// joins this one.
	name := fmt.Sprintf("cl-transferd-%08x", rand.Uint32())
	for i := range n {
		c.opts[i] = &server.Options{
			ServerName: fmt.Sprintf("cl-n%d", i+1),
			Host:       "127.0.0.1", Port: server.RANDOM_PORT,
			JetStream: true, StoreDir: t.TempDir(),
			JetStreamMaxMemory: 64 << 20, JetStreamMaxStore: 1 << 30,
			Cluster: server.ClusterOpts{Name: name, Host: "127.0.0.1", Port: ports[i]},
			Routes:  routes,
			NoSigs:  true,
		}
		c.start(t, i)
	}
	t.Cleanup(func() {
		for i := range c.nodes {
			c.stop(i)
		}
		if t.Failed() {
			t.Logf("nats-server logs:\n%s", c.log)
		}
	})
	for i, s := range c.nodes {
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatalf("node %d not ready for connections", i+1)
		}
		// The restarted node takes the same client address.
		c.opts[i].Port = s.Addr().(*net.TCPAddr).Port
	}
	err := clWaitFor(context.Background(), 40*time.Second, func() error {
		for _, s := range c.nodes {
			if s.JetStreamIsLeader() {
				if peers := len(s.JetStreamClusterPeers()); peers != n {
					return fmt.Errorf("meta leader %s knows %d peers", s.Name(), peers)
				}
				return nil
			}
		}
		return errors.New("no JetStream meta leader")
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *clCluster) start(t *testing.T, i int) {
	t.Helper()
	o := *c.opts[i]
	s, err := server.NewServer(&o)
	if err != nil {
		t.Fatal(err)
	}
	s.SetLoggerV2(clLogger{o.ServerName, c.log}, false, false, false)
	go s.Start()
	c.nodes[i] = s
}

// stop shuts node i down and waits until it has stopped; stopping twice is
// harmless.
func (c *clCluster) stop(i int) {
	c.nodes[i].Shutdown()
	c.nodes[i].WaitForShutdown()
}

// restart starts stopped node i again on its store and addresses.
func (c *clCluster) restart(t *testing.T, i int) {
	t.Helper()
	c.start(t, i)
	if !c.nodes[i].ReadyForConnections(10 * time.Second) {
		t.Fatalf("node %d not ready after its restart", i+1)
	}
}

// urls is the --nats-url of the cluster: every node's client URL.
func (c *clCluster) urls() string {
	u := make([]string, len(c.opts))
	for i, o := range c.opts {
		u[i] = "nats://" + net.JoinHostPort(o.Host, strconv.Itoa(o.Port))
	}
	return strings.Join(u, ",")
}

// clFreePorts finds n free loopback ports below the kernel's ephemeral
// range (32768 and up on Linux), so that no server started with port 0 by
// another test running meanwhile takes one between the check and the use.
func clFreePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for len(ports) < n {
		p := 20000 + rand.IntN(12000)
		if slices.Contains(ports, p) {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		ln.Close()
		ports = append(ports, p)
	}
	return ports
}

// clObserver is the test's own connection to the cluster.
type clObserver struct {
	nc *nats.Conn
	js jetstream.JetStream
}

func (c *clCluster) observe(t *testing.T) *clObserver {
	t.Helper()
	nc, err := nats.Connect(c.urls(), nats.Name("cl-observer"), nats.MaxReconnects(-1),
		nats.ReconnectWait(100*time.Millisecond), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return &clObserver{nc: nc, js: js}
}

// clRequestTimeout bounds each of the observer's requests: an answer lost
// to a change of leader must not hold the test up to its deadline (the
// jetstream package's default timeout applies only to a context without
// one).
const clRequestTimeout = 3 * time.Second

// stream returns MIGRATIONS with its current info.
func (o *clObserver) stream(ctx context.Context) (jetstream.Stream, error) {
	ctx, cancel := context.WithTimeout(ctx, clRequestTimeout)
	defer cancel()
	return o.js.Stream(ctx, journal.StreamEvents)
}

// lastSeq is MIGRATIONS' last sequence, 0 while it cannot be had.
func (o *clObserver) lastSeq(ctx context.Context) uint64 {
	st, err := o.stream(ctx)
	if err != nil {
		return 0
	}
	return st.CachedInfo().State.LastSeq
}

// leader is the name of the node leading MIGRATIONS.
func (o *clObserver) leader(ctx context.Context) (string, error) {
	st, err := o.stream(ctx)
	if err != nil {
		return "", err
	}
	if ci := st.CachedInfo().Cluster; ci != nil && ci.Leader != "" {
		return ci.Leader, nil
	}
	return "", errors.New("no leader")
}

// replicated reports an error unless MIGRATIONS has a leader and every
// other replica is current.
func (o *clObserver) replicated(ctx context.Context) error {
	st, err := o.stream(ctx)
	if err != nil {
		return err
	}
	ci := st.CachedInfo().Cluster
	if ci == nil || ci.Leader == "" {
		return errors.New("no leader")
	}
	if len(ci.Replicas) != 2 {
		return fmt.Errorf("leader %s and %d other replicas", ci.Leader, len(ci.Replicas))
	}
	for _, r := range ci.Replicas {
		if !r.Current || r.Offline {
			return fmt.Errorf("replica %s not current (offline %v, lag %d)", r.Name, r.Offline, r.Lag)
		}
	}
	return nil
}

// victim picks the node to stop: one that serves a transferd connection,
// made the leader of MIGRATIONS if it is not already, so that stopping it
// costs both a client connection and the stream's leader.
func (c *clCluster) victim(t *testing.T, ctx context.Context, o *clObserver) int {
	t.Helper()
	pick := -1
	for i, s := range c.nodes {
		cz, err := s.Connz(&server.ConnzOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, ci := range cz.Conns {
			if ci.Name == "transferd" {
				pick = i
			}
		}
	}
	if pick < 0 {
		t.Fatal("no node serves a transferd connection")
	}
	name := c.nodes[pick].Name()
	err := clWaitFor(ctx, 15*time.Second, func() error {
		leader, err := o.leader(ctx)
		if err != nil || leader == name {
			return err
		}
		req, _ := json.Marshal(map[string]any{"placement": map[string]string{"preferred": name}})
		msg, err := o.nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+journal.StreamEvents, req, clRequestTimeout)
		if err != nil {
			return fmt.Errorf("leader %s, asking %s to take over: %w", leader, name, err)
		}
		return fmt.Errorf("leader %s, asked %s to take over: %s", leader, name, msg.Data)
	})
	if err != nil {
		t.Fatalf("making %s the leader of %s: %v", name, journal.StreamEvents, err)
	}
	return pick
}

// clInstall installs a Connect tenant through the server at target with a
// signed install, as Atlassian does.
func clInstall(t *testing.T, target, baseURL string, keys *simulator.KeyServer, cr simulator.Credential) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{
		"key": "com.example.transferd-cluster-test", "clientKey": cr.ClientKey, "sharedSecret": cr.SharedSecret,
		"baseUrl": "https://cl-shared.atlassian.net", "productType": "jira", "eventType": "installed",
	})
	qsh := atlassian.QSH(http.MethodPost, "/connect/installed", "", "")
	tok, err := keys.SignInstall(cr.ClientKey, baseURL, qsh, 3*time.Minute, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, target+"/connect/installed", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "JWT "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		t.Fatalf("install %s through %s: %d %s", cr.ClientKey, target, resp.StatusCode, b.String())
	}
}

// clMerge is the results of runs against one stream, as one.
func clMerge(rs ...simulator.Result) simulator.Result {
	var all simulator.Result
	for _, r := range rs {
		all.Acked = append(all.Acked, r.Acked...)
		all.Refused = append(all.Refused, r.Refused...)
		all.Expect = append(all.Expect, r.Expect...)
	}
	return all
}

// clIssuedBy counts the expected transfers of issuer.
func clIssuedBy(r simulator.Result, issuer string) int {
	n := 0
	for _, x := range r.Expect {
		if x.Issuer == issuer {
			n++
		}
	}
	return n
}

// clConverged waits until the projection behind the query API at target
// shows every transfer of r as expected, lists exactly those, and is ready.
func clConverged(ctx context.Context, target, token string, r simulator.Result) error {
	c := client.New(target, token)
	pending := r.Expect
	err := clWaitFor(ctx, 30*time.Second, func() error {
		for len(pending) > 0 {
			x := pending[0]
			v, err := c.Transfer(ctx, x.TransferID)
			if err != nil {
				return err
			}
			if err := x.Match(v.Transfer); err != nil {
				return err
			}
			pending = pending[1:]
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%d of %d transfers not as expected: %w", len(pending), len(r.Expect), err)
	}
	listed := 0
	for _, err := range c.ListAll(ctx, client.Filter{Limit: 500}) {
		if err != nil {
			return err
		}
		listed++
	}
	if listed != len(r.Expect) {
		return fmt.Errorf("%d transfers listed, %d expected", listed, len(r.Expect))
	}
	return clWaitFor(ctx, 10*time.Second, func() error {
		resp, err := http.Get(target + "/readyz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			var b bytes.Buffer
			b.ReadFrom(resp.Body)
			return fmt.Errorf("/readyz: %d %s", resp.StatusCode, b.String())
		}
		return nil
	})
}

// clWaitFor calls check until it returns nil, for at most d (or until ctx
// ends), and returns its last error.
func clWaitFor(ctx context.Context, d time.Duration, check func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// clLogger keeps a node's warnings, errors and leadership changes.
type clLogger struct {
	name string
	w    *lockedBuffer
}

func (l clLogger) Noticef(format string, v ...any) {
	if strings.Contains(format, "leader") {
		l.p("INF", format, v...)
	}
}
func (l clLogger) Warnf(format string, v ...any)  { l.p("WRN", format, v...) }
func (l clLogger) Fatalf(format string, v ...any) { l.p("FTL", format, v...) }
func (l clLogger) Errorf(format string, v ...any) { l.p("ERR", format, v...) }
func (l clLogger) Debugf(string, ...any)          {}
func (l clLogger) Tracef(string, ...any)          {}

func (l clLogger) p(level, format string, v ...any) {
	fmt.Fprintf(l.w, "%s %s %s %s\n", time.Now().Format("15:04:05.000"), l.name, level, fmt.Sprintf(format, v...))
}
