package journal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/transferd/transferd/engine/journal/internal/natsconn"
)

// Journal is the event log. Its methods are safe for concurrent use.
type Journal struct {
	cfg      Config
	srv      *embedded // nil with an external NATS
	nc       *nats.Conn
	closed   chan nats.Status
	js       jetstream.JetStream
	events   jetstream.Stream
	feedSt   jetstream.Stream // TRANSFERS
	tenants  jetstream.KeyValue
	bindings jetstream.KeyValue
	leases   jetstream.KeyValue
	// credentials is BucketForgeCredentials (credentials.go).
	credentials jetstream.KeyValue

	// With GroupCommitAtomic, appends and feed commit to MIGRATIONS and
	// TRANSFERS (nil where the stream does not accept atomic batches);
	// with GroupCommitSync, syncer makes the streams' writes durable.
	appends, feed *committer
	syncer        *syncer
	gate          *consumerGate // importers' consumer creations, with Listen
	stats         commitCounters
	durability    Durability

	closeOnce sync.Once
}

// Open connects to the journal, starting the embedded server when
// cfg.URL is empty, and ensures the streams and buckets exist with the
// configuration of DESIGN §5: it creates what is missing and updates only
// the settings transferd owns, keeping an operator's limits (see
// ensureStream). Opening again
// after Close on the same data directory, or alongside other journals on
// the same NATS, is safe; a data directory another open journal uses is
// ErrInUse. Failures to reach NATS wrap ErrUnavailable.
func Open(ctx context.Context, cfg Config) (*Journal, error) {
	cfg = cfg.withDefaults()
	j := &Journal{cfg: cfg}
	opts := []nats.Option{
		nats.Name("transferd"),
		nats.Timeout(cfg.Timeout),
		nats.DrainTimeout(cfg.Timeout),
		// While reconnecting, fail publishes at once instead of buffering
		// them: the caller gets ErrUnavailable now, and no message it gave
		// up on is written later.
		nats.ReconnectBufSize(-1),
		// Keep trying for as long as the process runs: a cluster that is
		// down for minutes must not leave a server answering 503 forever.
		nats.MaxReconnects(-1),
	}
	opts = append(opts, logHandlers(cfg.Logger)...)
	url := cfg.URL
	if url == "" {
		srv, err := startServer(cfg)
		if err != nil {
			return nil, err
		}
		j.srv = srv
		opts = append(opts, nats.InProcessServer(srv))
		if srv.auth != nil {
			opts = append(opts, nats.UserInfo(internalUser, srv.auth.internalPass))
		}
	} else {
		if cfg.CredentialsFile != "" {
			opts = append(opts, nats.UserCredentials(cfg.CredentialsFile))
		}
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		j.stopServer()
		return nil, unavailable("connect", err)
	}
	j.nc = nc
	j.closed = nc.StatusChanged(nats.CLOSED)
	if err := j.setup(ctx); err != nil {
		j.Close()
		return nil, err
	}
	if j.srv != nil && j.srv.auth != nil {
		if j.gate, err = startGate(j.srv.Server, j.srv.auth.gatePass, nc, cfg.Timeout, cfg.Logger); err != nil {
			j.Close()
			return nil, unavailable("consumer gate", err)
		}
	}
	j.logDurability()
	return j, nil
}

// TransfersMaxAge is how long a stream TRANSFERS that transferd creates
// keeps each state, unless Config.TransfersMaxAge says otherwise: longer
// than a transfer lives on the platform (14 days from its trigger), so an
// importer that falls days behind still finds every state it missed.
// Retention by age removes the oldest states, one block after another.
// Keeping the latest state per subject instead (MaxMsgsPerSubject 1, until
// December 2026) deletes a transfer's previous state wherever it lies, and
// under a shuffled load that holds every block of the stream in
// nats-server's memory (docs/performance.md, Memory). An existing stream
// keeps the limits it has (see ensureStream).
const TransfersMaxAge = 30 * 24 * time.Hour

// transfersDuplicates bounds TRANSFERS's de-duplication window. The feed
// publishes each state once and retries only a publish whose ack is lost,
// within seconds; a state published again after a restart is a duplicate an
// importer already tells by (transferId, version). A window as long as
// MIGRATIONS's would only hold two more minutes of message ids in memory.
const transfersDuplicates = 30 * time.Second

// setup creates or updates the streams and buckets, and starts the group
// committers.
func (j *Journal) setup(ctx context.Context) error {
	js, err := jetstream.New(j.nc,
		jetstream.WithDefaultTimeout(j.cfg.Timeout),
		jetstream.WithPublishAsyncTimeout(j.cfg.Timeout))
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	j.js = js
	dup := j.cfg.Duplicates
	r, err := j.replicas(ctx, StreamEvents)
	if err != nil {
		return setupErr(StreamEvents, err)
	}
	j.events, err = j.ensureStream(ctx, jetstream.StreamConfig{
		Name:               StreamEvents,
		Description:        "transferd migration events: the source of truth",
		Subjects:           []string{eventsPrefix + ">"},
		Retention:          jetstream.LimitsPolicy,
		MaxMsgs:            -1,
		MaxBytes:           -1,
		MaxAge:             0,
		Storage:            jetstream.FileStorage,
		Replicas:           r,
		Duplicates:         dup,
		DenyDelete:         true,
		DenyPurge:          true,
		AllowDirect:        true,
		AllowAtomicPublish: true,
	})
	if err != nil {
		return setupErr(StreamEvents, err)
	}
	if r, err = j.replicas(ctx, StreamTransfers); err != nil {
		return setupErr(StreamTransfers, err)
	}
	j.feedSt, err = j.ensureStream(ctx, jetstream.StreamConfig{
		Name:               StreamTransfers,
		Description:        "transferd transfer states after each change",
		Subjects:           []string{transfersPrefix + ">"},
		Retention:          jetstream.LimitsPolicy,
		MaxAge:             j.cfg.TransfersMaxAge,
		Storage:            jetstream.FileStorage,
		Replicas:           r,
		Duplicates:         min(dup, transfersDuplicates, j.cfg.TransfersMaxAge),
		AllowDirect:        true,
		AllowAtomicPublish: true,
	})
	if err != nil {
		return setupErr(StreamTransfers, err)
	}
	if c := j.feedSt.CachedInfo().Config; c.MaxMsgsPerSubject == 1 && j.cfg.Logger != nil {
		// Kept as the operator's (ensureStream), but said: it costs memory.
		j.cfg.Logger.Warn("stream TRANSFERS keeps one state per transfer and phase, as an older transferd created it: "+
			"nats-server then loads its blocks to delete the older states, which costs memory under load; "+
			"to keep every state for a time instead, edit the stream (docs/design.md, TRANSFERS retention)",
			"stream", StreamTransfers, "command", "nats stream edit TRANSFERS --max-msgs-per-subject=-1 --max-age=30d")
	}
	if j.tenants, err = j.bucket(ctx, jetstream.KeyValueConfig{
		Bucket:      BucketTenants,
		Description: "transferd Connect installations by clientKey",
	}); err != nil {
		return err
	}
	if j.bindings, err = j.bucket(ctx, jetstream.KeyValueConfig{
		Bucket:      BucketBindings,
		Description: "transferd transfer id to the issuer that first sent it",
	}); err != nil {
		return err
	}
	if j.credentials, err = j.bucket(ctx, jetstream.KeyValueConfig{
		Bucket:      BucketForgeCredentials,
		Description: "transferd Forge installations' newest credential, sealed by transferd",
	}); err != nil {
		return err
	}
	if j.leases, err = j.bucket(ctx, jetstream.KeyValueConfig{
		Bucket:      BucketLeases,
		Description: "transferd importer work leases by transfer and upload",
		TTL:         leaseTTL, // a lease is minutes; an untouched record is long dead
	}); err != nil {
		return err
	}

	// A server older than 2.12 drops the setting it does not know.
	events := j.events.CachedInfo().Config
	switch j.cfg.GroupCommit {
	case GroupCommitAtomic:
		if events.AllowAtomicPublish {
			j.appends = newCommitter(StreamEvents, j, events.Replicas, &j.stats)
		}
		if tc := j.feedSt.CachedInfo().Config; tc.AllowAtomicPublish {
			j.feed = newCommitter(StreamTransfers, j, tc.Replicas, &j.stats)
		}
	case GroupCommitSync:
		if err := j.startSyncer(); err != nil {
			return err
		}
	}
	j.durability = j.describe(events.Replicas, events.AllowAtomicPublish)
	return nil
}

// startSyncer makes the store as the server left it durable and starts
// the syncer.
func (j *Journal) startSyncer() error {
	// <DataDir>/nats and everything in it, and its entry in DataDir.
	dir := filepath.Join(j.cfg.DataDir, "nats")
	if err := syncTree(dir); err != nil {
		return fmt.Errorf("journal: sync %s: %w", dir, err)
	}
	if err := syncPath(j.cfg.DataDir); err != nil {
		return fmt.Errorf("journal: sync %s: %w", j.cfg.DataDir, err)
	}
	var err error
	j.syncer, err = newSyncer(j.srv.StoreDir(), map[string]bool{
		StreamEvents:             false,
		StreamTransfers:          false,
		kvStream(BucketTenants):  true,  // updates rewrite old blocks
		kvStream(BucketBindings): false, // Claim only creates keys
		kvStream(BucketLeases):   true,  // leases are updated

		kvStream(BucketForgeCredentials): true, // updates rewrite old blocks
	}, &j.stats, j.cfg.Logger)
	if err == nil {
		j.srv.recovery.attach(j.syncer)
	}
	return err
}

// logHandlers report the connection's events to log, or nowhere when log is
// nil (nats.go would print asynchronous errors to stderr).
func logHandlers(log *slog.Logger) []nats.Option {
	if log == nil {
		return []nats.Option{nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})}
	}
	return []nats.Option{
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if sub != nil {
				log.Warn("nats error", "subject", sub.Subject, "err", err)
				return
			}
			log.Warn("nats error", "err", err)
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil when closing
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
		}),
	}
}

// bucket creates or opens the KV bucket cfg describes, as every bucket of
// the journal is: file storage, one value per key, and the replica count
// of replicas.
func (j *Journal) bucket(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	r, err := j.replicas(ctx, kvStream(cfg.Bucket))
	if err != nil {
		return nil, setupErr(cfg.Bucket, err)
	}
	cfg.History, cfg.Storage, cfg.Replicas = 1, jetstream.FileStorage, r
	kv, err := j.ensureKV(ctx, cfg)
	if err != nil {
		return nil, setupErr(cfg.Bucket, err)
	}
	return kv, nil
}

func setupErr(name string, err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		// The server answered: a configuration problem, not an outage.
		return fmt.Errorf("journal: ensure %s: %w", name, err)
	}
	return unavailable("ensure "+name, err)
}

// Close stops the group commit, drains the connection and, for an embedded
// server, shuts it down and waits until it has stopped. Stop appending and
// Stop every Reader first: an append still queued fails with
// ErrUnavailable, one being committed gets its answer (Close waits for it
// at most Config.Timeout). Close is idempotent and always returns nil.
func (j *Journal) Close() error {
	j.closeOnce.Do(func() {
		if j.gate != nil {
			j.gate.close()
		}
		for _, c := range []*committer{j.appends, j.feed} {
			if c != nil {
				c.close()
			}
		}
		if j.syncer != nil {
			j.syncer.close()
		}
		if err := j.nc.Drain(); err == nil {
			select {
			case <-j.closed:
			case <-time.After(j.cfg.Timeout + time.Second):
				j.nc.Close()
			}
		} else {
			j.nc.Close()
		}
		j.stopServer()
	})
	return nil
}

func (j *Journal) stopServer() {
	if j.srv != nil {
		j.srv.shutdown()
	}
}

// ClientURL returns the URL other processes reach the journal's NATS at:
// the embedded server's TCP address when Config.Listen is set, the
// connected server with an external NATS, and "" for an embedded server
// without a listener.
func (j *Journal) ClientURL() string {
	switch {
	case j.srv == nil:
		return j.nc.ConnectedUrlRedacted()
	case j.cfg.Listen == "":
		return ""
	default:
		return j.srv.ClientURL()
	}
}

// replicas is the replica count stream is set up with: Config.Replicas,
// or when it is zero the stream's own (1 for a stream to create).
func (j *Journal) replicas(ctx context.Context, stream string) (int, error) {
	if j.cfg.Replicas > 0 {
		return j.cfg.Replicas, nil
	}
	st, err := j.js.Stream(ctx, stream)
	switch {
	case err == nil:
		return st.CachedInfo().Config.Replicas, nil
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return 1, nil
	}
	return 0, err
}

func init() {
	natsconn.Of = func(j any) (*nats.Conn, jetstream.JetStream) {
		jj := j.(*Journal)
		return jj.nc, jj.js
	}
}
