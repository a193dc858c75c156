package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/transferd/transferd/api"
	"github.com/transferd/transferd/engine/journal"
	"github.com/transferd/transferd/ingest"
	"github.com/transferd/transferd/projections"
)

const serveAbout = `Serve the ingest routes (Connect webhook and lifecycle, Forge remote) and
the query API. By default NATS JetStream runs embedded and everything is
stored under --data; --nats-url uses an external NATS instead.

An event is answered 200 only after JetStream has acknowledged it; while the
journal is unavailable the answer is 503 with Retry-After, and the platform
retries.`

type serveConfig struct {
	store                storeFlags
	listen               string
	baseURL              string
	connectPath          string
	forgeARI             string
	jwksURL              string
	installKeysURL       string
	allowUnsignedInstall bool
	apiTokens            listFlag
	apiTokenFile         string
	maxBody              int64
	appendTimeout        time.Duration
	maxStreams           int
	logLevel             string
	logFormat            string
	accessLog            bool
	natsUsersFile        string
	noPublish            bool
	debugListen          string
	drive                driveFlags
	reconcile            reconcileFlags
}

func runServe(ctx context.Context, args []string, getenv env, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("serve", serveAbout, stderr)
	var c serveConfig
	c.store.register(fs)
	fs.StringVar(&c.listen, "listen", "127.0.0.1:8080", "`host:port` to serve HTTP on (port 0 picks a free one)")
	fs.StringVar(&c.baseURL, "base-url", "", "the app's public base URL, as in its Connect descriptor's baseUrl: its path is\nstripped before qsh is computed and signed installs must name it (default http://<listen>)")
	fs.StringVar(&c.connectPath, "connect-path", ingest.DefaultConnectPath, "`path` of the Connect migration webhook (cloudAppMigration.migrationWebhookPath)")
	fs.StringVar(&c.forgeARI, "forge-app-ari", "", "the Forge app's ARI (ari:cloud:ecosystem::app/<uuid>), the pinned audience of\nForge Invocation Tokens; empty refuses Forge events")
	fs.StringVar(&c.jwksURL, "forge-jwks-url", ingest.DefaultForgeJWKSURL, "`URL` of the JWKS that signs Forge Invocation Tokens")
	fs.StringVar(&c.installKeysURL, "install-keys-url", ingest.DefaultInstallKeysURL, "`URL` of the Connect signed-install key server (keys at <URL>/<kid>)")
	fs.BoolVar(&c.allowUnsignedInstall, "allow-unsigned-install", false, "accept a first install without a JWT (development only: anyone could register a tenant)")
	fs.Var(&c.apiTokens, "api-token", "bearer `token` for the query API (repeatable, or comma-separated)")
	fs.StringVar(&c.apiTokenFile, "api-token-file", "", "`file` with query API tokens, one per line")
	fs.Int64Var(&c.maxBody, "max-body", 1<<20, "largest request body accepted, in `bytes`")
	fs.DurationVar(&c.appendTimeout, "append-timeout", 3*time.Second, "longest wait for the journal's acknowledgement before answering 503")
	fs.IntVar(&c.maxStreams, "max-streams", api.DefaultMaxStreams, "most open GET /v1/stream responses (each holds a JetStream consumer); beyond it 503 with Retry-After")
	fs.StringVar(&c.store.natsListen, "nats-listen", "", "also expose the embedded NATS on this `host:port` (e.g. 127.0.0.1:4222) for importers'\nJetStream pull consumers of MIGRATIONS and TRANSFERS, to the users of --nats-users-file only;\nkeep it on loopback (no TLS)")
	fs.StringVar(&c.natsUsersFile, "nats-users-file", "", "`file` of the importers allowed on --nats-listen: \"<user> <password or bcrypt hash>\" or a user\nnkey (U…), one a line (default <data>/nats-users, generated with one user, importer)")
	fs.StringVar(&c.logLevel, "log-level", "info", "log `level`: debug, info, warn or error")
	fs.StringVar(&c.logFormat, "log-format", "text", "log `format`: text (key=value) or json (one object a line)")
	fs.BoolVar(&c.accessLog, "access-log", false, "log every HTTP request at info: method, path, status, bytes, duration, remote address")
	fs.BoolVar(&c.noPublish, "no-publish", false, "do not publish transfer states on TRANSFERS (for secondary instances; one instance must publish)")
	fs.StringVar(&c.debugListen, "debug-listen", "", "serve Go's profiling endpoints (/debug/pprof/: CPU and heap profiles, goroutine dumps)\non this loopback `host:port`, e.g. 127.0.0.1:6060; off by default")
	c.drive.register(fs)
	c.reconcile.register(fs)
	if err := parse(fs, args, getenv); err != nil {
		return err
	}
	log, err := newFormatLogger(stderr, c.logLevel, c.logFormat)
	if err != nil {
		return err
	}
	if c.debugListen != "" {
		stop, err := startDebug(c.debugListen, log)
		if err != nil {
			return err
		}
		defer stop()
	}

	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", c.listen, err)
	}
	defer ln.Close()
	if c.baseURL == "" {
		c.baseURL = "http://" + ln.Addr().String()
	}

	if c.store.natsListen != "" {
		if c.store.natsURL != "" {
			return usageError("--nats-listen exposes the embedded NATS: it does not go with --nats-url")
		}
		if c.store.listenUsers, err = c.store.loadListenUsers(c.natsUsersFile, log); err != nil {
			return err
		}
	}
	j, err := c.store.openJournal(ctx, log)
	if err != nil {
		return err
	}
	defer j.Close()
	tenants, err := c.store.openRegistry(ctx, j, getenv, log)
	if err != nil {
		return err
	}
	defer tenants.Close()
	if n, err := tenants.Rekey(ctx); err != nil {
		log.Warn("could not seal every tenant's secret with the current key", "err", err)
	} else if n > 0 {
		log.Info("sealed tenants' shared secrets with the current secrets key", "tenants", n)
	}

	tokens, scoped, err := loadTokens(c.apiTokens, c.apiTokenFile)
	if err != nil {
		return err
	}

	store, err := openStore(ctx, log, j, projectionFile(c.store.data))
	if err != nil {
		return err
	}
	defer store.Close()
	proj, err := projections.Start(ctx, j, store, projections.ProjectorOptions{Logger: log, NoPublish: c.noPublish})
	if err != nil {
		return err
	}
	defer func() {
		proj.Drain()
		<-proj.Closed()
	}()

	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	metrics := api.NewMetrics()
	metrics.SetVersion(version)
	in, err := ingest.New(hctx, ingest.Config{
		BaseURL:              c.baseURL,
		ConnectPath:          c.connectPath,
		AppARI:               c.forgeARI,
		JWKSURL:              c.jwksURL,
		InstallKeysURL:       c.installKeysURL,
		AllowUnsignedInstall: c.allowUnsignedInstall,
		MaxBody:              c.maxBody,
		AppendTimeout:        c.appendTimeout,
		Logger:               withLocalKeysNote(log, c.jwksURL),
		Observe:              func(o ingest.Outcome) { metrics.ObserveIngest(api.IngestOutcome(o)) },
		ForgeCredentials:     j.ForgeCredentials(),
	}, j, tenants)
	if err != nil {
		return err
	}
	defer in.Close() // stores the Forge credentials still pending; after the HTTP server, before the journal
	if c.drive.drive {
		if c.drive.claimant, err = instanceClaimant(c.store.data); err != nil {
			return err
		}
	}
	work, err := c.drive.startWork(log, j, store)
	if err != nil {
		return err
	}
	waitDriver, err := c.drive.start(hctx, log, j, store, tenants, in, metrics)
	if err != nil {
		return err
	}
	defer func() {
		cancel() // the driver stops with hctx, before the store closes
		waitDriver()
	}()
	reconciliation, waitReconcile, err := c.reconcile.start(hctx, log, &c.drive, j, store, tenants, in, metrics)
	if err != nil {
		return err
	}
	defer func() {
		cancel() // the reconciler stops with hctx, before the store closes
		waitReconcile()
	}()
	qcfg := api.Config{Tokens: tokens, ScopedTokens: scoped, Logger: log, Metrics: metrics, MaxStreams: c.maxStreams, Reconciliation: reconciliation}
	if work != nil {
		qcfg.Work = work
	}
	query, err := api.New(hctx, j, store, qcfg)
	if err != nil {
		return err
	}

	mux := http.NewServeMux()
	for _, p := range in.Routes() {
		mux.Handle(strings.TrimPrefix(p, "POST "), in)
	}
	mux.Handle("/", query)
	var handler http.Handler = mux
	if c.accessLog {
		handler = accessLog(log, mux)
	}

	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	srv.RegisterOnShutdown(func() { query.Close() })
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if u := j.ClientURL(); u != "" && c.store.natsURL == "" {
		log.Info("embedded NATS listening for importers", "url", u, "users", len(c.store.listenUsers))
	}
	log.Info("serving", "addr", "http://"+ln.Addr().String(), "baseUrl", c.baseURL, "connectPath", c.connectPath,
		"forge", c.forgeARI != "", "journal", c.store.describe())
	fmt.Fprintf(stdout, "listening on http://%s\n", ln.Addr())

	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, usageError(fmt.Sprintf("--log-level %q: want debug, info, warn or error", level))
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// loadTokens gathers the API tokens from the flag and the token file (one
// per line; blank lines and lines starting with # are ignored). A line
// "tenant=<issuer> <token>" is a tenant-scoped token (importers): it may
// use only the work routes, for that tenant's transfers.
func loadTokens(flagTokens []string, file string) ([]string, []api.ScopedToken, error) {
	tokens := append([]string(nil), flagTokens...)
	if file == "" {
		return tokens, nil, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, fmt.Errorf("--api-token-file: %w", err)
	}
	var scoped []api.ScopedToken
	for i, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if rest, ok := strings.CutPrefix(line, "tenant="); ok {
			tenant, tok, ok := strings.Cut(rest, " ")
			if tok = strings.TrimSpace(tok); !ok || tenant == "" || tok == "" || strings.ContainsAny(tok, " \t") {
				return nil, nil, fmt.Errorf("--api-token-file: line %d: want \"tenant=<issuer> <token>\"", i+1)
			}
			scoped = append(scoped, api.ScopedToken{Tenant: tenant, Token: tok})
			continue
		}
		tokens = append(tokens, line)
	}
	return tokens, scoped, nil
}

// openStore opens the projection at path, first rebuilding it from the
// journal when an older version wrote it, when it may be torn, or when it
// is ahead of the journal (a projection is derived from the journal, so
// nothing is lost; progress goes to the log).
//
// A store is torn when the machine went down while the projector had
// commits not yet synced (projections.ErrUnsynced): they are in the page
// cache only, which a process crash keeps and a power cut does not.
//
// A store is ahead after a power cut with --sync always when the projector
// had folded events that were stored but not yet synced: they were never
// acknowledged (no 200 before the sync), so the platform sends them again,
// but the store's checkpoint is past the end of the recovered stream.
func openStore(ctx context.Context, log *slog.Logger, j *journal.Journal, path string) (*projections.Store, error) {
	store, err := projections.Open(path, projections.Options{})
	why := "an older version wrote it"
	switch {
	case errors.Is(err, projections.ErrOldSchema):
		log.Info("rebuilding the projection from the journal: an older version wrote it", "path", path, "reason", err.Error())
	case errors.Is(err, projections.ErrUnsynced):
		why = "the machine restarted while it had unsynced commits"
		log.Warn("rebuilding the projection from the journal: the machine restarted while it had unsynced commits, so its file may be torn",
			"path", path, "reason", err.Error())
	case err != nil:
		return nil, err
	default:
		last, err := j.LastSeq(ctx)
		if err != nil {
			store.Close()
			return nil, err
		}
		if store.Checkpoint() <= last {
			return store, nil
		}
		why = "it was ahead of the journal"
		log.Warn("rebuilding the projection from the journal: it is ahead of the journal, which lost unacknowledged events in a crash",
			"path", path, "checkpoint", store.Checkpoint(), "journal_last_seq", last)
		if err := store.Close(); err != nil {
			return nil, err
		}
	}
	start, last := time.Now(), time.Now()
	progress := func(done, total uint64) {
		if now := time.Now(); now.Sub(last) >= 5*time.Second {
			last = now
			rate := float64(done) / max(now.Sub(start).Seconds(), 1e-3)
			eta := time.Duration(0)
			if rate > 0 && total >= done {
				eta = (time.Duration(float64(total-done)/rate) * time.Second).Round(time.Second)
			}
			log.Info("rebuilding the projection", "events", done, "of", total, "per_second", int(rate), "eta", eta.String())
		}
	}
	if err := projections.Rebuild(ctx, j, path, progress); err != nil {
		return nil, fmt.Errorf("rebuild %s from the journal (%s): %w", path, why, err)
	}
	log.Info("rebuilt the projection", "path", path, "took", time.Since(start).Round(time.Millisecond))
	return projections.Open(path, projections.Options{})
}
