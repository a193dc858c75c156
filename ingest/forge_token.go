package ingest

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"

	"github.com/transferd/transferd/api/httperr"
	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/ingest/atlassian"
)

// DefaultForgeJWKSURL is where Forge publishes the keys of its invocation
// tokens.
const DefaultForgeJWKSURL = "https://forge.cdn.prod.atlassian-dev.net/.well-known/jwks.json"

// Defaults of ForgeConfig.
const (
	DefaultForgeFetchTimeout              = 3 * time.Second
	DefaultForgeRefreshInterval           = time.Hour
	DefaultForgeUnknownKIDRefreshInterval = time.Minute
)

// maxForgeTokenBytes caps the invocation tokens read from a request; they
// carry license and context details, so more room than Connect tokens.
const maxForgeTokenBytes = 16 << 10

// ForgeConfig configures a ForgeVerifier.
type ForgeConfig struct {
	// AppARI is the app's id, ari:cloud:ecosystem::app/<uuid> (required).
	// Every token's aud must contain it.
	AppARI string
	// JWKSURL is where the signing keys are published; empty means
	// DefaultForgeJWKSURL.
	JWKSURL string
	// Client fetches the keys; nil means http.DefaultClient (every fetch is
	// bounded by FetchTimeout).
	Client *http.Client
	// FetchTimeout bounds each fetch of the key set, including the first
	// one in NewForgeVerifier; zero means DefaultForgeFetchTimeout.
	FetchTimeout time.Duration
	// RefreshInterval is how often the key set is fetched in the background;
	// zero means DefaultForgeRefreshInterval.
	RefreshInterval time.Duration
	// UnknownKIDRefreshInterval is the least time between two fetches caused by a
	// token whose kid is not in the key set (a key rotation, or junk); zero
	// means DefaultForgeUnknownKIDRefreshInterval. Tokens with an unknown kid
	// that arrive while such a fetch is under way wait for it (at most
	// FetchTimeout) and are then verified against the new set; one that
	// arrives when no fetch is under way and none is allowed is refused at
	// once.
	UnknownKIDRefreshInterval time.Duration
	// Leeway is the clock skew allowed on exp and nbf; zero means
	// DefaultLeeway.
	Leeway time.Duration
	// Logger receives a warning when fetching the key set fails; nil logs
	// nothing.
	Logger *slog.Logger
}

// ForgeInvocation is what a verified Forge Invocation Token says about the
// call.
type ForgeInvocation struct {
	// InstallationID is app.installationId, the installation that sent the
	// event (ari:cloud:ecosystem::installation/<uuid>): the issuer of Forge
	// events. Never empty.
	InstallationID string
	// AppID is app.id, which Forge sets to the app's ARI.
	AppID string
	// AppVersion is app.appVersion.
	AppVersion string
	// EnvironmentType and EnvironmentID are app.environment.type
	// (DEVELOPMENT, STAGING, PRODUCTION) and app.environment.id.
	EnvironmentType string
	EnvironmentID   string
	// ModuleKey is app.module.key, the manifest module that made the call.
	ModuleKey string
	// APIBaseURL is app.apiBaseUrl, where calls back to the product go.
	APIBaseURL string
	// CloudID is context.cloudId, when the token has one.
	CloudID string
	// ExpiresAt is the token's exp.
	ExpiresAt time.Time
}

// ForgeVerifier verifies Forge Invocation Tokens: RS256 with the key named
// by the kid header in the Forge key set, iss forge/invocation-token, aud
// and app.id pinned to the configured app, exp required and at most
// MaxTokenLifetime after iat. It is safe for concurrent use.
type ForgeVerifier struct {
	keys         keyfunc.Keyfunc
	refresh      *refresher
	parser       *jwt.Parser
	appARI       string
	leeway       time.Duration
	fetchTimeout time.Duration
}

// NewForgeVerifier returns a verifier whose key set is fetched from
// cfg.JWKSURL now and refreshed in the background until ctx is done, which
// is how the verifier is stopped. It waits at most cfg.FetchTimeout for the
// first fetch and does not fail when that fetch does: the first token then
// triggers another one.
func NewForgeVerifier(ctx context.Context, cfg ForgeConfig) (*ForgeVerifier, error) {
	if cfg.AppARI == "" {
		return nil, errors.New("ingest: forge verifier needs the app's ARI (the token audience)")
	}
	jwksURL := cfg.JWKSURL
	if jwksURL == "" {
		jwksURL = DefaultForgeJWKSURL
	}
	if u, err := url.Parse(jwksURL); err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("ingest: forge JWKS URL %q is not an absolute URL", jwksURL)
	}
	fetchTimeout := orDefault(cfg.FetchTimeout, DefaultForgeFetchTimeout)
	log := loggerOrDiscard(cfg.Logger)
	onErr := func(ctx context.Context, err error) {
		log.WarnContext(ctx, "forge key set fetch failed", "url", jwksURL, "err", err)
	}
	// One store of keys: the background refresh and the refreshes for an
	// unknown kid both replace its contents.
	store := jwkset.NewMemoryStorage()
	fetch := func(ctx context.Context, every time.Duration) error {
		_, err := jwkset.NewStorageFromHTTP(jwksURL, jwkset.HTTPClientStorageOptions{
			Client: cfg.Client, Ctx: ctx, HTTPTimeout: fetchTimeout, Storage: store,
			RefreshInterval: every, NoErrorReturnFirstHTTPReq: every > 0, RefreshErrorHandler: onErr,
		})
		return err
	}
	// The first fetch, bounded by fetchTimeout, and the background refresh.
	if err := fetch(ctx, orDefault(cfg.RefreshInterval, DefaultForgeRefreshInterval)); err != nil {
		return nil, fmt.Errorf("ingest: forge key set: %w", err)
	}
	keys, err := keyfunc.New(keyfunc.Options{Ctx: ctx, Storage: store})
	if err != nil {
		return nil, fmt.Errorf("ingest: forge key set: %w", err)
	}
	leeway := orDefault(cfg.Leeway, DefaultLeeway)
	return &ForgeVerifier{
		keys: keys,
		refresh: &refresher{
			ctx: ctx, every: orDefault(cfg.UnknownKIDRefreshInterval, DefaultForgeUnknownKIDRefreshInterval),
			timeout: fetchTimeout, now: time.Now,
			fetch: func(ctx context.Context) error {
				err := fetch(ctx, 0)
				if err != nil {
					onErr(ctx, err)
				}
				return err
			},
		},
		parser: newParser(jwt.SigningMethodRS256.Alg(), leeway,
			jwt.WithIssuer(atlassian.ForgeIssuer), jwt.WithAudience(cfg.AppARI)),
		appARI:       cfg.AppARI,
		leeway:       leeway,
		fetchTimeout: fetchTimeout,
	}, nil
}

// Verify authenticates r by the Forge Invocation Token in its
// "Authorization: Bearer" header. Every failure is an *AuthError; a token
// without app.installationId is malformed_token.
func (v *ForgeVerifier) Verify(r *http.Request) (ForgeInvocation, error) {
	raw, _ := authorizationToken(r, "Bearer")
	raw, err := checkTokenSize(raw, maxForgeTokenBytes, `request has no Forge Invocation Token: send it as "Authorization: Bearer <token>"`)
	if err != nil {
		return ForgeInvocation{}, err
	}
	// The key lookup may wait for a fetch of the key set: bound it.
	ctx, cancel := context.WithTimeout(r.Context(), v.fetchTimeout)
	defer cancel()
	var claims atlassian.ForgeClaims
	tok, err := v.parser.ParseWithClaims(raw, &claims, v.keyFunc(ctx))
	if err != nil {
		return ForgeInvocation{}, tokenError(err, tok, jwt.SigningMethodRS256.Alg(), &claims.RegisteredClaims)
	}
	if err := checkTimes(raw, &claims.RegisteredClaims, v.leeway); err != nil {
		return ForgeInvocation{}, err
	}
	switch {
	case claims.App.InstallationID == "":
		return ForgeInvocation{}, authErr(httperr.CodeMalformedToken, "Forge Invocation Token has no app.installationId claim", nil)
	case !engine.ValidIssuer(claims.App.InstallationID):
		return ForgeInvocation{}, authErr(httperr.CodeMalformedToken, "Forge Invocation Token's app.installationId is not 1 to 256 printable characters", nil)
	case subtle.ConstantTimeCompare([]byte(claims.App.ID), []byte(v.appARI)) != 1:
		return ForgeInvocation{}, authErr(httperr.CodeInvalidAudience, "Forge Invocation Token's app.id is not this app", nil)
	}
	return ForgeInvocation{
		InstallationID:  claims.App.InstallationID,
		AppID:           claims.App.ID,
		AppVersion:      claims.App.AppVersion,
		EnvironmentType: claims.App.Environment.Type,
		EnvironmentID:   claims.App.Environment.ID,
		ModuleKey:       claims.App.Module.Key,
		APIBaseURL:      claims.App.APIBaseURL,
		CloudID:         claims.Context.CloudID,
		ExpiresAt:       claims.ExpiresAt.Time,
	}, nil
}

// keyFunc returns the key named by the token's kid, which is required. An
// unknown kid waits for a refresh of the key set (see refresher) and is
// looked up again.
func (v *ForgeVerifier) keyFunc(ctx context.Context) jwt.Keyfunc {
	lookup := v.keys.KeyfuncCtx(ctx)
	return func(tok *jwt.Token) (any, error) {
		kid, _ := tok.Header["kid"].(string)
		switch {
		case kid == "":
			return nil, authErr(httperr.CodeMalformedToken, "Forge Invocation Token has no kid header", nil)
		case len(kid) > maxKIDBytes:
			return nil, authErr(httperr.CodeMalformedToken, "Forge Invocation Token has an invalid kid header", nil)
		}
		key, err := lookup(tok)
		if errors.Is(err, jwkset.ErrKeyNotFound) {
			if rerr := v.refresh.do(ctx); rerr != nil {
				return nil, fmt.Errorf("%w (key set not refreshed: %w)", err, rerr)
			}
			key, err = lookup(tok)
		}
		return key, err
	}
}

// errRefreshLimited: a token's kid is unknown, and the key set was fetched
// for an unknown kid less than the refresh interval ago.
var errRefreshLimited = errors.New("ingest: key set fetched for an unknown kid too recently")

// refresher fetches the key set for tokens with an unknown kid: at most one
// fetch every interval, whose result every token arriving while it is under
// way waits for, instead of each being refused or fetching again.
type refresher struct {
	ctx     context.Context // the verifier's: ends fetches when it stops
	every   time.Duration
	timeout time.Duration
	now     func() time.Time
	fetch   func(context.Context) error

	mu      sync.Mutex
	flight  *flight   // the fetch under way, nil when none
	started time.Time // when the last fetch started
	waiting int       // callers waiting on flight (for tests)
}

type flight struct {
	done chan struct{}
	err  error
}

// do joins the fetch under way or, when the interval allows, starts one,
// and waits for it until ctx ends; it returns errRefreshLimited at once
// when neither.
func (r *refresher) do(ctx context.Context) error {
	r.mu.Lock()
	f := r.flight
	if f == nil {
		if !r.started.IsZero() && r.now().Sub(r.started) < r.every {
			r.mu.Unlock()
			return errRefreshLimited
		}
		f = &flight{done: make(chan struct{})}
		r.flight, r.started = f, r.now()
		go func() {
			// The fetch is not the first caller's: it outlives that
			// caller's request, bounded by the fetch timeout.
			ctx, cancel := context.WithTimeout(r.ctx, r.timeout)
			f.err = r.fetch(ctx)
			cancel()
			r.mu.Lock()
			r.flight = nil
			r.mu.Unlock()
			close(f.done)
		}()
	}
	r.waiting++
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.waiting--
		r.mu.Unlock()
	}()
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
