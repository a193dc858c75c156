package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/transferd/transferd/engine/journal"
)

// storeFlags are the flags that say where the journal and the projection
// live, shared by every command that opens them.
type storeFlags struct {
	data      string
	natsURL   string
	natsCreds string
	// natsListen exposes the embedded NATS on TCP (serve only).
	natsListen string
	replicas   int
	sync       syncMode
}

func (s *storeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.data, "data", "./data", "data `directory`: the embedded NATS store and the bbolt projection")
	fs.StringVar(&s.natsURL, "nats-url", "", "`URL` of an external NATS (comma-separated for a cluster); empty runs NATS embedded under --data")
	fs.StringVar(&s.natsCreds, "nats-creds", "", "NATS credentials `file` for --nats-url")
	fs.IntVar(&s.replicas, "replicas", 0, "stream and bucket replicas on an external NATS cluster (3 on three nodes);\n0 keeps what the streams have, and creates them with one")
	s.sync = syncAlways
	fs.Var(&s.sync, "sync", "when the embedded NATS syncs its store to disk, a `mode`: always, before every acknowledgement\n"+
		"(concurrent events share one sync by group commit), so that a 200 survives a power cut; or interval,\n"+
		"every 2 minutes: a host crash or power cut then loses acknowledged events. With --nats-url the\n"+
		"server's own sync policy applies (see docs/durability.md)")
}

// syncMode is --sync: always or interval.
type syncMode string

const (
	syncAlways   syncMode = "always"
	syncInterval syncMode = "interval"
)

func (m *syncMode) String() string { return string(*m) }

func (m *syncMode) Set(v string) error {
	switch syncMode(v) {
	case syncAlways, syncInterval:
		*m = syncMode(v)
		return nil
	}
	return fmt.Errorf("want always or interval, not %q", v)
}

func (s *storeFlags) describe() string {
	if s.natsURL == "" {
		return "embedded " + filepath.Join(s.data, "nats")
	}
	var urls []string
	for _, u := range strings.Split(s.natsURL, ",") {
		if pu, err := url.Parse(strings.TrimSpace(u)); err == nil {
			u = pu.Redacted()
		} else {
			u = "(unparsable URL)"
		}
		urls = append(urls, u)
	}
	return "nats " + strings.Join(urls, ",")
}

func (s *storeFlags) openJournal(ctx context.Context, log *slog.Logger) (*journal.Journal, error) {
	if err := os.MkdirAll(s.data, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	cfg := journal.Config{URL: s.natsURL, DataDir: s.data, Listen: s.natsListen, Replicas: s.replicas, Logger: log,
		SyncAlways: s.sync != syncInterval}
	if s.natsCreds != "" {
		cfg.Options = append(cfg.Options, nats.UserCredentials(s.natsCreds))
	}
	// A cluster that is still electing its leaders may lose the first
	// requests: retry an external NATS for a while, saying so.
	deadline := time.Now().Add(60 * time.Second)
	for wait := 500 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		j, err := journal.Open(ctx, cfg)
		if err == nil {
			return j, nil
		}
		if s.natsURL == "" || !errors.Is(err, journal.ErrUnavailable) || time.Now().Add(wait).After(deadline) {
			return nil, fmt.Errorf("open journal (%s): %w", s.describe(), err)
		}
		log.Warn("journal not reachable yet; retrying", "journal", s.describe(), "err", err, "retry", wait)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
