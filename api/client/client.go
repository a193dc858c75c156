// Package client is a Go client of transferd's query API (package api):
// transfers, lists, event history, state at a past point, lineage,
// migrations, and the Server-Sent Events feed with automatic resumption.
//
// It depends only on the standard library and package engine, whose
// View, Transfer and Migration types it returns.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/transferd/transferd/api/httperr"
	"github.com/transferd/transferd/engine"
)

// Client calls one transferd server with one API token. Its methods are
// safe for concurrent use.
type Client struct {
	base  string
	token string
	hc    *http.Client
}

// Option configures New.
type Option func(*Client)

// WithHTTPClient makes the client use hc. Follow's streams last as long as
// its context: hc should have no Timeout (bound requests with their
// contexts instead).
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// New returns a client of the server at baseURL (scheme, host and any path
// prefix, e.g. "http://127.0.0.1:8080") authenticating with token.
func New(baseURL, token string, opts ...Option) *Client {
	c := &Client{base: strings.TrimRight(baseURL, "/"), token: token, hc: http.DefaultClient}
	for _, o := range opts {
		o(c)
	}
	return c
}

// These errors classify an *Error with errors.Is.
var (
	ErrNotFound     = errors.New("not found")
	ErrInvalid      = errors.New("invalid request")
	ErrUnauthorized = errors.New("unauthorized")
	ErrUnavailable  = errors.New("unavailable")
	// ErrTenantMismatch: a tenant-scoped token acted on another tenant's
	// transfer (403).
	ErrTenantMismatch = errors.New("tenant mismatch")
	// ErrConflict: the upload is not in a state that allows the request
	// (409, a requeue of an upload that is not a dead letter).
	ErrConflict = errors.New("conflict")
)

// Error is an error reply of the server.
type Error struct {
	Status  int    // HTTP status
	Code    string // one of httperr's codes: not_found, invalid_request, unauthorized, unavailable, internal, …
	Message string
	Param   string // the parameter at fault, for invalid_request
}

func (e *Error) Error() string {
	return fmt.Sprintf("transferd: %d %s: %s", e.Status, e.Code, e.Message)
}

// Is makes errors.Is(err, ErrNotFound) and its siblings match by code.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Code == httperr.CodeNotFound
	case ErrInvalid:
		return e.Code == httperr.CodeInvalidRequest
	case ErrUnauthorized:
		return e.Code == httperr.CodeUnauthorized
	case ErrUnavailable:
		return e.Code == httperr.CodeUnavailable || e.Status == http.StatusServiceUnavailable
	case ErrTenantMismatch:
		return e.Code == httperr.CodeTenantMismatch
	case ErrConflict:
		return e.Code == httperr.CodeConflict
	}
	return false
}

// Transfer returns transfer id's current state.
func (c *Client) Transfer(ctx context.Context, id string) (*engine.View, error) {
	return get[engine.View](ctx, c, "/v1/transfers/"+url.PathEscape(id), nil)
}

// Point is a position in the event stream for TransferAt: a stream
// sequence (Seq) or a receive time (Time).
type Point struct{ s string }

// Seq is the point just after the event at stream sequence n.
func Seq(n uint64) Point { return Point{strconv.FormatUint(n, 10)} }

// Time is the point just after every event received at or before t.
func Time(t time.Time) Point { return Point{t.Format(time.RFC3339Nano)} }

// TransferAt returns transfer id's state folded from its events up to at;
// ErrNotFound when it had no events by then.
func (c *Client) TransferAt(ctx context.Context, id string, at Point) (*engine.View, error) {
	return get[engine.View](ctx, c, "/v1/transfers/"+url.PathEscape(id), url.Values{"at": {at.s}})
}

// Filter selects transfers for List. Empty fields match everything.
type Filter struct {
	MigrationID string
	CloudURL    string
	Tenant      string // the issuer: Connect clientKey or Forge installation id
	Phase       engine.Phase
	// NeedsAction is "", "true" (same as "settle") or "false".
	NeedsAction string
	Limit       int    // page size, 1 to 500; 0 for the server's default (50)
	Cursor      string // Page.NextCursor of the previous page
}

func (f Filter) values() url.Values {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("migrationId", f.MigrationID)
	set("cloudUrl", f.CloudURL)
	set("tenant", f.Tenant)
	set("phase", string(f.Phase))
	set("needsAction", f.NeedsAction)
	set("cursor", f.Cursor)
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	return q
}

// Page is one page of List, newest transfers first.
type Page struct {
	Transfers []*engine.View `json:"transfers"`
	// NextCursor continues the listing; empty on the last page.
	NextCursor string `json:"nextCursor"`
	// Tenant and OtherTenants are set for a list by migration id or cloud
	// URL, which stays inside one tenant: the tenant listed (Filter.Tenant,
	// else the issuer of the oldest transfer naming the id or URL) and the
	// other issuers naming it.
	Tenant       string   `json:"tenant,omitempty"`
	OtherTenants []string `json:"otherTenants,omitempty"`
}

// List returns one page of the transfers matching f.
func (c *Client) List(ctx context.Context, f Filter) (*Page, error) {
	return get[Page](ctx, c, "/v1/transfers", f.values())
}

// ListAll iterates over every transfer matching f, page after page from
// f.Cursor on. A list by migration id or cloud URL without f.Tenant stays
// with the tenant of its first page. A failure is yielded once, last.
func (c *Client) ListAll(ctx context.Context, f Filter) iter.Seq2[*engine.View, error] {
	return func(yield func(*engine.View, error) bool) {
		for {
			p, err := c.List(ctx, f)
			if err != nil {
				yield(nil, err)
				return
			}
			for _, v := range p.Transfers {
				if !yield(v, nil) {
					return
				}
			}
			if p.NextCursor == "" {
				return
			}
			f.Cursor = p.NextCursor
			if f.Tenant == "" {
				f.Tenant = p.Tenant
			}
		}
	}
}

// Event is a stored event: its envelope, where it sits in the stream, and
// (in Events) how many later messages repeat its identity.
type Event struct {
	Seq        uint64    `json:"seq"`
	ReceivedAt time.Time `json:"receivedAt"`
	Duplicates int       `json:"duplicates"`
	V          int       `json:"v"`
	// ID is the event's identity: its messageId, or a digest of the payload.
	ID         string        `json:"id"`
	Source     engine.Source `json:"source"`
	Kind       engine.Kind   `json:"kind"`
	TransferID string        `json:"transferId"`
	Issuer     string        `json:"issuer"`
	// Payload is the body as the platform sent it, byte for byte.
	Payload json.RawMessage `json:"payload"`
}

// Events returns transfer id's events in stream order, each identity once.
func (c *Client) Events(ctx context.Context, id string) ([]Event, error) {
	body, err := get[struct {
		Events []Event `json:"events"`
	}](ctx, c, "/v1/transfers/"+url.PathEscape(id)+"/events", nil)
	if err != nil {
		return nil, err
	}
	return body.Events, nil
}

// Lineage is a transfer's family: the root (the original at the top) and
// every transfer descending from it, oldest first.
type Lineage struct {
	Root      string         `json:"root"`
	Transfers []*engine.View `json:"transfers"`
}

// Lineage returns the lineage transfer id belongs to.
func (c *Client) Lineage(ctx context.Context, id string) (*Lineage, error) {
	return get[Lineage](ctx, c, "/v1/transfers/"+url.PathEscape(id)+"/lineage", nil)
}

// Migration is a migration's details and its transfers, oldest first.
type Migration struct {
	MigrationID string            `json:"migrationId"`
	Migration   *engine.Migration `json:"migration"`
	Transfers   []*engine.View    `json:"transfers"`
}

// Migration returns migration id and its transfers.
func (c *Client) Migration(ctx context.Context, id string) (*Migration, error) {
	return get[Migration](ctx, c, "/v1/migrations/"+url.PathEscape(id), nil)
}

func (c *Client) request(ctx context.Context, path string, q url.Values) (*http.Request, error) {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("transferd: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	return req, nil
}

// get fetches path and decodes the reply; the result is nil on error.
func get[T any](ctx context.Context, c *Client, path string, q url.Values) (*T, error) {
	req, err := c.request(ctx, path, q)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("transferd: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, replyError(resp)
	}
	v := new(T)
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return nil, fmt.Errorf("transferd: decoding %s: %w", path, err)
	}
	return v, nil
}

// replyError reads an error reply.
func replyError(resp *http.Response) error {
	var body httperr.Body
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	e := &Error{Status: resp.StatusCode}
	if json.Unmarshal(b, &body) == nil && body.Error.Code != "" {
		e.Code, e.Message, e.Param = body.Error.Code, body.Error.Message, body.Error.Param
	} else {
		e.Code, e.Message = "http_"+strconv.Itoa(resp.StatusCode), strings.TrimSpace(string(b))
	}
	return e
}
