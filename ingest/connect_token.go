package ingest

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/transferd/transferd/api/httperr"
	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/ingest/atlassian"
)

// ErrUnknownTenant is wrapped by a SecretSource's error when no installation
// is registered for the client key it was asked about.
var ErrUnknownTenant = errors.New("ingest: unknown tenant")

// SecretSource gives the shared secret of a Connect installation. Its error
// wraps ErrUnknownTenant when clientKey is not installed; any other error is
// a failure of the source itself, which verifiers pass on as an internal
// error rather than as an AuthError.
type SecretSource interface {
	SharedSecret(ctx context.Context, clientKey string) ([]byte, error)
}

// DefaultLeeway is the clock skew allowed on exp and nbf when a config leaves
// Leeway zero: 30 s, as in Atlassian's Java library.
const DefaultLeeway = 30 * time.Second

// MaxTokenLifetime is the longest validity a token may claim, exp minus
// iat (or minus the time of receipt when it has no iat). Atlassian's own
// tokens live 3 minutes (Connect) or less (Forge); a longer-lived token is
// a stolen or forged one's best chance.
const MaxTokenLifetime = 15 * time.Minute

// maxTokenBytes caps the Connect tokens read from a request.
const maxTokenBytes = 8 << 10

// ConnectConfig configures a ConnectVerifier. The zero value verifies
// requests for an app served at the root of its host.
type ConnectConfig struct {
	// BaseURL is the app's baseUrl from its Connect descriptor; its path is
	// removed from request paths before the qsh is computed.
	BaseURL string
	// Leeway is the clock skew allowed on exp and nbf; zero means
	// DefaultLeeway.
	Leeway time.Duration
	// Logger receives a debug record with the expected and received qsh
	// when they differ; nil logs nothing. Tokens are never logged.
	Logger *slog.Logger
}

// ConnectVerifier verifies the JWT of Connect server-to-server requests
// (the migration webhook): HS256 with the installation's shared secret,
// exp required, and a qsh that binds the token to the request. It is safe for
// concurrent use.
type ConnectVerifier struct {
	secrets  SecretSource
	basePath string
	parser   *jwt.Parser
	leeway   time.Duration
	log      *slog.Logger
}

// NewConnectVerifier returns a verifier that finds shared secrets in
// secrets. It fails when secrets is nil or cfg.BaseURL cannot be parsed.
func NewConnectVerifier(secrets SecretSource, cfg ConnectConfig) (*ConnectVerifier, error) {
	if secrets == nil {
		return nil, errors.New("ingest: connect verifier needs a SecretSource")
	}
	basePath, err := baseURLPath(cfg.BaseURL)
	if err != nil {
		return nil, err
	}
	return &ConnectVerifier{
		secrets:  secrets,
		basePath: basePath,
		parser:   newParser(jwt.SigningMethodHS256.Alg(), cfg.Leeway),
		leeway:   orDefault(cfg.Leeway, DefaultLeeway),
		log:      loggerOrDiscard(cfg.Logger),
	}, nil
}

// Verify authenticates r and returns the installation's client key (the
// token's iss). The token is read from "Authorization: JWT <token>" or the
// jwt query parameter. Every authentication failure is an *AuthError; any
// other error comes from the SecretSource.
func (v *ConnectVerifier) Verify(r *http.Request) (clientKey string, err error) {
	raw, err := connectToken(r)
	if err != nil {
		return "", err
	}
	ctx := r.Context()
	var claims atlassian.ConnectClaims
	var sourceErr error
	// jwt calls keyFunc once the token is decoded and its alg accepted, but
	// before anything is verified: the secret is found by the unverified
	// iss, then signature and claims are verified with it, in one parse.
	keyFunc := func(*jwt.Token) (any, error) {
		secret, err := lookupSecret(ctx, v.secrets, claims.Issuer)
		if err != nil {
			var ae *AuthError
			if !errors.As(err, &ae) {
				sourceErr = err
			}
			return nil, err
		}
		return secret, nil
	}
	tok, err := v.parser.ParseWithClaims(raw, &claims, keyFunc)
	if sourceErr != nil {
		return "", fmt.Errorf("ingest: look up the shared secret of a Connect tenant: %w", sourceErr)
	}
	if err != nil {
		return "", tokenError(err, tok, jwt.SigningMethodHS256.Alg(), &claims.RegisteredClaims)
	}
	if err := checkTimes(raw, &claims.RegisteredClaims, v.leeway); err != nil {
		return "", err
	}
	if err := checkQSH(ctx, v.log, r, v.basePath, claims.Issuer, claims.QSH); err != nil {
		return "", err
	}
	return claims.Issuer, nil
}

// lookupSecret returns the shared secret of the installation clientKey, an
// *AuthError when there is none, or the source's own error.
func lookupSecret(ctx context.Context, secrets SecretSource, clientKey string) ([]byte, error) {
	if clientKey == "" {
		return nil, authErr(httperr.CodeInvalidIssuer, "token has no iss claim; it must be the installation's clientKey", nil)
	}
	if secrets == nil {
		return nil, authErr(httperr.CodeUnknownTenant, "no Connect installation is registered for the token's issuer", nil)
	}
	secret, err := secrets.SharedSecret(ctx, clientKey)
	switch {
	case errors.Is(err, ErrUnknownTenant):
		return nil, authErr(httperr.CodeUnknownTenant, "no Connect installation is registered for the token's issuer", err)
	case err != nil:
		return nil, err
	case len(secret) == 0:
		// An empty HMAC key would accept tokens anyone can sign.
		return nil, authErr(httperr.CodeUnknownTenant, "the Connect installation of the token's issuer has no shared secret", nil)
	}
	return secret, nil
}

// checkQSH compares the token's qsh claim with the hash of r, in constant
// time, and logs both at debug level when they differ.
func checkQSH(ctx context.Context, log *slog.Logger, r *http.Request, basePath, issuer, got string) error {
	switch got {
	case "":
		return authErr(httperr.CodeInvalidQSH, "token has no qsh claim; it must be the query string hash of this request", nil)
	case atlassian.ContextQSH:
		return authErr(httperr.CodeContextQSH, `token has qsh "context-qsh", which is refused on server-to-server requests`, nil)
	}
	want := atlassian.RequestQSH(r, basePath)
	if subtle.ConstantTimeCompare([]byte(want), []byte(got)) == 1 {
		return nil
	}
	if log.Enabled(ctx, slog.LevelDebug) {
		log.LogAttrs(ctx, slog.LevelDebug, "qsh mismatch",
			slog.String("iss", issuer),
			slog.String("expected_qsh", want),
			slog.String("received_qsh", got),
			slog.String("canonical_request", atlassian.CanonicalRequest(r.Method, r.URL.EscapedPath(), r.URL.RawQuery, basePath)))
	}
	return authErr(httperr.CodeInvalidQSH, "token qsh does not match this request (method, path relative to the app's baseUrl, and query)", nil)
}

// connectToken returns the token of r from "Authorization: JWT <token>" or,
// failing that, the jwt query parameter.
func connectToken(r *http.Request) (string, error) {
	header, hasHeader := authorizationToken(r, "JWT")
	query, hasQuery := atlassian.QueryToken(r.URL.RawQuery)
	var raw string
	switch {
	case hasHeader && hasQuery && header != query:
		return "", authErr(httperr.CodeMalformedToken, "request carries two different tokens, in the Authorization header and in the jwt query parameter", nil)
	case hasHeader:
		raw = header
	case hasQuery:
		raw = query
	}
	return checkTokenSize(raw, maxTokenBytes, `request has no token: send it as "Authorization: JWT <token>" or in the jwt query parameter`)
}

// authorizationToken returns the credentials of r's Authorization header when
// its scheme is scheme (compared without regard to case).
func authorizationToken(r *http.Request, scheme string) (string, bool) {
	h := r.Header.Get("Authorization")
	if len(h) <= len(scheme) || h[len(scheme)] != ' ' || !strings.EqualFold(h[:len(scheme)], scheme) {
		return "", false
	}
	return strings.TrimSpace(h[len(scheme)+1:]), true
}

// checkTokenSize returns raw, or an *AuthError when it is empty (with the
// message missing) or longer than limit.
func checkTokenSize(raw string, limit int, missing string) (string, error) {
	switch {
	case raw == "":
		return "", authErr(httperr.CodeMissingToken, missing, nil)
	case len(raw) > limit:
		return "", authErr(httperr.CodeMalformedToken, fmt.Sprintf("token is longer than %d bytes", limit), nil)
	}
	return raw, nil
}

// newParser returns a parser pinned to the algorithm alg that requires exp,
// refuses an iat in the future, and allows leeway (DefaultLeeway when zero)
// on exp, nbf and iat.
func newParser(alg string, leeway time.Duration, opts ...jwt.ParserOption) *jwt.Parser {
	if leeway <= 0 {
		leeway = DefaultLeeway
	}
	return jwt.NewParser(append([]jwt.ParserOption{
		jwt.WithValidMethods([]string{alg}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(leeway),
	}, opts...)...)
}

// checkTimes adds to the parser's checks of a verified token raw: its exp,
// iat and nbf must be JSON numbers (jwt also takes numeric strings), and it
// may not be valid for longer than MaxTokenLifetime, counted from iat, or
// from now when it has none.
func checkTimes(raw string, c *jwt.RegisteredClaims, leeway time.Duration) error {
	if name := stringTime(raw); name != "" {
		return authErr(httperr.CodeMalformedToken, "token claim "+name+" must be a number of seconds, not a string", nil)
	}
	from := time.Now()
	if c.IssuedAt != nil {
		from = c.IssuedAt.Time
	}
	if c.ExpiresAt != nil && c.ExpiresAt.Sub(from) > MaxTokenLifetime+leeway {
		return authErr(httperr.CodeTokenExpired, fmt.Sprintf("token is valid for longer than %v (exp − iat); sign tokens that expire sooner", MaxTokenLifetime), nil)
	}
	return nil
}

// stringTime returns the name of the first of exp, iat and nbf that the
// payload of the verified token raw holds as a string, or "". It reads the
// claims as encoding/json decodes them into the claims (names matched
// without regard to case, the last of duplicates winning), with the
// scanner Parse uses instead of a second decode.
func stringTime(raw string) string {
	_, payload, _ := strings.Cut(raw, ".")
	payload, _, _ = strings.Cut(payload, ".")
	b, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return ""
	}
	names := [3]string{"exp", "iat", "nbf"}
	var isString [3]bool
	engine.ScanObject(b, func(key, val []byte) bool {
		name, _, ok := engine.CutString(key)
		for i, n := range names {
			if ok && strings.EqualFold(name, n) {
				isString[i] = len(val) > 0 && val[0] == '"'
			}
		}
		return true
	})
	for i, n := range names {
		if isString[i] {
			return n
		}
	}
	return ""
}

// tokenError maps an error of jwt's parser to an *AuthError. tok is the
// token the parser returned (possibly nil), alg the algorithm the parser was
// pinned to, and claims the registered claims it decoded (unverified).
func tokenError(err error, tok *jwt.Token, alg string, claims *jwt.RegisteredClaims) error {
	var ae *AuthError
	if errors.As(err, &ae) {
		return ae
	}
	if tok != nil && tok.Header != nil {
		if got, _ := tok.Header["alg"].(string); got != alg {
			return authErr(httperr.CodeInvalidAlgorithm, "token must be signed with "+alg, err)
		}
	}
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return authErr(httperr.CodeMalformedToken, "token is not a well-formed JWT", err)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return authErr(httperr.CodeInvalidSignature, "token signature does not verify", err)
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return authErr(httperr.CodeInvalidSignature, "token signature cannot be verified: its signing key is unknown or unavailable", err)
	case errors.Is(err, jwt.ErrTokenExpired):
		return authErr(httperr.CodeTokenExpired, "token has expired", err)
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return authErr(httperr.CodeTokenExpired, "token is not valid yet", err)
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing) && claims.ExpiresAt == nil:
		return authErr(httperr.CodeTokenExpired, "token has no exp claim; exp is required", err)
	case errors.Is(err, jwt.ErrTokenInvalidAudience),
		errors.Is(err, jwt.ErrTokenRequiredClaimMissing) && len(claims.Audience) == 0:
		return authErr(httperr.CodeInvalidAudience, "token audience is not this app", err)
	case errors.Is(err, jwt.ErrTokenInvalidIssuer),
		errors.Is(err, jwt.ErrTokenRequiredClaimMissing) && claims.Issuer == "":
		return authErr(httperr.CodeInvalidIssuer, "token issuer is not the expected one", err)
	}
	return authErr(httperr.CodeMalformedToken, "token claims are not valid", err)
}

// baseURLPath returns the percent-encoded path of the app's baseUrl.
func baseURLPath(baseURL string) (string, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return "", fmt.Errorf("ingest: app base URL: %w", err)
	}
	return u.EscapedPath(), nil
}

func loggerOrDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
