package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// DefaultForgeJWKSURL is where Forge publishes the keys of its invocation
// tokens.
const DefaultForgeJWKSURL = "https://forge.cdn.prod.atlassian-dev.net/.well-known/jwks.json"

// ForgeIssuer is the iss of every Forge Invocation Token.
const ForgeIssuer = "forge/invocation-token"

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
	// means DefaultForgeUnknownKIDRefreshInterval. A token that arrives when no fetch
	// is allowed is refused at once rather than kept waiting.
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

// forgeClaims are the claims of a Forge Invocation Token that transferd
// reads.
type forgeClaims struct {
	jwt.RegisteredClaims
	App struct {
		ID             string `json:"id"`
		AppVersion     string `json:"appVersion"`
		InstallationID string `json:"installationId"`
		APIBaseURL     string `json:"apiBaseUrl"`
		Environment    struct {
			Type string `json:"type"`
			ID   string `json:"id"`
		} `json:"environment"`
		Module struct {
			Key string `json:"key"`
		} `json:"module"`
	} `json:"app"`
	Context struct {
		CloudID string `json:"cloudId"`
	} `json:"context"`
}

// ForgeVerifier verifies Forge Invocation Tokens: RS256 with a key from the
// Forge key set, iss forge/invocation-token, aud pinned to the configured
// app, exp required. It is safe for concurrent use.
type ForgeVerifier struct {
	keys         keyfunc.Keyfunc
	parser       *jwt.Parser
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
	keys, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{jwksURL}, keyfunc.Override{
		Client:           cfg.Client,
		HTTPTimeout:      fetchTimeout,
		RateLimitWaitMax: fetchTimeout,
		RefreshInterval:  orDefault(cfg.RefreshInterval, DefaultForgeRefreshInterval),
		RefreshUnknownKID: rate.NewLimiter(
			rate.Every(orDefault(cfg.UnknownKIDRefreshInterval, DefaultForgeUnknownKIDRefreshInterval)), 1),
		RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
			return func(ctx context.Context, err error) {
				log.WarnContext(ctx, "forge key set fetch failed", "url", u, "err", err)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("ingest: forge key set: %w", err)
	}
	return &ForgeVerifier{
		keys: keys,
		parser: newParser(jwt.SigningMethodRS256.Alg(), cfg.Leeway,
			jwt.WithIssuer(ForgeIssuer), jwt.WithAudience(cfg.AppARI)),
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
	// The key lookup may fetch the key set for an unknown kid: bound it.
	ctx, cancel := context.WithTimeout(r.Context(), v.fetchTimeout)
	defer cancel()
	var claims forgeClaims
	tok, err := v.parser.ParseWithClaims(raw, &claims, v.keys.KeyfuncCtx(ctx))
	if err != nil {
		return ForgeInvocation{}, tokenError(err, tok, jwt.SigningMethodRS256.Alg(), &claims.RegisteredClaims)
	}
	if claims.App.InstallationID == "" {
		return ForgeInvocation{}, authErr(CodeMalformedToken, "Forge Invocation Token has no app.installationId claim", nil)
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

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
