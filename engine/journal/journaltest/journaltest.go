// Package journaltest starts journals and NATS servers for tests: an
// embedded journal on a temporary directory, or a standalone JetStream
// server on a loopback port. Everything started is stopped in tb.Cleanup.
package journaltest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/transferd/transferd/engine/journal"
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
	j, err := journal.Open(ctx, cfg)
	if err != nil {
		tb.Fatalf("journal.Open: %v", err)
	}
	tb.Cleanup(func() { j.Close() })
	return j
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
