package ingest

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/transferd/transferd/api/httperr"
	"github.com/transferd/transferd/ingest/atlassian"
)

// DefaultInstallKeysURL is Atlassian's server of the public keys that sign
// Connect install callbacks (signed-install): the PEM key of kid is at
// DefaultInstallKeysURL + "/" + kid.
const DefaultInstallKeysURL = "https://connect-install-keys.atlassian.com"

// Limits of the install key fetches.
const (
	installKeyTimeout   = 3 * time.Second
	installKeyMaxBytes  = 16 << 10
	installKeyCacheSize = 64
	installKeyMinBits   = 2048
	maxKIDBytes         = 256
)

// InstallAuth says how a lifecycle request was authenticated.
type InstallAuth int

// The ways a lifecycle request can be signed.
const (
	// InstallSignedByAtlassian is an RS256 token whose key the install keys
	// server publishes (signed-install), the form of a first install.
	InstallSignedByAtlassian InstallAuth = iota + 1
	// InstallSignedBySharedSecret is an HS256 token keyed with the shared
	// secret the tenant already has: a re-install or an uninstall.
	InstallSignedBySharedSecret
)

// String returns "atlassian" or "shared-secret".
func (a InstallAuth) String() string {
	switch a {
	case InstallSignedByAtlassian:
		return "atlassian"
	case InstallSignedBySharedSecret:
		return "shared-secret"
	}
	return fmt.Sprintf("InstallAuth(%d)", int(a))
}

// InstallConfig configures an InstallVerifier.
type InstallConfig struct {
	// BaseURL is the app's baseUrl from its Connect descriptor (required):
	// aud[0] of a signed install must equal it, a trailing slash aside, and
	// its path is removed from request paths before the qsh is computed.
	BaseURL string
	// KeysURL is the install keys server; empty means DefaultInstallKeysURL.
	KeysURL string
	// Client fetches the keys; nil means a client with a 3 s timeout. Every
	// fetch is bounded by 3 s whatever the client.
	Client *http.Client
	// Leeway is the clock skew allowed on exp and nbf; zero means
	// DefaultLeeway.
	Leeway time.Duration
	// Logger receives a debug record on a qsh mismatch; nil logs nothing.
	Logger *slog.Logger
}

// InstallVerifier verifies the JWT of the Connect lifecycle callbacks
// (installed, uninstalled). It is safe for concurrent use.
type InstallVerifier struct {
	secrets  SecretSource
	baseURL  string // without a trailing slash
	basePath string
	keysURL  string // without a trailing slash
	client   *http.Client
	peek     *jwt.Parser
	rs256    *jwt.Parser
	hs256    *jwt.Parser
	leeway   time.Duration
	log      *slog.Logger
	keys     keyCache
}

// NewInstallVerifier returns a verifier for lifecycle requests. secrets
// gives the shared secrets of installed tenants, for re-installs and
// uninstalls signed with them; nil refuses those as unknown tenants.
func NewInstallVerifier(secrets SecretSource, cfg InstallConfig) (*InstallVerifier, error) {
	if cfg.BaseURL == "" {
		return nil, errors.New("ingest: install verifier needs the app's base URL")
	}
	basePath, err := baseURLPath(cfg.BaseURL)
	if err != nil {
		return nil, err
	}
	keysURL := cfg.KeysURL
	if keysURL == "" {
		keysURL = DefaultInstallKeysURL
	}
	if u, err := url.Parse(keysURL); err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("ingest: install keys URL %q is not an absolute URL", keysURL)
	}
	client := cfg.Client
	if client == nil {
		client = &http.Client{Timeout: installKeyTimeout}
	}
	return &InstallVerifier{
		secrets:  secrets,
		baseURL:  strings.TrimSuffix(cfg.BaseURL, "/"),
		basePath: basePath,
		keysURL:  strings.TrimSuffix(keysURL, "/"),
		client:   client,
		peek:     jwt.NewParser(),
		rs256:    newParser(jwt.SigningMethodRS256.Alg(), cfg.Leeway),
		hs256:    newParser(jwt.SigningMethodHS256.Alg(), cfg.Leeway),
		leeway:   orDefault(cfg.Leeway, DefaultLeeway),
		log:      loggerOrDiscard(cfg.Logger),
		keys:     keyCache{max: installKeyCacheSize},
	}, nil
}

// Verify authenticates the lifecycle request r whose JSON body names
// clientKey, and says how it was signed. The token's alg header chooses the
// path, each pinned to its one algorithm:
//
//   - RS256 (signed install): the header's kid names the public key on the
//     install keys server; iss must be clientKey, aud[0] the app's baseUrl.
//   - HS256 (re-install, uninstall): keyed with the shared secret the tenant
//     clientKey already has; iss must be clientKey.
//
// Both require exp and the qsh of r. Every authentication failure is an
// *AuthError; any other error comes from the SecretSource. Unsigned requests
// are refused (missing_token).
func (v *InstallVerifier) Verify(r *http.Request, clientKey string) (InstallAuth, error) {
	raw, err := connectToken(r)
	if err != nil {
		return 0, err
	}
	tok, _, err := v.peek.ParseUnverified(raw, &atlassian.ConnectClaims{})
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return 0, authErr(httperr.CodeMalformedToken, "token is not a well-formed JWT", err)
	case err == nil && tok.Method.Alg() == jwt.SigningMethodRS256.Alg():
		return InstallSignedByAtlassian, v.verifySignedInstall(r, raw, tok, clientKey)
	case err == nil && tok.Method.Alg() == jwt.SigningMethodHS256.Alg():
		return InstallSignedBySharedSecret, v.verifySharedSecret(r, raw, clientKey)
	}
	// An alg jwt does not know (ErrTokenUnverifiable), or one it knows but
	// neither path accepts.
	return 0, authErr(httperr.CodeInvalidAlgorithm, "lifecycle token must be signed with RS256 (signed install) or HS256 (shared secret)", err)
}

func (v *InstallVerifier) verifySignedInstall(r *http.Request, raw string, peeked *jwt.Token, clientKey string) error {
	kid, err := installKID(peeked)
	if err != nil {
		return err
	}
	ctx := r.Context()
	var claims atlassian.ConnectClaims
	tok, err := v.rs256.ParseWithClaims(raw, &claims, func(*jwt.Token) (any, error) {
		return v.publicKey(ctx, kid)
	})
	if err != nil {
		return tokenError(err, tok, jwt.SigningMethodRS256.Alg(), &claims.RegisteredClaims)
	}
	if err := checkTimes(raw, &claims.RegisteredClaims, v.leeway); err != nil {
		return err
	}
	if err := checkInstallIssuer(claims.Issuer, clientKey); err != nil {
		return err
	}
	if len(claims.Audience) == 0 || strings.TrimSuffix(claims.Audience[0], "/") != v.baseURL {
		return authErr(httperr.CodeInvalidAudience, "signed install token's first audience is not this app's baseUrl", nil)
	}
	return checkQSH(ctx, v.log, r, v.basePath, claims.Issuer, claims.QSH)
}

func (v *InstallVerifier) verifySharedSecret(r *http.Request, raw, clientKey string) error {
	ctx := r.Context()
	var claims atlassian.ConnectClaims
	var sourceErr error
	tok, err := v.hs256.ParseWithClaims(raw, &claims, func(*jwt.Token) (any, error) {
		if err := checkInstallIssuer(claims.Issuer, clientKey); err != nil {
			return nil, err
		}
		secret, err := lookupSecret(ctx, v.secrets, clientKey)
		var ae *AuthError
		if err != nil && !errors.As(err, &ae) {
			sourceErr = err
		}
		return secret, err
	})
	if sourceErr != nil {
		return fmt.Errorf("ingest: look up the shared secret of a Connect tenant: %w", sourceErr)
	}
	if err != nil {
		return tokenError(err, tok, jwt.SigningMethodHS256.Alg(), &claims.RegisteredClaims)
	}
	if err := checkTimes(raw, &claims.RegisteredClaims, v.leeway); err != nil {
		return err
	}
	return checkQSH(ctx, v.log, r, v.basePath, claims.Issuer, claims.QSH)
}

func checkInstallIssuer(iss, clientKey string) error {
	switch {
	case iss == "":
		return authErr(httperr.CodeInvalidIssuer, "lifecycle token has no iss claim; it must be the body's clientKey", nil)
	case clientKey == "" || iss != clientKey:
		return authErr(httperr.CodeInvalidIssuer, "lifecycle token issuer is not the body's clientKey", nil)
	}
	return nil
}

// installKID returns the kid header of a signed install token, refusing any
// that could step outside the keys server's directory.
func installKID(tok *jwt.Token) (string, error) {
	kid, _ := tok.Header["kid"].(string)
	switch {
	case kid == "":
		return "", authErr(httperr.CodeMalformedToken, "signed install token has no kid header", nil)
	case len(kid) > maxKIDBytes,
		strings.Contains(kid, ".."),
		strings.ContainsAny(kid, `/\?#%`),
		strings.IndexFunc(kid, func(r rune) bool { return r <= ' ' || r >= 0x7F }) >= 0:
		return "", authErr(httperr.CodeMalformedToken, "signed install token has an invalid kid header", nil)
	}
	return kid, nil
}

// publicKey returns the install key kid, from the cache or the keys server.
func (v *InstallVerifier) publicKey(ctx context.Context, kid string) (*rsa.PublicKey, error) {
	if key, ok := v.keys.get(kid); ok {
		return key, nil
	}
	key, err := v.fetchKey(ctx, kid)
	if err != nil {
		return nil, err
	}
	v.keys.put(kid, key)
	return key, nil
}

func (v *InstallVerifier) fetchKey(ctx context.Context, kid string) (*rsa.PublicKey, error) {
	ctx, cancel := context.WithTimeout(ctx, installKeyTimeout)
	defer cancel()
	keyURL := v.keysURL + "/" + url.PathEscape(kid)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, keyURL, nil)
	if err != nil {
		return nil, authErr(httperr.CodeInvalidSignature, "the install signing key could not be fetched", err)
	}
	resp, err := v.client.Do(req)
	if err != nil {
		return nil, authErr(httperr.CodeInvalidSignature, "the install signing key could not be fetched", err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, authErr(httperr.CodeInvalidSignature, "signed install token names a key the install keys server does not know", fmt.Errorf("GET %s: %s", keyURL, resp.Status))
	case resp.StatusCode != http.StatusOK:
		return nil, authErr(httperr.CodeInvalidSignature, "the install signing key could not be fetched", fmt.Errorf("GET %s: %s", keyURL, resp.Status))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, installKeyMaxBytes+1))
	if err == nil && len(body) > installKeyMaxBytes {
		err = fmt.Errorf("GET %s: key longer than %d bytes", keyURL, installKeyMaxBytes)
	}
	if err != nil {
		return nil, authErr(httperr.CodeInvalidSignature, "the install signing key could not be fetched", err)
	}
	key, err := jwt.ParseRSAPublicKeyFromPEM(body)
	if err == nil && key.N.BitLen() < installKeyMinBits {
		err = fmt.Errorf("RSA key of %d bits, fewer than %d", key.N.BitLen(), installKeyMinBits)
	}
	if err != nil {
		return nil, authErr(httperr.CodeInvalidSignature, "the install keys server sent an unusable key", fmt.Errorf("GET %s: %w", keyURL, err))
	}
	return key, nil
}

// keyCache holds at most max install keys by kid, forgetting the oldest
// first. Keys are never revoked by the keys server's protocol, so entries do
// not expire.
type keyCache struct {
	mu    sync.Mutex
	max   int
	keys  map[string]*rsa.PublicKey
	order []string
}

func (c *keyCache) get(kid string) (*rsa.PublicKey, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key, ok := c.keys[kid]
	return key, ok
}

func (c *keyCache) put(kid string, key *rsa.PublicKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.keys == nil {
		c.keys = make(map[string]*rsa.PublicKey, c.max)
	}
	if _, ok := c.keys[kid]; ok {
		return
	}
	if len(c.order) >= c.max {
		delete(c.keys, c.order[0])
		c.order = c.order[1:]
	}
	c.keys[kid] = key
	c.order = append(c.order, kid)
}
