// Package notificationtest runs a fake Atlassian cloud site for tests of
// Notification API clients: an httptest server on loopback that serves
// PUT and GET /rest/atlassian-connect/1/migration/webhook under the site's
// path, verifies every request's Connect JWT with the rules the ingest side
// applies to the platform's tokens (HS256 only, with the shared secret of
// the token's iss, exp required, the qsh of the request relative to the
// site's URL, never context-qsh), and keeps the endpoints in memory. It is
// stopped in tb.Cleanup. It depends only on the wire protocol
// (ingest/atlassian), not on the server's verifiers, so that a mistake
// shared by both sides does not go unnoticed.
package notificationtest

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/transferd/transferd/api/httperr"
	"github.com/transferd/transferd/ingest/atlassian"
)

// WebhookPath is the Notification API's path relative to a site's URL, as
// Atlassian documents it (spelled out here rather than taken from the
// client under test).
const WebhookPath = "/rest/atlassian-connect/1/migration/webhook"

// Options configure NewSite.
type Options struct {
	// Path is the site's path: "" for a Jira site at the host's root,
	// "/wiki" for a Confluence one.
	Path string
	// AppKey and Secret are the only issuer the site trusts and its shared
	// secret.
	AppKey string
	Secret []byte
}

// Request is what the site saw of one request.
type Request struct {
	Method string
	Path   string // escaped, as sent
	Status int    // the site's reply
	// Issuer, IssuedAt and ExpiresAt are the token's claims (read after
	// verification; zero when it failed).
	Issuer              string
	IssuedAt, ExpiresAt time.Time
	// Refusal is the verifier's or the handler's reason for a non-200.
	Refusal string
}

// Site is a running fake cloud site.
type Site struct {
	// URL is the site's URL, with its path: what an installed callback
	// sends as baseUrl.
	URL    string
	Server *httptest.Server

	appKey   string
	secret   []byte
	basePath string
	parser   *jwt.Parser

	mu        sync.Mutex
	endpoints []string
	requests  []Request
}

// NewSite starts a fake site.
func NewSite(tb testing.TB, opts Options) *Site {
	tb.Helper()
	s := &Site{endpoints: []string{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	tb.Cleanup(s.Server.Close)
	s.URL = s.Server.URL + opts.Path
	u, err := url.Parse(s.URL)
	if err != nil {
		tb.Fatalf("notificationtest: %v", err)
	}
	s.appKey, s.secret, s.basePath = opts.AppKey, opts.Secret, u.EscapedPath()
	s.parser = jwt.NewParser(jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(), jwt.WithIssuedAt(), jwt.WithLeeway(30*time.Second))
	return s
}

// verify checks r's Connect JWT and returns its claims, or the refusal as
// "code: message" with a code of the ingest side's vocabulary.
func (s *Site) verify(r *http.Request) (*atlassian.ConnectClaims, string) {
	raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "JWT ")
	if !ok {
		raw, ok = atlassian.QueryToken(r.URL.RawQuery)
	}
	if !ok || strings.TrimSpace(raw) == "" {
		return nil, httperr.CodeMissingToken + ": no Connect JWT"
	}
	var c atlassian.ConnectClaims
	_, err := s.parser.ParseWithClaims(strings.TrimSpace(raw), &c, func(*jwt.Token) (any, error) {
		if c.Issuer == "" || c.Issuer != s.appKey || len(s.secret) == 0 {
			return nil, errUnknownIssuer
		}
		return s.secret, nil
	})
	switch {
	case errors.Is(err, errUnknownIssuer):
		return nil, httperr.CodeUnknownTenant + ": no app is installed for the token's issuer"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		// Also a token not signed with HS256: the parser pins it.
		return nil, httperr.CodeInvalidSignature + ": token is not signed with HS256 and the app's shared secret"
	case errors.Is(err, jwt.ErrTokenExpired), errors.Is(err, jwt.ErrTokenNotValidYet),
		errors.Is(err, jwt.ErrTokenUsedBeforeIssued), errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return nil, httperr.CodeTokenExpired + ": token expired, not valid yet or without exp"
	case err != nil:
		return nil, httperr.CodeMalformedToken + ": " + err.Error()
	case c.QSH == atlassian.ContextQSH:
		return nil, httperr.CodeContextQSH + ": context-qsh is refused on server-to-server calls"
	case subtle.ConstantTimeCompare([]byte(c.QSH), []byte(atlassian.RequestQSH(r, s.basePath))) != 1:
		return nil, httperr.CodeInvalidQSH + ": token qsh does not match this request relative to the site's URL"
	}
	return &c, ""
}

// errUnknownIssuer: the token's iss is not the app key the site trusts.
var errUnknownIssuer = errors.New("unknown issuer")

// Endpoints returns the endpoints registered now.
func (s *Site) Endpoints() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string{}, s.endpoints...)
}

// SetEndpoints replaces the registered endpoints, as if registered earlier.
func (s *Site) SetEndpoints(endpoints ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endpoints = append([]string{}, endpoints...)
}

// Requests returns every request seen so far, in order.
func (s *Site) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// LastRequest returns the latest request; it fails the test when none
// arrived.
func (s *Site) LastRequest(tb testing.TB) Request {
	tb.Helper()
	rs := s.Requests()
	if len(rs) == 0 {
		tb.Fatal("notificationtest: the site received no request")
	}
	return rs[len(rs)-1]
}

func (s *Site) serve(w http.ResponseWriter, r *http.Request) {
	rec := Request{Method: r.Method, Path: r.URL.EscapedPath()}
	// reply records the request before answering, so that a client sees
	// it in Requests as soon as it has the reply.
	reply := func(status int, msg string, body any) {
		rec.Status, rec.Refusal = status, msg
		s.mu.Lock()
		s.requests = append(s.requests, rec)
		s.mu.Unlock()
		if body == nil && msg != "" {
			body = map[string]any{"status-code": status, "message": msg}
		}
		if body == nil {
			w.WriteHeader(status)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(body)
	}

	base := strings.TrimRight(strings.TrimPrefix(s.URL, s.Server.URL), "/")
	if rec.Path != base+WebhookPath {
		reply(http.StatusNotFound, "no resource at "+rec.Path, nil)
		return
	}
	c, refusal := s.verify(r)
	if c == nil {
		reply(http.StatusUnauthorized, refusal, nil)
		return
	}
	rec.Issuer = c.Issuer
	if c.IssuedAt != nil {
		rec.IssuedAt = c.IssuedAt.Time
	}
	rec.ExpiresAt = c.ExpiresAt.Time

	switch r.Method {
	case http.MethodGet:
		reply(http.StatusOK, "", map[string][]string{"endpoints": s.Endpoints()})
	case http.MethodPut:
		endpoints, err := readEndpoints(r)
		if err != nil {
			reply(http.StatusBadRequest, err.Error(), nil)
			return
		}
		s.SetEndpoints(endpoints...)
		reply(http.StatusOK, "", nil)
	default:
		w.Header().Set("Allow", "GET, PUT")
		reply(http.StatusMethodNotAllowed, r.Method+" is not allowed", nil)
	}
}

// readEndpoints reads a PUT body: {"endpoints":[absolute URL…]}, the list
// present (empty clears).
func readEndpoints(r *http.Request) ([]string, error) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		return nil, errors.New("Content-Type must be application/json")
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	var body struct {
		Endpoints *[]string `json:"endpoints"`
	}
	if err := json.Unmarshal(b, &body); err != nil || body.Endpoints == nil {
		return nil, errors.New(`body must be {"endpoints":[…]}`)
	}
	for _, e := range *body.Endpoints {
		if u, err := url.Parse(e); err != nil || !u.IsAbs() || u.Host == "" {
			return nil, fmt.Errorf("endpoint %q is not an absolute URL", e)
		}
	}
	return *body.Endpoints, nil
}
