package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"

	"github.com/transferd/transferd/api/httperr"
)

// tokens are the configured API tokens, kept as SHA-256 digests so that a
// comparison takes the same time whatever the presented token's length.
// Tenant-scoped tokens are kept apart (scoped, tenants): they never sign
// in to the dashboard.
type tokens struct {
	sums    [][sha256.Size]byte
	scoped  [][sha256.Size]byte
	tenants []string
}

func newTokens(list []string, scoped []ScopedToken) tokens {
	var t tokens
	for _, s := range list {
		if s = strings.TrimSpace(s); s != "" {
			t.sums = append(t.sums, sha256.Sum256([]byte(s)))
		}
	}
	for _, st := range scoped {
		if s := strings.TrimSpace(st.Token); s != "" && st.Tenant != "" {
			t.scoped = append(t.scoped, sha256.Sum256([]byte(s)))
			t.tenants = append(t.tenants, st.Tenant)
		}
	}
	return t
}

// scope returns the tenant of presented when it is a tenant-scoped token,
// comparing against every one in constant time.
func (t tokens) scope(presented string) (string, bool) {
	sum := sha256.Sum256([]byte(presented))
	at := -1
	for i := range t.scoped {
		if subtle.ConstantTimeCompare(sum[:], t.scoped[i][:]) == 1 {
			at = i
		}
	}
	if at < 0 {
		return "", false
	}
	return t.tenants[at], true
}

// valid reports whether presented is one of the tokens. It compares the
// digest against every token, without an early exit, in constant time.
func (t tokens) valid(presented string) bool {
	sum := sha256.Sum256([]byte(presented))
	ok := 0
	for i := range t.sums {
		ok |= subtle.ConstantTimeCompare(sum[:], t.sums[i][:])
	}
	return ok == 1
}

// These errors answer 401; the difference shows only in WWW-Authenticate.
var (
	errNoToken  = &Error{Code: httperr.CodeUnauthorized, Message: "an API token is required: Authorization: Bearer <token>"}
	errBadToken = &Error{Code: httperr.CodeUnauthorized, Message: "the API token is not valid"}
)

// wwwAuthenticate is the challenge of a 401 (RFC 6750 §3).
func wwwAuthenticate(err error) string {
	if errors.Is(err, errBadToken) {
		return `Bearer realm="transferd", error="invalid_token"`
	}
	return `Bearer realm="transferd"`
}

// CookieName is the cookie the dashboard's sign-in (POST /login) sets: a
// server-side session id (see sessions), never the token, HttpOnly and
// SameSite=Strict. /v1 routes accept it in place of the Authorization
// header, which EventSource cannot send.
const CookieName = "transferd_token"

// authorize checks the request's bearer token or, when there is no
// Authorization header, its sign-in cookie against ss.
// A tenant-scoped token also passes; its tenant is returned (else "").
func (t tokens) authorize(r *http.Request, ss *sessions) (string, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", authorizeCookie(r, ss)
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", errNoToken
	}
	tok = strings.TrimSpace(tok)
	if t.valid(tok) {
		return "", nil
	}
	if tenant, ok := t.scope(tok); ok {
		return tenant, nil
	}
	return "", errBadToken
}

// authorizeCookie checks the sign-in cookie: it must name an open
// session.
func authorizeCookie(r *http.Request, ss *sessions) error {
	c, err := r.Cookie(CookieName)
	if err != nil || c.Value == "" {
		return errNoToken
	}
	if ss == nil || !ss.valid(c.Value) {
		return errBadToken
	}
	return nil
}
