package journal

import (
	"log/slog"
	"time"
)

// Config configures Open. The zero value with a DataDir runs an embedded
// server reachable only from this process.
type Config struct {
	// URL of an external NATS (comma-separated for a cluster). Empty
	// starts an embedded nats-server storing under DataDir.
	URL string
	// CredentialsFile is a NATS credentials file (JWT and nkey seed) to
	// connect to URL with; empty connects without.
	CredentialsFile string

	// DataDir is where the embedded server keeps its store, in
	// <DataDir>/nats (created 0700). Required when URL is empty.
	DataDir string
	// Listen, when set, also exposes the embedded server on this TCP
	// host:port (port 0 picks a free one; see ClientURL), to the
	// ListenUsers only, and to them only for reading MIGRATIONS and
	// TRANSFERS through pull consumers: they are in an account of their own
	// that imports nothing else (no bucket, no subject to publish events
	// on). Keep it on loopback all the same: the connection is not TLS.
	Listen string
	// ListenUsers are the importers allowed on Listen; Open fails with
	// Listen and none.
	ListenUsers []ListenUser
	// SyncAlways makes every write to the embedded server durable (synced
	// to disk) before it is acknowledged, so that an acknowledged append
	// survives a host crash or power cut; concurrent appends share the
	// syncs (see GroupCommit). Without it JetStream syncs every 2 minutes,
	// and an acknowledgement means only that the message reached the
	// operating system: see Durability. It has no effect on an external
	// NATS, whose own configuration decides.
	SyncAlways bool
	// Logger receives connection events and the embedded server's warnings
	// and errors; nil discards them.
	Logger *slog.Logger
	// Debug also passes the embedded server's notices and debug lines.
	Debug bool

	// Replicas of the streams and buckets. Zero keeps the count of a
	// stream or bucket that exists, and creates one with a single replica:
	// a command that only reads never scales the streams down.
	Replicas int
	// Duplicates is the streams' de-duplication window; default 2 minutes
	// (at most 30 seconds on TRANSFERS, see transfersDuplicates).
	Duplicates time.Duration
	// TransfersMaxAge is how long a TRANSFERS created by this journal keeps
	// each state; default TransfersMaxAge. A stream that exists keeps its own.
	TransfersMaxAge time.Duration
	// Timeout bounds the wait for an append's ack (an earlier context
	// deadline wins), requests whose context has no deadline, the embedded
	// server's start and the connection's drain; default 5 seconds.
	Timeout time.Duration

	// GroupCommit says how concurrent appends (and publishes to TRANSFERS)
	// share the cost of a commit; default GroupCommitAuto.
	GroupCommit GroupCommit
	// MaxBatch is the most messages one atomic batch carries
	// (GroupCommitAtomic); default 256, at most 1000 (nats-server's limit).
	MaxBatch int
}

func (c Config) withDefaults() Config {
	c.Replicas = max(c.Replicas, 0)
	if c.Duplicates <= 0 {
		c.Duplicates = 2 * time.Minute
	}
	if c.TransfersMaxAge <= 0 {
		c.TransfersMaxAge = TransfersMaxAge
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = defaultMaxBatch
	}
	c.MaxBatch = min(c.MaxBatch, serverMaxBatch)
	c.GroupCommit = c.commitMode()
	return c
}

// commitMode resolves GroupCommitAuto, and the modes that do not apply.
func (c Config) commitMode() GroupCommit {
	switch mode := c.GroupCommit; {
	case mode == GroupCommitOff:
		return mode
	case c.URL != "": // no files to sync
		return GroupCommitAtomic
	case mode == GroupCommitAtomic:
		return mode
	case c.SyncAlways: // Auto or Sync
		return GroupCommitSync
	}
	return GroupCommitOff // nothing to sync
}

// serverSyncs reports whether the embedded server syncs every write itself.
func (c Config) serverSyncs() bool { return c.SyncAlways && c.GroupCommit != GroupCommitSync }
