package journal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/transferd/transferd/engine"
)

// Config configures Open. The zero value with a DataDir runs an embedded
// server reachable only from this process.
type Config struct {
	// URL of an external NATS (comma-separated for a cluster). Empty
	// starts an embedded nats-server storing under DataDir.
	URL string
	// Options are extra client options for URL: credentials, TLS, …. They
	// are applied after the journal's own.
	Options []nats.Option

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
	// Duplicates is the streams' de-duplication window; default 2 minutes.
	Duplicates time.Duration
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

// Journal is the event log. Its methods are safe for concurrent use.
type Journal struct {
	cfg      Config
	srv      *embedded // nil with an external NATS
	nc       *nats.Conn
	closed   chan nats.Status
	js       jetstream.JetStream
	events   jetstream.Stream
	tenants  jetstream.KeyValue
	bindings jetstream.KeyValue

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
		opts = append(opts, cfg.Options...)
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
	transfers, err := j.ensureStream(ctx, jetstream.StreamConfig{
		Name:               StreamTransfers,
		Description:        "transferd transfer states after each change",
		Subjects:           []string{transfersPrefix + ">"},
		Retention:          jetstream.LimitsPolicy,
		MaxMsgsPerSubject:  1, // bounded: each transfer's latest state per phase (see docs/design.md §9.2)
		Storage:            jetstream.FileStorage,
		Replicas:           r,
		Duplicates:         dup,
		AllowDirect:        true,
		AllowAtomicPublish: true,
	})
	if err != nil {
		return setupErr(StreamTransfers, err)
	}
	if r, err = j.replicas(ctx, "KV_"+BucketTenants); err != nil {
		return setupErr(BucketTenants, err)
	}
	j.tenants, err = j.ensureKV(ctx, jetstream.KeyValueConfig{
		Bucket:      BucketTenants,
		Description: "transferd Connect installations by clientKey",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    r,
	})
	if err != nil {
		return setupErr(BucketTenants, err)
	}
	if r, err = j.replicas(ctx, "KV_"+BucketBindings); err != nil {
		return setupErr(BucketBindings, err)
	}
	j.bindings, err = j.ensureKV(ctx, jetstream.KeyValueConfig{
		Bucket:      BucketBindings,
		Description: "transferd transfer id to the issuer that first sent it",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    r,
	})
	if err != nil {
		return setupErr(BucketBindings, err)
	}

	// A server older than 2.12 drops the setting it does not know.
	events := j.events.CachedInfo().Config
	switch j.cfg.GroupCommit {
	case GroupCommitAtomic:
		if events.AllowAtomicPublish {
			j.appends = newCommitter(StreamEvents, j, events.Replicas, &j.stats)
		}
		if tc := transfers.CachedInfo().Config; tc.AllowAtomicPublish {
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
		kvStream(BucketBindings): false, // Bind only creates keys
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

// JetStream returns the JetStream context, for consumers of the streams.
func (j *Journal) JetStream() jetstream.JetStream { return j.js }

// Conn returns the NATS connection.
func (j *Journal) Conn() *nats.Conn { return j.nc }

// Tenants returns the transferd_tenants bucket.
// With SyncAlways on the embedded server its writes return once on disk.
// Its Get reads from the bucket stream's leader, so that a tenant another
// instance has just installed is found (see leaderKV).
func (j *Journal) Tenants() jetstream.KeyValue {
	return j.durableKV(leaderKV{j.tenants, j.nc, j.cfg.Timeout})
}

// Bindings returns the transferd_bindings bucket, like Tenants; see Bind.
func (j *Journal) Bindings() jetstream.KeyValue { return j.durableKV(j.bindings) }

func (j *Journal) durableKV(kv jetstream.KeyValue) jetstream.KeyValue {
	if j.syncer == nil {
		return kv
	}
	return durableKV{kv, j.syncer}
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

// Ack is JetStream's acknowledgement of an appended or published message.
type Ack struct {
	// Seq is the message's stream sequence; for a duplicate, the sequence
	// of the message stored first.
	Seq uint64
	// Duplicate reports that a message with the same ID was already stored
	// within the duplicate window, and nothing new was written.
	Duplicate bool
}

// Append stores e in stream MIGRATIONS on EventSubject(e.Source,
// e.TransferID, e.Kind), encoded by Encode, with Nats-Msg-Id
// e.DedupeKey() (scoped by source, issuer and transfer). It
// returns only once JetStream has acknowledged the message and, with
// Config.SyncAlways, once the message is on disk (see GroupCommit: the
// appends waiting at the same time share a sync, or an atomic batch). Any
// failure to obtain the ack, including the end of ctx, wraps
// ErrUnavailable, and the message may still be stored (no one was told it
// is; a retry with the same ID within the duplicate window is recognised as
// a duplicate). An event that cannot be routed is ErrInvalid and one over
// the server's limit is ErrTooLarge.
func (j *Journal) Append(ctx context.Context, e *engine.Event) (Ack, error) {
	if e.ID == "" || !e.Source.Valid() || !validToken(e.TransferID) || !validToken(string(e.Kind)) {
		return Ack{}, fmt.Errorf("%w: id %q, source %q, transferId %q, kind %q",
			ErrInvalid, e.ID, e.Source, e.TransferID, e.Kind)
	}
	msgID := e.DedupeKey()
	m := &nats.Msg{
		Subject: EventSubject(e.Source, e.TransferID, e.Kind),
		Header: nats.Header{
			jetstream.MsgIDHeader:          []string{msgID},
			jetstream.ExpectedStreamHeader: []string{StreamEvents},
		},
		Data: Encode(e),
	}
	if j.appends != nil {
		return j.submit(ctx, j.appends, m, msgID)
	}
	return j.durable(ctx, StreamEvents, m)
}

// Publish stores data on subject with Nats-Msg-Id msgID (none when empty)
// and waits for the ack, with Append's error contract. The projector uses
// it for the TRANSFERS feed, which is group-committed like appends.
func (j *Journal) Publish(ctx context.Context, subject, msgID string, data []byte) (Ack, error) {
	m := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	if msgID != "" {
		m.Header[jetstream.MsgIDHeader] = []string{msgID}
	}
	switch {
	case strings.HasPrefix(subject, transfersPrefix):
		if j.feed != nil {
			return j.submit(ctx, j.feed, m, msgID)
		}
		return j.durable(ctx, StreamTransfers, m)
	case strings.HasPrefix(subject, eventsPrefix):
		return j.durable(ctx, StreamEvents, m)
	}
	return j.publish(ctx, m)
}

// durable publishes m to stream and, with GroupCommitSync, waits until it
// is on disk, sharing the sync with the publishes waiting at the same
// time. A duplicate waits too: the message stored first may have been
// acknowledged an instant ago, and not be on disk yet.
func (j *Journal) durable(ctx context.Context, stream string, m *nats.Msg) (Ack, error) {
	if j.syncer == nil {
		return j.publish(ctx, m)
	}
	ctx, cancel := j.bound(ctx)
	defer cancel()
	e := j.syncer.begin()
	ack, err := j.publish(ctx, m)
	if err != nil {
		j.syncer.abandon(e)
		return ack, err
	}
	if err := j.syncer.sync(ctx, stream, e); err != nil {
		return Ack{}, unavailable("publish "+m.Subject, err)
	}
	return ack, nil
}

// bound returns ctx bounded by Config.Timeout, unless its deadline is
// earlier.
func (j *Journal) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if d, ok := ctx.Deadline(); ok && time.Until(d) <= j.cfg.Timeout {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, j.cfg.Timeout)
}

// submit hands m to c, bounding the wait by Config.Timeout.
func (j *Journal) submit(ctx context.Context, c *committer, m *nats.Msg, id string) (Ack, error) {
	if err := ctx.Err(); err != nil {
		return Ack{}, unavailable("publish "+m.Subject, err)
	}
	if size := len(m.Data) + headerSize(m.Header) + batchHeaderRoom; int64(size) > j.nc.MaxPayload() {
		return Ack{}, fmt.Errorf("%w: %d bytes on %s: %w", ErrTooLarge, len(m.Data), m.Subject, nats.ErrMaxPayload)
	}
	ctx, cancel := j.bound(ctx)
	defer cancel()
	return c.submit(ctx, m, id)
}

// headerSize is the encoded size of h on the wire.
func headerSize(h nats.Header) int {
	n := len("NATS/1.0\r\n\r\n")
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(": \r\n") + len(v)
		}
	}
	return n
}

// publish sends m on its own and waits for its ack. PublishMsgAsync and a
// wait on its future beat the synchronous PublishMsg by 10-30% with 64
// callers (BenchmarkAppend), and fail at once on a disconnect instead of at
// the deadline.
func (j *Journal) publish(ctx context.Context, m *nats.Msg) (Ack, error) {
	if err := ctx.Err(); err != nil {
		return Ack{}, unavailable("publish "+m.Subject, err)
	}
	f, err := j.js.PublishMsgAsync(m)
	if err != nil {
		if errors.Is(err, nats.ErrMaxPayload) {
			return Ack{}, fmt.Errorf("%w: %d bytes on %s: %w", ErrTooLarge, len(m.Data), m.Subject, err)
		}
		return Ack{}, unavailable("publish "+m.Subject, err)
	}
	select { // the future fails by itself after Config.Timeout
	case pa := <-f.Ok():
		return Ack{Seq: pa.Sequence, Duplicate: pa.Duplicate}, nil
	case err := <-f.Err():
		return Ack{}, unavailable("publish "+m.Subject, err)
	case <-ctx.Done():
		return Ack{}, unavailable("publish "+m.Subject, ctx.Err())
	}
}

// CommitStats returns the group commit's counters.
func (j *Journal) CommitStats() CommitStats { return j.stats.snapshot() }

// Bind records issuer as the owner of transferID unless one is recorded
// already (the first writer wins), and returns the owner. Keys in the
// bindings bucket are transfer ids with every byte outside [-_a-zA-Z0-9]
// written as =XX (hex). Failures to reach the bucket wrap ErrUnavailable.
//
// With SyncAlways, Bind returns once the binding is on disk, also when it
// finds one (another caller may have written it an instant ago): an event
// appended after Bind can then never be on disk without its binding, not
// even one that was never acknowledged.
func (j *Journal) Bind(ctx context.Context, transferID, issuer string) (string, error) {
	if transferID == "" {
		return "", fmt.Errorf("%w: empty transferId", ErrInvalid)
	}
	key := bindingKey(transferID)
	owner, err := j.bind(ctx, key, issuer)
	if err != nil {
		return "", unavailable("bind "+transferID, err)
	}
	if j.syncer != nil {
		if err := j.syncer.sync(ctx, kvStream(BucketBindings), nil); err != nil {
			return "", unavailable("bind "+transferID, err)
		}
	}
	return owner, nil
}

// bind is Create, or Get when the key exists. On a replicated bucket the
// leader refuses a Create while another Create of the key is in flight,
// before any replica has applied it, so Get (which any replica answers)
// may find nothing yet: ask again, Create too, a few times.
func (j *Journal) bind(ctx context.Context, key, issuer string) (string, error) {
	for attempt := 1; ; attempt++ {
		_, err := j.bindings.Create(ctx, key, []byte(issuer))
		if err == nil {
			return issuer, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return "", err
		}
		kv, err := j.bindings.Get(ctx, key)
		if err == nil {
			return string(kv.Value()), nil
		}
		if !errors.Is(err, jetstream.ErrKeyNotFound) || attempt == maxBindAttempts {
			return "", err
		}
		select {
		case <-time.After(time.Duration(attempt) * 5 * time.Millisecond):
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// maxBindAttempts bounds bind's rounds of Create and Get.
const maxBindAttempts = 8

// bindingKey escapes a transfer id into a valid KV key, reversibly.
func bindingKey(id string) string {
	const hex = "0123456789ABCDEF"
	var b []byte
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := c == '-' || c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if ok && b == nil {
			continue
		}
		if b == nil {
			b = append(make([]byte, 0, len(id)+8), id[:i]...)
		}
		if ok {
			b = append(b, c)
		} else {
			b = append(b, '=', hex[c>>4], hex[c&15])
		}
	}
	if b == nil {
		return id
	}
	return string(b)
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
