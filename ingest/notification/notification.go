// Package notification is a client of Atlassian's Notification API, with
// which a Connect app registers, lists and clears the webhook endpoints that
// the app migration platform notifies on a tenant's cloud site:
//
//	PUT /rest/atlassian-connect/1/migration/webhook  {"endpoints":["https://…"]}
//	GET /rest/atlassian-connect/1/migration/webhook  → {"endpoints":[…]}
//
// The path is relative to the site's URL, the baseUrl of the tenant's
// installed callback (a Confluence site is https://<name>.atlassian.net/wiki).
// Every request carries a Connect JWT signed by the app (iss = the app key,
// HS256 with the tenant's shared secret, the qsh of that exact request
// relative to the site's URL, a short exp), as Atlassian's reference §4 asks
// of outgoing Connect REST calls.
//
// The package only talks to the site: it stores nothing and never logs or
// returns a token or a secret.
package notification

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/transferd/transferd/ingest/atlassian"
)

// Path is the Notification API's path, relative to the site's URL.
const Path = "/rest/atlassian-connect/1/migration/webhook"

// DefaultTTL is the lifetime of the token of each request when Client.TTL
// is zero: long enough for ordinary clock skew, short enough that a token
// seen in transit is soon useless.
const DefaultTTL = 3 * time.Minute

// DefaultTimeout bounds each request of a Client whose HTTP is nil.
const DefaultTimeout = 30 * time.Second

// maxReply caps the body read from the site.
const maxReply = 1 << 20

// snippetLen is how much of an error reply's body a StatusError keeps.
const snippetLen = 512

// These errors are returned, wrapped with the offending value, before any
// request is sent.
var (
	// ErrInvalidSite: the site is not an absolute http(s) URL without a
	// query or fragment.
	ErrInvalidSite = errors.New("notification: site must be an absolute http(s) URL without query or fragment")
	// ErrInvalidEndpoint: an endpoint is not an absolute http(s) URL; the
	// platform accepts nothing else.
	ErrInvalidEndpoint = errors.New("notification: endpoint must be an absolute http(s) URL")
	// ErrNoEndpoints: Register was given no endpoint (Clear removes them all).
	ErrNoEndpoints = errors.New("notification: register needs at least one endpoint (use Clear to remove them all)")
	// ErrNoAppKey: Client.AppKey is empty; it is the token's issuer.
	ErrNoAppKey = errors.New("notification: the client needs the Connect app key (the token's iss)")
	// ErrNoSecret: the tenant's shared secret is empty.
	ErrNoSecret = errors.New("notification: the tenant's shared secret is empty")
)

// StatusError is a reply of the site outside 2xx. Body is the start of
// the reply's body, as text, for the person reading the error.
type StatusError struct {
	Method     string
	URL        string
	StatusCode int
	Status     string // e.g. "401 Unauthorized"
	Body       string
}

// Error returns the method, the URL, the status and the body's start.
func (e *StatusError) Error() string {
	s := fmt.Sprintf("notification: %s %s: %s", e.Method, e.URL, e.Status)
	if e.Body != "" {
		s += ": " + e.Body
	}
	return s
}

// Endpoints is the JSON body of the Notification API, both ways.
type Endpoints struct {
	Endpoints []string `json:"endpoints"`
}

// Client calls the Notification API of the sites a Connect app is
// installed on. The zero value needs only AppKey. A Client is safe for
// concurrent use.
type Client struct {
	// HTTP sends the requests; nil uses a client with DefaultTimeout that
	// does not follow redirects (a redirected request would no longer
	// match its qsh, and its token would go to another address).
	HTTP *http.Client
	// AppKey is the Connect app's key (the descriptor's "key"), the iss of
	// every token.
	AppKey string
	// TTL is each token's lifetime; zero means DefaultTTL.
	TTL time.Duration
}

var defaultHTTP = &http.Client{
	Timeout:       DefaultTimeout,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// Register replaces the endpoints registered on site with endpoints, which
// must be absolute http(s) URLs, at least one.
func (c *Client) Register(ctx context.Context, site string, secret []byte, endpoints []string) error {
	if len(endpoints) == 0 {
		return ErrNoEndpoints
	}
	for _, e := range endpoints {
		if err := checkEndpoint(e); err != nil {
			return err
		}
	}
	_, err := c.do(ctx, http.MethodPut, site, secret, Endpoints{Endpoints: endpoints})
	return err
}

// List returns the endpoints registered on site, never nil.
func (c *Client) List(ctx context.Context, site string, secret []byte) ([]string, error) {
	body, err := c.do(ctx, http.MethodGet, site, secret, nil)
	if err != nil {
		return nil, err
	}
	var out Endpoints
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("notification: GET %s: the reply is not {\"endpoints\":[…]}: %w", site, err)
	}
	if out.Endpoints == nil {
		out.Endpoints = []string{}
	}
	return out.Endpoints, nil
}

// Clear removes every endpoint registered on site (PUT with an empty list).
func (c *Client) Clear(ctx context.Context, site string, secret []byte) error {
	_, err := c.do(ctx, http.MethodPut, site, secret, Endpoints{Endpoints: []string{}})
	return err
}

// URL returns the Notification API's URL on site and the path of site,
// which the qsh leaves out.
func URL(site string) (u *url.URL, basePath string, err error) {
	u, err = url.Parse(site)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil ||
		u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return nil, "", fmt.Errorf("%w: %q", ErrInvalidSite, site)
	}
	base := strings.TrimRight(u.EscapedPath(), "/")
	raw := base + Path
	u.Path, err = url.PathUnescape(raw)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %q: %w", ErrInvalidSite, site, err)
	}
	u.RawPath = raw
	return u, base, nil
}

// do sends one signed request and returns the body of a 2xx reply.
func (c *Client) do(ctx context.Context, method, site string, secret []byte, payload any) ([]byte, error) {
	switch {
	case c.AppKey == "":
		return nil, ErrNoAppKey
	case len(secret) == 0:
		return nil, ErrNoSecret
	}
	u, basePath, err := URL(site)
	if err != nil {
		return nil, err
	}
	var body io.Reader
	if payload != nil {
		b, err := json.Marshal(payload)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	ttl := c.TTL
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	tok, err := atlassian.SignConnect(method, u.String(), basePath, c.AppKey, secret, ttl, time.Now())
	if err != nil {
		return nil, fmt.Errorf("notification: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("notification: %w", err)
	}
	req.Header.Set("Authorization", "JWT "+tok)
	req.Header.Set("Accept", "application/json")
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := c.HTTP
	if hc == nil {
		hc = defaultHTTP
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("notification: %s %s: %w", method, u.String(), err)
	}
	defer resp.Body.Close()
	reply, err := io.ReadAll(io.LimitReader(resp.Body, maxReply))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, &StatusError{Method: method, URL: u.String(), StatusCode: resp.StatusCode, Status: resp.Status, Body: snippet(reply)}
	}
	if err != nil {
		return nil, fmt.Errorf("notification: %s %s: reading the reply: %w", method, u.String(), err)
	}
	return reply, nil
}

func checkEndpoint(e string) error {
	u, err := url.Parse(e)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%w: %q", ErrInvalidEndpoint, e)
	}
	return nil
}

// snippet is the start of b as one line of valid text.
func snippet(b []byte) string {
	s := strings.Join(strings.Fields(strings.ToValidUTF8(string(b), "\uFFFD")), " ")
	if len(s) <= snippetLen {
		return s
	}
	cut := snippetLen
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
