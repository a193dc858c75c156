package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/transferd/transferd/api/httperr"
	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/engine/journal"
	"github.com/transferd/transferd/projections"
)

// Store is the projection the API reads; *projections.Store implements it.
type Store interface {
	TransferJSON(id string) ([]byte, error)
	List(f projections.Filter) (projections.Page, error)
	Migration(id, tenant string) (projections.Page, error)
	Lineage(id string) (root string, transfers []*engine.Transfer, err error)
	Checkpoint() uint64
	Commits() uint64
	Stats() (projections.Stats, error)
	Parked(after uint64, limit int) ([]projections.ParkedEvent, uint64, error)
}

// Config configures New: the optional settings, whose zero values are the
// defaults.
type Config struct {
	// Tokens are the API tokens accepted on /v1 routes. Empty strings are
	// ignored; with none, every /v1 request is refused.
	Tokens []string
	// ScopedTokens are tenant-scoped API tokens, for importers: accepted
	// on the work routes only, which then show and take only that
	// tenant's work (another tenant's transfer is 403 tenant_mismatch).
	ScopedTokens []ScopedToken
	// Work is the importers' work queue; nil answers the work routes 404.
	Work Work
	// Logger receives failures (error) and refusals (debug); nil discards.
	Logger *slog.Logger
	// Metrics to record into and serve at /metrics; nil creates them. The
	// projector's lag and progress are registered into them by New.
	Metrics *Metrics

	// MaxLagSequences and MaxLag bound how far the projector may be
	// behind the journal, in messages and in the age of the oldest message
	// not applied, before /readyz answers 503; defaults 10 000 and 30 s.
	MaxLagSequences uint64
	MaxLag          time.Duration
	// ReadyTimeout bounds the journal requests of /readyz, /metrics and a
	// stream's start; default 2 s.
	ReadyTimeout time.Duration
	// Heartbeat is the interval of comment lines on an idle stream; default
	// 15 s.
	Heartbeat time.Duration
	// StreamWriteTimeout bounds each write to a stream (a client that stops
	// reading is dropped after it); default 30 s.
	StreamWriteTimeout time.Duration
	// MaxStreams bounds the open GET /v1/stream responses (each holds a
	// JetStream consumer); beyond it a new stream is answered 503 with
	// Retry-After. Default DefaultMaxStreams.
	MaxStreams int
	// Reconciliation, when set, is what GET /v1/reconciliation shows: the
	// last reconciliation with the platform (serve --drive
	// --reconcile-interval). Nil answers that route 404.
	Reconciliation func() any
}

// DefaultMaxStreams is Config.MaxStreams's default: well below what one
// NATS server serves comfortably, so that history, ?at= and the
// projector, which need consumers of their own, never go short.
const DefaultMaxStreams = 256

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics()
	}
	if c.MaxLagSequences == 0 {
		c.MaxLagSequences = 10_000
	}
	if c.MaxLag <= 0 {
		c.MaxLag = 30 * time.Second
	}
	if c.ReadyTimeout <= 0 {
		c.ReadyTimeout = 2 * time.Second
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = 15 * time.Second
	}
	if c.StreamWriteTimeout <= 0 {
		c.StreamWriteTimeout = 30 * time.Second
	}
	if c.MaxStreams <= 0 {
		c.MaxStreams = DefaultMaxStreams
	}
	return c
}

// Server is the query API, an http.Handler. Its routes are listed by
// Routes; every other path is a JSON 404, and every other method on a
// route a JSON 405.
type Server struct {
	cfg     Config
	journal *journal.Journal
	store   Store
	log     *slog.Logger
	metrics *Metrics
	tokens  tokens
	logins  *sessions
	limiter *loginLimiter
	mux     *http.ServeMux
	routes  []string

	ctx     context.Context // ends open streams
	cancel  context.CancelFunc
	mu      sync.Mutex // guards closed and the streams' Add
	closed  bool
	streams sync.WaitGroup
	open    int // streams holding a slot (MaxStreams), under mu
}

// New returns the query API over j, read for event history, state at a
// past point and the feeds, and store, the projection: current state,
// lists, lineage, migrations. When ctx ends, every open stream ends, as
// with Close.
func New(ctx context.Context, j *journal.Journal, store Store, cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	if ctx == nil || j == nil || store == nil {
		return nil, errors.New("api: New needs a context, a journal and a store")
	}
	s := &Server{
		cfg:     cfg,
		journal: j,
		store:   store,
		log:     cfg.Logger,
		metrics: cfg.Metrics,
		tokens:  newTokens(cfg.Tokens, cfg.ScopedTokens),
		logins:  newSessions(),
		limiter: newLoginLimiter(),
		mux:     http.NewServeMux(),
	}
	if len(s.tokens.sums) == 0 && len(s.tokens.scoped) == 0 {
		s.log.Warn("no API token configured: every /v1 request will be refused (serve: set --api-token or --api-token-file)")
	}
	if err := s.metrics.reg.Register(newProjectorCollector(s)); err != nil {
		return nil, err
	}
	s.ctx, s.cancel = context.WithCancel(ctx)

	s.route("GET /v1/transfers", s.handleList)
	s.route("GET /v1/transfers/{id}", s.handleTransfer)
	s.route("GET /v1/transfers/{id}/events", s.handleEvents)
	s.route("GET /v1/transfers/{id}/lineage", s.handleLineage)
	s.route("GET /v1/migrations/{migrationId}", s.handleMigration)
	s.route("GET /v1/parked", s.handleParked)
	s.route("GET /v1/reconciliation", s.handleReconciliation)
	s.route("GET /v1/deadlines", s.handleDeadlines)
	s.route("GET /v1/stream", s.handleStream)
	s.routeWork("POST /v1/work/claim", s.handleClaim)
	s.routeWork("POST /v1/transfers/{id}/uploads/{key}/report", s.handleReport)
	s.routeWork("POST /v1/transfers/{id}/uploads/{key}/requeue", s.handleRequeue)
	s.routeWork("GET /v1/dead-letters", s.handleDeadLetters)
	s.route("GET /healthz", s.handleHealth)
	s.route("GET /readyz", s.handleReady)
	s.route("GET /metrics", s.serveMetrics)
	s.route("GET /openapi.json", s.handleOpenAPI)
	s.routeDashboard() // GET / here; its pages, assets and sign-in outside Routes
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, s.log, notFound("no route "+r.URL.Path))
	})
	return s, nil
}

// ServeHTTP routes a request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Routes returns the patterns the Server serves ("GET /v1/transfers/{id}",
// …), in a fixed order. Those under /v1 need an API token. The
// dashboard's transfer pages, static assets and POST /login and /logout
// are served too but not listed: they are pages, not the API.
func (s *Server) Routes() []string { return append([]string(nil), s.routes...) }

// Metrics returns the metrics the Server records into and serves.
func (s *Server) Metrics() *Metrics { return s.metrics }

// Close ends every open stream and waits until their handlers have
// returned (at most Config.StreamWriteTimeout, for a client that stopped
// reading); new streams are refused with 503. Register it with
// http.Server.RegisterOnShutdown, since Shutdown waits for active
// connections and a stream stays active until its client leaves. The other
// routes keep working. Close is idempotent and returns nil.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.streams.Wait()
	return nil
}

// enterStream counts a stream in, unless the Server is closing or
// MaxStreams are open; a nil error must be followed by leaveStream.
func (s *Server) enterStream() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.ctx.Err() != nil {
		return &Error{Code: httperr.CodeUnavailable, Message: "the server is shutting down"}
	}
	if s.open >= s.cfg.MaxStreams {
		return &Error{Code: httperr.CodeUnavailable, Message: "too many open streams (at most " + strconv.Itoa(s.cfg.MaxStreams) + "); retry later"}
	}
	s.open++
	s.streams.Add(1)
	return nil
}

// leaveStream counts a stream out.
func (s *Server) leaveStream() {
	s.mu.Lock()
	s.open--
	s.mu.Unlock()
	s.streams.Done()
}

// route serves pattern with fn, behind the token check for /v1 routes,
// recording the request's metrics, and answers other methods on its path
// with a JSON 405.
func (s *Server) route(pattern string, fn func(http.ResponseWriter, *http.Request) error) {
	s.handle(pattern, fn, false)
}

// routeWork is route for a work route, which tenant-scoped tokens may use
// too (scopeOf tells the handler the tenant).
func (s *Server) routeWork(pattern string, fn func(http.ResponseWriter, *http.Request) error) {
	s.handle(pattern, fn, true)
}

func (s *Server) handle(pattern string, fn func(http.ResponseWriter, *http.Request) error, scoped bool) {
	s.routes = append(s.routes, pattern)
	method, path, _ := strings.Cut(pattern, " ")
	auth := strings.HasPrefix(path, "/v1/")
	rm := s.metrics.route(pattern)
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		var err error
		if auth {
			var tenant string
			tenant, err = s.tokens.authorize(r, s.logins)
			if err == nil {
				err = checkSessionWrite(r)
			}
			switch {
			case err == nil && tenant != "" && !scoped:
				err = errScopedToken
			case err == nil && tenant != "":
				r = r.WithContext(context.WithValue(r.Context(), scopeKey{}, tenant))
			}
		}
		if err == nil {
			err = fn(w, r)
		}
		status := http.StatusOK
		if err != nil {
			status = writeError(w, r, s.log, err)
		}
		rm.observe(status, time.Since(start))
	})
	s.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		if method != http.MethodGet {
			w.Header().Set("Allow", method)
			writeError(w, r, s.log, &Error{Code: httperr.CodeMethodNotAllowed, Message: r.Method + " is not allowed on " + r.URL.Path + ": use " + method})
			return
		}
		writeError(w, r, s.log, &Error{Code: httperr.CodeMethodNotAllowed, Message: r.Method + " is not allowed on " + r.URL.Path + ": the query API is read-only (GET)"})
	})
}

func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) error {
	s.metrics.Handler().ServeHTTP(w, r)
	return nil
}
