package platform

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
	"sync"
	"time"
	"unicode/utf8"
)

// Defaults of a Client whose fields are zero.
const (
	DefaultTTL     = 3 * time.Minute  // lifetime of each Connect token
	DefaultTimeout = 30 * time.Second // bound of each request
	DefaultRate    = 10               // requests per second to one host
	DefaultBurst   = 20
	// ForgeAPIBase is the platform's address for Forge apps when the
	// FIT carries no app.apiBaseUrl.
	ForgeAPIBase = "https://api.atlassian.com"
)

const (
	maxReply   = 4 << 20 // the most of a reply read
	snippetLen = 512     // the most of an error reply kept
)

// These errors classify a call's outcome; test them with errors.Is.
var (
	// ErrSettled: the platform answered 403 or 409, which it does once the
	// transfer is settled (its data is then gone): no later call will do.
	ErrSettled = errors.New("platform: the transfer is settled or its data is gone")
	// ErrRejected: the platform answered 400: the request was refused, for
	// a progress report also when the transfer is past its 14 days.
	ErrRejected = errors.New("platform: the request was refused")
	// ErrNotFound: 404.
	ErrNotFound = errors.New("platform: not found")
	// ErrExhausted wraps the last failure when every attempt failed with a
	// transport error, a 5xx or a 429.
	ErrExhausted = errors.New("platform: every attempt failed")
	// ErrInvalid: the call was not sent, its arguments are wrong.
	ErrInvalid = errors.New("platform: invalid call")
)

// StatusError is a final reply outside 2xx.
type StatusError struct {
	Method, URL string
	StatusCode  int
	Body        string // the start of the reply's body, as one line of text
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("platform: %s %s: %d %s", e.Method, e.URL, e.StatusCode, http.StatusText(e.StatusCode))
	if e.Body != "" {
		s += ": " + e.Body
	}
	return s
}

// Is lets errors.Is classify the reply.
func (e *StatusError) Is(target error) bool {
	switch target {
	case ErrSettled:
		return e.StatusCode == http.StatusForbidden || e.StatusCode == http.StatusConflict
	case ErrRejected:
		return e.StatusCode == http.StatusBadRequest
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound
	}
	return false
}

// Call is what a Client tells Record of each call once it has its outcome.
// It never holds a token or a secret.
type Call struct {
	Op         string // e.g. "progress", "forge.status", "mapping.page"
	TransferID string // empty for calls not about one transfer
	Method     string
	URL        string // without credentials; a query names no secret
	Attempts   int
	// Unanswered: an earlier attempt got no reply, so it may have taken
	// effect (a settle retried after a lost reply may then be refused as
	// already settled).
	Unanswered bool
	Status     int    // the final HTTP status; 0 when none came
	Err        string // empty on success
	Started    time.Time
	Elapsed    time.Duration
}

// Client calls the platform. The zero value needs AppKey for Connect calls
// and nothing for Forge calls. It is safe for concurrent use.
type Client struct {
	// HTTP sends the requests; nil uses a client with DefaultTimeout that
	// follows no redirect (the token would go elsewhere, the qsh not match).
	HTTP *http.Client
	// AppKey is the Connect app's key, the iss of every Connect token.
	AppKey string
	// TTL is each Connect token's lifetime; zero means DefaultTTL.
	TTL time.Duration
	// Retry bounds the attempts of each call.
	Retry Retry
	// Rate and Burst limit the requests to one host; zero means
	// DefaultRate and DefaultBurst, a negative Rate no limit.
	Rate  float64
	Burst int
	// Record, when set, is told of every call's outcome.
	Record func(Call)

	once sync.Once
	lim  *limiter
}

var defaultHTTP = &http.Client{
	Timeout:       DefaultTimeout,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func (c *Client) limiter() *limiter {
	c.once.Do(func() {
		rate, burst := c.Rate, float64(c.Burst)
		if rate == 0 {
			rate = DefaultRate
		}
		if burst <= 0 {
			burst = DefaultBurst
		}
		if rate > 0 {
			c.lim = &limiter{rate: rate, burst: burst}
		}
	})
	return c.lim
}

// request is one call, before it is sent.
type request struct {
	op, transferID string
	method         string
	u              *url.URL
	body           []byte // nil for none
	// auth returns the Authorization header for one attempt (a Connect
	// token is signed afresh each time, so a retry never sends a stale one).
	auth func() (string, error)
}

// do sends r with retries and decodes a 2xx reply's JSON into out (unless
// out is nil), telling Record of the outcome.
func (c *Client) do(ctx context.Context, r request, out any) error {
	started := time.Now()
	call := Call{Op: r.op, TransferID: r.transferID, Method: r.method, URL: r.u.String(), Started: started}
	err := c.attempt(ctx, r, out, &call)
	call.Elapsed = time.Since(started)
	if err != nil {
		call.Err = err.Error()
	}
	if c.Record != nil {
		c.Record(call)
	}
	return err
}

func (c *Client) attempt(ctx context.Context, r request, out any, call *Call) error {
	hc := c.HTTP
	if hc == nil {
		hc = defaultHTTP
	}
	var last error
	for n := 1; n <= c.Retry.attempts(); n++ {
		if n > 1 {
			var ra time.Duration
			var se *retryable
			if errors.As(last, &se) {
				ra = se.after
			}
			if err := sleep(ctx, c.Retry.backoff(n-1, ra)); err != nil {
				return fmt.Errorf("platform: %s %s: %w (after %w)", r.method, call.URL, err, last)
			}
		}
		if err := c.limiter().wait(ctx, r.u.Host); err != nil {
			return fmt.Errorf("platform: %s %s: %w", r.method, call.URL, err)
		}
		call.Attempts = n
		auth, err := r.auth()
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrInvalid, r.op, err)
		}
		var body io.Reader
		if r.body != nil {
			body = bytes.NewReader(r.body)
		}
		req, err := http.NewRequestWithContext(ctx, r.method, r.u.String(), body)
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrInvalid, r.op, err)
		}
		req.Header.Set("Authorization", auth)
		req.Header.Set("Accept", "application/json")
		if r.body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := hc.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("platform: %s %s: %w", r.method, call.URL, context.Cause(ctx))
			}
			call.Unanswered = true
			last = &retryable{err: fmt.Errorf("platform: %s %s: %w", r.method, call.URL, err)}
			continue
		}
		reply, rerr := io.ReadAll(io.LimitReader(resp.Body, maxReply))
		resp.Body.Close()
		call.Status = resp.StatusCode
		switch code := resp.StatusCode; {
		case code >= 200 && code <= 299:
			if rerr != nil {
				call.Unanswered = true
				last = &retryable{err: fmt.Errorf("platform: %s %s: reading the reply: %w", r.method, call.URL, rerr)}
				continue
			}
			if out == nil || len(bytes.TrimSpace(reply)) == 0 {
				return nil
			}
			if err := json.Unmarshal(reply, out); err != nil {
				return fmt.Errorf("platform: %s %s: the reply is not the JSON expected: %w", r.method, call.URL, err)
			}
			return nil
		case code == http.StatusTooManyRequests || code >= 500:
			last = &retryable{
				err:   &StatusError{Method: r.method, URL: call.URL, StatusCode: code, Body: snippet(reply)},
				after: retryAfter(resp.Header, time.Now()),
			}
		default:
			return &StatusError{Method: r.method, URL: call.URL, StatusCode: code, Body: snippet(reply)}
		}
	}
	return fmt.Errorf("%w (%d): %w", ErrExhausted, call.Attempts, last)
}

// retryable is a failure worth another attempt.
type retryable struct {
	err   error
	after time.Duration // the platform's Retry-After, if it said one
}

func (e *retryable) Error() string { return e.err.Error() }
func (e *retryable) Unwrap() error { return e.err }

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

// endpoint joins base (an absolute http(s) URL without query or fragment)
// and the escaped path p, and returns it with base's escaped path, which a
// Connect qsh leaves out.
func endpoint(base, p string, query url.Values) (*url.URL, string, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil ||
		u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return nil, "", fmt.Errorf("%w: base URL %q must be an absolute http(s) URL without query or fragment", ErrInvalid, base)
	}
	basePath := strings.TrimRight(u.EscapedPath(), "/")
	raw := basePath + p
	if u.Path, err = url.PathUnescape(raw); err != nil {
		return nil, "", fmt.Errorf("%w: %q: %w", ErrInvalid, raw, err)
	}
	u.RawPath = raw
	if len(query) > 0 {
		u.RawQuery = query.Encode()
	}
	return u, basePath, nil
}

// segment checks and escapes one path segment (a transferId, an s3Key).
func segment(name, v string) (string, error) {
	if v == "" || len(v) > 1024 || !utf8.ValidString(v) {
		return "", fmt.Errorf("%w: %s %q", ErrInvalid, name, v)
	}
	return url.PathEscape(v), nil
}
