// Package apitest runs the query API for tests, with real dependencies: an
// embedded journal in a temporary directory, a bbolt projection with its
// projector, and the API on an httptest server. Everything started is
// stopped in tb.Cleanup, streams first.
package apitest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/transferd/transferd/api"
	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/engine/journal"
	"github.com/transferd/transferd/engine/journal/journaltest"
	"github.com/transferd/transferd/projections"
)

// Token is the API token an Env accepts unless Options.API.Tokens says
// otherwise.
const Token = "apitest-token-0123456789"

// Options configure New. Zero values are the defaults.
type Options struct {
	// API is the server's configuration; New fills in Tokens (Token) when
	// empty.
	API api.Config
	// Journal configures the journal unless Journal is given.
	JournalConfig journal.Config
	// Journal, when set, is used instead of opening one.
	Journal *journal.Journal
	// NoProjector leaves the store alone: it stays at its checkpoint.
	NoProjector bool
	// Transfers, when positive, pre-loads this many transfers (see Load).
	Transfers int
	// HTTPServer, when set, configures the httptest server's http.Server
	// (timeouts, say) before it starts.
	HTTPServer func(*http.Server)
}

// Env is a running query API and what it reads.
type Env struct {
	URL     string
	Journal *journal.Journal
	Store   *projections.Store
	API     *api.Server
	Server  *httptest.Server

	tb        testing.TB
	projector *projections.Projector
}

// New starts an Env.
func New(tb testing.TB, opts Options) *Env {
	tb.Helper()
	e := &Env{tb: tb, Journal: opts.Journal}
	if e.Journal == nil {
		e.Journal = journaltest.OpenConfig(tb, opts.JournalConfig)
	}
	store, err := projections.Open(filepath.Join(tb.TempDir(), "projection.db"), projections.Options{})
	if err != nil {
		tb.Fatalf("projections.Open: %v", err)
	}
	tb.Cleanup(func() { store.Close() })
	e.Store = store
	if opts.Transfers > 0 {
		e.Load(opts.Transfers)
	}
	if !opts.NoProjector {
		p, err := projections.Start(context.Background(), e.Journal, store, projections.ProjectorOptions{
			Logger:    slog.New(slog.DiscardHandler),
			BatchWait: time.Millisecond,
		})
		if err != nil {
			tb.Fatalf("projections.Start: %v", err)
		}
		tb.Cleanup(func() {
			p.Stop()
			<-p.Closed()
		})
		e.projector = p
	}

	cfg := opts.API
	if len(cfg.Tokens) == 0 {
		cfg.Tokens = []string{Token}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	srv, err := api.New(context.Background(), e.Journal, store, cfg)
	if err != nil {
		tb.Fatalf("api.New: %v", err)
	}
	e.API = srv
	e.Server = httptest.NewUnstartedServer(srv)
	if opts.HTTPServer != nil {
		opts.HTTPServer(e.Server.Config)
	}
	e.Server.Start()
	e.URL = e.Server.URL
	tb.Cleanup(func() {
		srv.Close() // end the streams, or Server.Close waits for them forever
		e.Server.Close()
	})
	return e
}

// Append appends events in order and returns their acknowledgements.
func (e *Env) Append(events ...*engine.Event) []journal.Ack {
	e.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	acks := make([]journal.Ack, len(events))
	for i, ev := range events {
		ack, err := e.Journal.Append(ctx, ev)
		if err != nil {
			e.tb.Fatalf("Append %s: %v", ev.ID, err)
		}
		acks[i] = ack
	}
	return acks
}

// Sync waits until the projection has applied everything in the journal.
func (e *Env) Sync() {
	e.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	last, err := e.Journal.LastSeq(ctx)
	if err != nil {
		e.tb.Fatal(err)
	}
	if err := e.Store.Wait(ctx, last); err != nil {
		e.tb.Fatal(err)
	}
}

// Load appends n transfers of three events each (triggered, uploaded,
// settled), spread over 10 migrations and 4 tenants, with ids
// LoadID(0..n-1), and projects them: quickly, in large batches.
func (e *Env) Load(n int) {
	e.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const chunk = 3 * 4096
	events := make([]*engine.Event, 0, min(3*n, chunk))
	flush := func() {
		if _, err := e.Journal.AppendAll(ctx, events); err != nil {
			e.tb.Fatalf("append: %v", err)
		}
		events = events[:0]
	}
	for i := range n {
		for k, kind := range []engine.Kind{engine.KindListenerTriggered, engine.KindAppDataUploaded, engine.KindTransferSettled} {
			events = append(events, Event(e.tb, Spec{
				TransferID:  LoadID(i),
				Kind:        kind,
				MessageID:   fmt.Sprintf("load-%d-%d", i, k),
				MigrationID: fmt.Sprintf("mig-%d", i%10),
				Issuer:      fmt.Sprintf("tenant-%d", i%4),
				ReceivedAt:  Epoch.Add(time.Duration(3*i+k) * time.Millisecond),
			}))
			if len(events) == chunk {
				flush()
			}
		}
	}
	flush()
	if err := projections.CatchUp(ctx, e.Journal, e.Store, projections.ProjectorOptions{
		Logger: slog.New(slog.DiscardHandler), NoPublish: true,
	}); err != nil {
		e.tb.Fatalf("projections.CatchUp: %v", err)
	}
}

// LoadID is the id of the i-th transfer Load appends.
func LoadID(i int) string { return fmt.Sprintf("load-%08d", i) }

// Epoch is when test events are received unless a Spec says otherwise.
var Epoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// Spec describes a Connect event for Event.
type Spec struct {
	TransferID string
	Kind       engine.Kind // default listener-triggered
	// MessageID is the event's identity; empty for a content digest.
	MessageID   string
	MigrationID string    // default "mig-1"
	CloudURL    string    // default https://example.atlassian.net
	Issuer      string    // default "tenant-a"
	Original    string    // originalTransferId, for re-runs
	Key         string    // upload key (app-data-uploaded), default "key-<messageId>"
	Label       string    // upload label (app-data-uploaded), default "attachments"
	CreatedAt   time.Time // the migration's createdAt, default Epoch
	ReceivedAt  time.Time
	// Extra is raw JSON members added to the payload, e.g. `"note":"x"`.
	Extra string
}

// Event builds and parses a Connect event as ingest would have accepted
// it: issuer and receive time set.
func Event(tb testing.TB, s Spec) *engine.Event {
	tb.Helper()
	if s.Kind == "" {
		s.Kind = engine.KindListenerTriggered
	}
	if s.MigrationID == "" {
		s.MigrationID = "mig-1"
	}
	if s.CloudURL == "" {
		s.CloudURL = "https://example.atlassian.net"
	}
	if s.Issuer == "" {
		s.Issuer = "tenant-a"
	}
	if s.ReceivedAt.IsZero() {
		s.ReceivedAt = Epoch
	}
	eventType := engine.ConnectEventType(s.Kind)
	if s.Kind == engine.KindUnknown {
		eventType = "some-future-event"
	}
	var b strings.Builder
	fmt.Fprintf(&b, `{"eventType":%q,"transferId":%q`, eventType, s.TransferID)
	if s.MessageID != "" {
		fmt.Fprintf(&b, `,"messageId":%q`, s.MessageID)
	}
	if s.Original != "" {
		fmt.Fprintf(&b, `,"originalTransferId":%q`, s.Original)
	}
	if s.CreatedAt.IsZero() {
		s.CreatedAt = Epoch
	}
	fmt.Fprintf(&b, `,"migrationDetails":{"migrationId":%q,"migrationScopeId":"scope-1","name":"Move to cloud",`+
		`"createdAt":%d,"cloudUrl":%q,"jiraClientKey":%q,"confluenceClientKey":"unknown"}`,
		s.MigrationID, s.CreatedAt.UnixMilli(), s.CloudURL, s.Issuer)
	switch s.Kind {
	case engine.KindAppDataUploaded:
		key := s.Key
		if key == "" {
			key = "key-" + s.MessageID
		}
		label := s.Label
		if label == "" {
			label = "attachments"
		}
		fmt.Fprintf(&b, `,"s3Key":%q,"label":%q`, key, label)
	case engine.KindListenerErrored:
		b.WriteString(`,"transferError":{"exceptionType":"java.lang.IllegalStateException","safeStackTrace":"at Listener.java:42"}`)
	case engine.KindTransferSettled:
		b.WriteString(`,"status":"SUCCESS"`)
	}
	if s.Extra != "" {
		b.WriteString("," + s.Extra)
	}
	b.WriteString("}")
	payload := b.String()
	if s.CreatedAt.Before(engine.MinCreatedAt) || !s.CreatedAt.Before(engine.MaxCreatedAt) {
		// A time ingest refuses: build the event from a plausible one and
		// keep the hostile bytes, as if stored before ingest refused them.
		plausible := strings.Replace(payload, fmt.Sprintf(`"createdAt":%d`, s.CreatedAt.UnixMilli()),
			fmt.Sprintf(`"createdAt":%d`, Epoch.UnixMilli()), 1)
		ev, err := engine.Parse(engine.SourceConnect, []byte(plausible))
		if err != nil {
			tb.Fatalf("engine.Parse: %v", err)
		}
		ev.Payload = []byte(payload)
		ev.Issuer, ev.ReceivedAt = s.Issuer, s.ReceivedAt
		return ev
	}
	ev, err := engine.Parse(engine.SourceConnect, []byte(payload))
	if err != nil {
		tb.Fatalf("engine.Parse: %v", err)
	}
	ev.Issuer = s.Issuer
	ev.ReceivedAt = s.ReceivedAt
	return ev
}
