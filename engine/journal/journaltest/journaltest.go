// Package journaltest starts journals and NATS servers for tests: an
// embedded journal on a temporary directory, a standalone JetStream server
// on a loopback port, or a JetStream cluster. Everything started is
// stopped in tb.Cleanup. Conn and JetStream reach a journal's own NATS
// connection, for tests that play an external client.
package journaltest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/transferd/transferd/engine/journal"
	"github.com/transferd/transferd/engine/journal/internal/natsconn"
)

// Open opens a journal with an embedded server storing in tb.TempDir() and
// closes it when the test ends.
func Open(tb testing.TB) *journal.Journal {
	tb.Helper()
	return OpenConfig(tb, journal.Config{})
}

// OpenConfig opens a journal with cfg, storing in tb.TempDir() unless cfg
// names a URL or a DataDir, and closes it when the test ends.
func OpenConfig(tb testing.TB, cfg journal.Config) *journal.Journal {
	tb.Helper()
	if cfg.URL == "" && cfg.DataDir == "" {
		cfg.DataDir = tb.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		j, err := journal.Open(ctx, cfg)
		if err == nil {
			tb.Cleanup(func() { j.Close() })
			return j
		}
		// A cluster that has just elected its meta leader may not know
		// all its peers yet ("no suitable peers for placement"): retry an
		// external NATS until the context ends.
		if cfg.URL == "" || ctx.Err() != nil {
			tb.Fatalf("journal.Open: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Server starts a standalone nats-server with JetStream on a free loopback
// port, storing in tb.TempDir(), shuts it down when the test ends, and
// returns its client URL.
func Server(tb testing.TB) (url string) {
	tb.Helper()
	return StartServer(tb).ClientURL()
}

// StartServer is Server returning the server itself, for tests that stop
// it early (Shutdown is idempotent).
func StartServer(tb testing.TB) *server.Server {
	tb.Helper()
	s, err := server.NewServer(&server.Options{
		Host:      "127.0.0.1",
		Port:      server.RANDOM_PORT,
		JetStream: true,
		StoreDir:  tb.TempDir(),
		NoLog:     true,
		NoSigs:    true,
	})
	if err != nil {
		tb.Fatalf("nats-server: %v", err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		tb.Fatal("nats-server: not ready")
	}
	tb.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// Cluster starts a JetStream cluster of n nats-servers on free loopback
// ports, storing in tb.TempDir(), waits until it has elected its meta
// leader, shuts it down when the test ends, and returns the client URLs,
// comma-separated as Config.URL takes them.
func Cluster(tb testing.TB, n int) (urls string) {
	tb.Helper()
	// The cluster ports are picked free, then bound by the servers: in
	// between, a test of another package may take one, and that server
	// never gets ready. Start again on other ports then.
	for attempt := 1; ; attempt++ {
		urls, err := startCluster(tb, n)
		if err == nil {
			return urls
		}
		if attempt == 3 {
			tb.Fatal(err)
		}
		tb.Logf("JetStream cluster, attempt %d: %v; again on other ports", attempt, err)
	}
}

// startCluster is one attempt of Cluster. On failure it has shut its
// servers down.
func startCluster(tb testing.TB, n int) (urls string, err error) {
	ports := make([]int, n)
	var routes []string
	for i := range ports {
		ports[i] = freePort(tb)
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", ports[i]))
	}
	servers := make([]*server.Server, 0, n)
	stop := func() {
		for _, s := range servers {
			s.Shutdown()
			s.WaitForShutdown()
		}
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	for i := range n {
		s, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1",
			Port:       server.RANDOM_PORT,
			JetStream:  true,
			StoreDir:   tb.TempDir(),
			Cluster:    server.ClusterOpts{Name: "journaltest", Host: "127.0.0.1", Port: ports[i]},
			Routes:     server.RoutesFromStr(strings.Join(routes, ",")),
			NoLog:      true,
			NoSigs:     true,
		})
		if err != nil {
			return "", fmt.Errorf("nats-server %d: %w", i+1, err)
		}
		s.Start()
		servers = append(servers, s)
	}
	var clients []string
	deadline := time.Now().Add(30 * time.Second)
	for i, s := range servers {
		if !s.ReadyForConnections(10 * time.Second) {
			return "", fmt.Errorf("nats-server %d: not ready", i+1)
		}
		clients = append(clients, s.ClientURL())
	}
	for {
		leader := false
		for _, s := range servers {
			leader = leader || s.JetStreamIsLeader()
		}
		if leader {
			break
		}
		if time.Now().After(deadline) {
			return "", errors.New("JetStream cluster: no meta leader")
		}
		time.Sleep(50 * time.Millisecond)
	}
	tb.Cleanup(stop)
	return strings.Join(clients, ","), nil
}

// freePort returns a loopback TCP port free a moment ago.
func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Conn returns j's NATS connection, for a test that plays an external
// client of the streams (an importer, a foreign publisher): transferd's
// own packages reach NATS only through the journal's API.
func Conn(j *journal.Journal) *nats.Conn {
	nc, _ := natsconn.Of(j)
	return nc
}

// JetStream returns j's JetStream context, like Conn.
func JetStream(j *journal.Journal) jetstream.JetStream {
	_, js := natsconn.Of(j)
	return js
}
