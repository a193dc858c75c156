// Package notificationtest runs a fake Atlassian cloud site for tests of
// Notification API clients: an httptest server on loopback that serves
// PUT and GET /rest/atlassian-connect/1/migration/webhook under the site's
// path, verifies every request's Connect JWT with the rules the ingest side
// applies to the platform's tokens (ingest.ConnectVerifier: HS256 with the
// shared secret of the token's iss, exp required, the qsh of the request
// relative to the site's URL, no context-qsh), and keeps the endpoints in
// memory. It is stopped in tb.Cleanup.
package notificationtest

import (
	"context"
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

	"github.com/transferd/transferd/ingest"
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

	verifier *ingest.ConnectVerifier

	mu        sync.Mutex
	endpoints []string
	requests  []Request
}

// secrets answers for the one app key the site trusts.
type secrets map[string][]byte

func (s secrets) SharedSecret(_ context.Context, iss string) ([]byte, error) {
	if b, ok := s[iss]; ok {
		return b, nil
	}
	return nil, fmt.Errorf("%w %q", ingest.ErrUnknownTenant, iss)
}

// NewSite starts a fake site.
func NewSite(tb testing.TB, opts Options) *Site {
	tb.Helper()
	s := &Site{endpoints: []string{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	tb.Cleanup(s.Server.Close)
	s.URL = s.Server.URL + opts.Path
	v, err := ingest.NewConnectVerifier(secrets{opts.AppKey: opts.Secret}, ingest.ConnectConfig{BaseURL: s.URL})
	if err != nil {
		tb.Fatalf("notificationtest: %v", err)
	}
	s.verifier = v
	return s
}

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
	if _, err := s.verifier.Verify(r); err != nil {
		var ae *ingest.AuthError
		if errors.As(err, &ae) {
			reply(http.StatusUnauthorized, ae.Code+": "+ae.Message, nil)
		} else {
			reply(http.StatusInternalServerError, err.Error(), nil)
		}
		return
	}
	rec.Issuer, rec.IssuedAt, rec.ExpiresAt = claims(r)

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

// claims reads the already verified token's iss, iat and exp.
func claims(r *http.Request) (iss string, iat, exp time.Time) {
	raw := strings.TrimSpace(strings.TrimPrefix(r.Header.Get("Authorization"), "JWT "))
	var c jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(raw, &c); err != nil {
		return "", time.Time{}, time.Time{}
	}
	if c.IssuedAt != nil {
		iat = c.IssuedAt.Time
	}
	if c.ExpiresAt != nil {
		exp = c.ExpiresAt.Time
	}
	return c.Issuer, iat, exp
}
