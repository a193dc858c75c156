package ingest

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/transferd/transferd/api/httperr"
	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/engine/journal"
)

// Journal is what ingest needs from the event log: durable appends, and
// appends that make the first writer of a transfer its owner.
type Journal interface {
	Append(ctx context.Context, e *engine.Event) (journal.Ack, error)
	AppendOwned(ctx context.Context, e *engine.Event) (ack journal.Ack, owner string, err error)
}

// Config configures the ingest routes. Zero values are the defaults.
type Config struct {
	// BaseURL is the app's base URL (the descriptor's baseUrl); its path is
	// stripped from request paths when computing qsh, and signed installs
	// must name it as their audience.
	BaseURL string
	// ConnectPath is the Connect migration webhook path; default
	// /connect/migration-events.
	ConnectPath string
	// AppARI is the Forge app's ARI, the pinned audience of FITs. Empty
	// disables the Forge route (401 for every request).
	AppARI string
	// JWKSURL serves the Forge Invocation Token keys; default Atlassian's.
	JWKSURL string
	// InstallKeysURL serves signed-install public keys by kid; default
	// Atlassian's.
	InstallKeysURL string
	// AllowUnsignedInstall accepts a first install without a JWT. Off by
	// default: anyone could register a tenant.
	AllowUnsignedInstall bool
	// MaxBody caps request bodies; default 1 MiB.
	MaxBody int64
	// AppendTimeout bounds the wait for the journal so that every reply
	// leaves well inside the platform's 5 s; default 3 s.
	AppendTimeout time.Duration
	// Logger for refusals (warn, one line each, rate-limited) and failures
	// (error); nil discards.
	Logger *slog.Logger
	// Observe, when set, is told the outcome of every ingest request.
	Observe func(o Outcome)
	// Now is the clock for receive times; default time.Now.
	Now func() time.Time
	// ForgeCredentials, when set, also keeps each Forge installation's
	// newest credential (see ForgeCredential) in this bucket, sealed with
	// the secrets keys of the tenant registry given to New, so that a
	// restarted server and the other instances on the journal have it.
	// With a registry without keys, credentials stay in memory (logged at
	// New): never stored in clear.
	ForgeCredentials *journal.Credentials
}

// Outcome is one ingest request's result, for metrics.
type Outcome struct {
	Route     string // "connect", "forge", "installed", "uninstalled"
	Source    engine.Source
	Kind      engine.Kind // empty when the request failed before parsing
	Status    int
	Code      string // error code; empty on success
	Duplicate bool
	Duration  time.Duration
	// Issuer is the verified tenant (Connect clientKey or Forge
	// installation id), once the token is verified; TransferID is the
	// event's transfer, once the body parses. Either may be empty.
	Issuer     string
	TransferID string
}

// DefaultConnectPath is the default Connect migration webhook path.
const DefaultConnectPath = "/connect/migration-events"

func (c Config) withDefaults() Config {
	if c.ConnectPath == "" {
		c.ConnectPath = DefaultConnectPath
	}
	if c.MaxBody <= 0 {
		c.MaxBody = 1 << 20
	}
	if c.AppendTimeout <= 0 {
		c.AppendTimeout = 3 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Handler serves the ingest routes.
type Handler struct {
	cfg     Config
	journal Journal
	tenants *Registry
	connect *ConnectVerifier
	install *InstallVerifier
	forge   *ForgeVerifier
	owners  *ownerCache
	// forgeCreds keeps each Forge installation's newest credential for
	// calls back to the platform.
	forgeCreds *forgeCredentials
	mux        *http.ServeMux
	refusal    *refusalLog
}

// Accepted is the reply to an acknowledged event.
type Accepted struct {
	Accepted  bool   `json:"accepted"`
	Seq       uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate"`
}

// appendJSON appends what httperr.WriteJSON writes for a, without
// reflection: every acknowledged event is answered with one.
func (a Accepted) appendJSON(b []byte) []byte {
	b = append(b, `{"accepted":`...)
	b = strconv.AppendBool(b, a.Accepted)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, a.Seq, 10)
	b = append(b, `,"duplicate":`...)
	b = strconv.AppendBool(b, a.Duplicate)
	return append(b, "}\n"...)
}

// ServeHTTP routes to the Connect, lifecycle and Forge handlers.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// Routes lists the patterns Handler serves, for a parent mux; a parent
// should route each pattern's path, whatever the method, to Handler, which
// answers other methods with a JSON 405.
func (h *Handler) Routes() []string {
	return []string{"POST " + h.cfg.ConnectPath, "POST /connect/installed", "POST /connect/uninstalled", "POST /forge/migration-events"}
}

// observe runs a request through fn, then writes its reply and reports it.
func (h *Handler) observe(route string, src engine.Source, fn stage) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		o := Outcome{Route: route, Source: src}
		reply, err := fn(w, r, &o)
		if err != nil {
			var msg string
			o.Status, o.Code, msg = writeErrorMsg(w, h.cfg.Logger, err)
			if o.Status < 500 {
				h.refusal.refused(r, &o, msg)
			}
		} else if a, ok := reply.(Accepted); ok {
			o.Status = http.StatusOK
			httperr.WriteBody(w, http.StatusOK, a.appendJSON(make([]byte, 0, 64)))
		} else {
			o.Status = http.StatusOK
			httperr.WriteJSON(w, http.StatusOK, reply)
		}
		if h.cfg.Observe != nil {
			o.Duration = time.Since(start)
			h.cfg.Observe(o)
		}
	}
}

// readJSON checks the media type and reads the body within the limit.
func (h *Handler) readJSON(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || (mt != "application/json" && !(len(mt) > 5 && mt[len(mt)-5:] == "+json")) {
		return nil, fail(httperr.CodeUnsupportedMediaType, "Content-Type must be application/json", err)
	}
	if r.ContentLength > h.cfg.MaxBody {
		return nil, fail(httperr.CodePayloadTooLarge, "body exceeds "+strconv.FormatInt(h.cfg.MaxBody, 10)+" bytes", nil)
	}
	body, err := readBody(http.MaxBytesReader(w, r.Body, h.cfg.MaxBody), r.ContentLength)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, fail(httperr.CodePayloadTooLarge, "body exceeds "+strconv.FormatInt(h.cfg.MaxBody, 10)+" bytes", err)
		}
		return nil, fail(httperr.CodeInvalidPayload, "could not read the body", err)
	}
	return body, nil
}

// readBody reads all of body into one buffer of the announced size n (when
// known, at most MaxBody), instead of growing one from 512 bytes.
func readBody(body io.Reader, n int64) ([]byte, error) {
	if n <= 0 {
		return io.ReadAll(body)
	}
	buf := make([]byte, 0, n+1) // +1: the read that finds the end
	for {
		m, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
		if len(buf) == cap(buf) { // longer than announced: let MaxBytesReader judge
			rest, err := io.ReadAll(body)
			return append(buf, rest...), err
		}
	}
}

// MaxCreatedAtSkew is how far after its receipt an event's
// migrationDetails.createdAt may lie: a plan is created before its events,
// so only clock skew can put it later.
const MaxCreatedAtSkew = 24 * time.Hour

// accept appends e if its transfer is new or already belongs to e's
// issuer: an event for a transfer owned by another tenant is refused and
// nothing is stored. The owner names the source with the issuer
// ("connect:<clientKey>", "forge:<installationId>"), so that a Forge
// installation id equal to a Connect client key is another tenant. The
// first event of a transfer makes its tenant the owner in the same write
// (journal.AppendOwned); later ones find the owner in a cache.
func (h *Handler) accept(ctx context.Context, e *engine.Event, issuer string, o *Outcome) (any, error) {
	e.Issuer = issuer
	e.ReceivedAt = h.cfg.Now().UTC()
	if !engine.ValidIssuer(issuer) {
		return nil, authErr(httperr.CodeInvalidIssuer, "token issuer is not 1 to 256 printable characters", nil)
	}
	if m := e.Migration; m != nil && m.CreatedAt.After(e.ReceivedAt.Add(MaxCreatedAtSkew)) {
		return nil, &engine.ValidationError{Field: "migrationDetails.createdAt", Reason: "more than 24h after the time of receipt"}
	}
	ctx, cancel := context.WithTimeout(ctx, h.cfg.AppendTimeout)
	defer cancel()
	want := journal.OwnerOf(e.Source, issuer)
	var (
		ack journal.Ack
		err error
	)
	owner, ok := h.owners.get(e.TransferID)
	switch {
	case !ok:
		if ack, owner, err = h.journal.AppendOwned(ctx, e); err != nil {
			return nil, err
		}
		h.owners.put(e.TransferID, owner)
	case owner == want:
		if ack, err = h.journal.Append(ctx, e); err != nil {
			return nil, err
		}
	}
	if owner != want {
		return nil, fail(httperr.CodeTenantMismatch, "transfer "+e.TransferID+" belongs to another tenant", nil)
	}
	o.Duplicate = ack.Duplicate
	return Accepted{Accepted: true, Seq: ack.Seq, Duplicate: ack.Duplicate}, nil
}

func (h *Handler) handleConnect(w http.ResponseWriter, r *http.Request, o *Outcome) (any, error) {
	issuer, err := h.connect.Verify(r)
	if err != nil {
		return nil, err
	}
	o.Issuer = issuer
	body, err := h.readJSON(w, r)
	if err != nil {
		return nil, err
	}
	e, err := engine.Parse(engine.SourceConnect, body)
	if err != nil {
		return nil, err
	}
	o.Kind, o.TransferID = e.Kind, e.TransferID
	if len(e.ClientKeys) > 0 && !contains(e.ClientKeys, issuer) {
		return nil, fail(httperr.CodeTenantMismatch, "migrationDetails names client keys other than the token's issuer", nil)
	}
	return h.accept(r.Context(), e, issuer, o)
}

func (h *Handler) handleForge(w http.ResponseWriter, r *http.Request, o *Outcome) (any, error) {
	inv, err := h.forge.Verify(r)
	if err != nil {
		return nil, err
	}
	o.Issuer = inv.InstallationID
	body, err := h.readJSON(w, r)
	if err != nil {
		return nil, err
	}
	e, err := engine.Parse(engine.SourceForge, body)
	if err != nil {
		return nil, err
	}
	o.Kind, o.TransferID = e.Kind, e.TransferID
	reply, err := h.accept(r.Context(), e, inv.InstallationID, o)
	if err == nil {
		h.forgeCreds.put(inv.InstallationID, ForgeCredential{
			APIBaseURL: inv.APIBaseURL, Token: r.Header.Get(ForgeSystemTokenHeader), ReceivedAt: e.ReceivedAt,
		})
	}
	return reply, err
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
