package journal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	// host:port (port 0 picks a free one; see ClientURL). There is no
	// authentication: keep it on loopback.
	Listen string
	// SyncAlways makes the embedded server fsync every write.
	SyncAlways bool
	// Logger receives connection events and the embedded server's warnings
	// and errors; nil discards them.
	Logger *slog.Logger
	// Debug also passes the embedded server's notices and debug lines.
	Debug bool

	// Replicas of the streams and buckets; default 1.
	Replicas int
	// Duplicates is the streams' de-duplication window; default 2 minutes.
	Duplicates time.Duration
	// Timeout bounds the wait for an append's ack (an earlier context
	// deadline wins), requests whose context has no deadline, the embedded
	// server's start and the connection's drain; default 5 seconds.
	Timeout time.Duration
}

func (c Config) withDefaults() Config {
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.Duplicates <= 0 {
		c.Duplicates = 2 * time.Minute
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	return c
}

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

	closeOnce sync.Once
}

// Open connects to the journal, starting the embedded server when
// cfg.URL is empty, and ensures the streams and buckets exist with the
// configuration of DESIGN §5 (updating them if they differ). Opening again
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
	return j, nil
}

// setup creates or updates the streams and buckets.
func (j *Journal) setup(ctx context.Context) error {
	js, err := jetstream.New(j.nc,
		jetstream.WithDefaultTimeout(j.cfg.Timeout),
		jetstream.WithPublishAsyncTimeout(j.cfg.Timeout))
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	j.js = js
	r, dup := j.cfg.Replicas, j.cfg.Duplicates
	j.events, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        StreamEvents,
		Description: "transferd migration events: the source of truth",
		Subjects:    []string{eventsPrefix + ">"},
		Retention:   jetstream.LimitsPolicy,
		MaxMsgs:     -1,
		MaxBytes:    -1,
		MaxAge:      0,
		Storage:     jetstream.FileStorage,
		Replicas:    r,
		Duplicates:  dup,
		DenyDelete:  true,
		DenyPurge:   true,
		AllowDirect: true,
	})
	if err != nil {
		return setupErr(StreamEvents, err)
	}
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        StreamTransfers,
		Description: "transferd transfer states after each change",
		Subjects:    []string{transfersPrefix + ">"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    r,
		Duplicates:  dup,
		AllowDirect: true,
	})
	if err != nil {
		return setupErr(StreamTransfers, err)
	}
	j.tenants, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      BucketTenants,
		Description: "transferd Connect installations by clientKey",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    r,
	})
	if err != nil {
		return setupErr(BucketTenants, err)
	}
	j.bindings, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      BucketBindings,
		Description: "transferd transfer id to the issuer that first sent it",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    r,
	})
	if err != nil {
		return setupErr(BucketBindings, err)
	}
	return nil
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

// Close drains the connection and, for an embedded server, shuts it down
// and waits until it has stopped. Stop appending and Stop every Reader
// first: an append still waiting for its ack fails. Close is idempotent and
// always returns nil.
func (j *Journal) Close() error {
	j.closeOnce.Do(func() {
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
func (j *Journal) Tenants() jetstream.KeyValue { return j.tenants }

// Bindings returns the transferd_bindings bucket; see Bind.
func (j *Journal) Bindings() jetstream.KeyValue { return j.bindings }

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
// e.TransferID, e.Kind), encoded by Encode, with Nats-Msg-Id e.ID. It
// returns only once JetStream has acknowledged the message. Any failure to
// obtain the ack, including the end of ctx, wraps ErrUnavailable; an event
// that cannot be routed is ErrInvalid and one over the server's limit is
// ErrTooLarge.
func (j *Journal) Append(ctx context.Context, e *engine.Event) (Ack, error) {
	if e.ID == "" || !e.Source.Valid() || !validToken(e.TransferID) || !validToken(string(e.Kind)) {
		return Ack{}, fmt.Errorf("%w: id %q, source %q, transferId %q, kind %q",
			ErrInvalid, e.ID, e.Source, e.TransferID, e.Kind)
	}
	return j.publish(ctx, &nats.Msg{
		Subject: EventSubject(e.Source, e.TransferID, e.Kind),
		Header: nats.Header{
			jetstream.MsgIDHeader:          []string{e.ID},
			jetstream.ExpectedStreamHeader: []string{StreamEvents},
		},
		Data: Encode(e),
	})
}

// Publish stores data on subject with Nats-Msg-Id msgID (none when empty)
// and waits for the ack, with Append's error contract. The projector uses
// it for the TRANSFERS feed.
func (j *Journal) Publish(ctx context.Context, subject, msgID string, data []byte) (Ack, error) {
	m := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	if msgID != "" {
		m.Header[jetstream.MsgIDHeader] = []string{msgID}
	}
	return j.publish(ctx, m)
}

// publish sends m and waits for its ack. PublishMsgAsync and a wait on
// its future beat the synchronous PublishMsg by 10-30% with 64 callers
// (BenchmarkAppend), and fail at once on a disconnect instead of at the
// deadline.
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

// Bind records issuer as the owner of transferID unless one is recorded
// already (the first writer wins), and returns the owner. Keys in the
// bindings bucket are transfer ids with every byte outside [-_a-zA-Z0-9]
// written as =XX (hex). Failures to reach the bucket wrap ErrUnavailable.
func (j *Journal) Bind(ctx context.Context, transferID, issuer string) (string, error) {
	if transferID == "" {
		return "", fmt.Errorf("%w: empty transferId", ErrInvalid)
	}
	key := bindingKey(transferID)
	_, err := j.bindings.Create(ctx, key, []byte(issuer))
	if err == nil {
		return issuer, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return "", unavailable("bind "+transferID, err)
	}
	kv, err := j.bindings.Get(ctx, key)
	if err != nil {
		return "", unavailable("bind "+transferID, err)
	}
	return string(kv.Value()), nil
}

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
