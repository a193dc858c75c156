// Package platformtest is a stateful stand-in for the Atlassian app
// migration platform's REST side, for tests and the simulator: the Connect
// routes under each tenant's site (Connect JWTs checked as the platform
// does: HS256 with the tenant's shared secret, iss the app key, qsh) and the
// Forge routes (the installation's app system token as a bearer token).
//
// It keeps what the platform keeps about each transfer and answers as the
// platform documents: a lower percent than before is ignored; the first
// settle wins and every later call for the transfer gets 403; a progress
// report after 14 days from the first trigger gets 400 (and the transfer
// times out); app data is gone once settled; a Forge transfer whose
// uploaded messages are not all acknowledged within 15 minutes fails; and,
// when asked to, it answers 429 now and then.
package platformtest

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/transferd/transferd/ingest/atlassian"
	"github.com/transferd/transferd/ingest/platform"
)

// Deadlines of the platform.
const (
	SettleLimit  = 14 * 24 * time.Hour // after the first trigger: TIMED_OUT
	ForgeAckWait = 15 * time.Minute    // for each Forge message status
)

// Options shape a Server. The zero value is a well-behaved platform.
type Options struct {
	AppKey string // the Connect app key every token must name as iss
	// Now is the platform's clock; nil is time.Now.
	Now func() time.Time
	// TooManyEvery, when above zero, answers every n-th request 429 with
	// Retry-After: 1 before looking at it.
	TooManyEvery int
	// FailEvery, when above zero, answers every n-th request 503.
	FailEvery int
}

// Server is the fake platform. Its methods are safe for concurrent use.
type Server struct {
	*httptest.Server
	opts Options

	mu        sync.Mutex
	requests  int
	tenants   map[string]*tenant // by clientKey or installationId
	transfers map[string]*Transfer
}

type tenant struct {
	id, secret, token string
	forge             bool
	basePath          string // the site's path on the server
}

// Transfer is what the platform knows of one transfer.
type Transfer struct {
	ID, Tenant   string
	FirstTrigger time.Time
	Status       string // IN_PROGRESS, SUCCESS, FAILED, INCOMPLETE, TIMED_OUT
	Percent      int
	Message      string
	// Settles counts the settle calls the platform accepted (never more
	// than one); Refused counts the calls it refused as settled.
	Settles, Refused int
	// SettleCalls counts the final-status progress calls it answered
	// (accepted or refused): more than one means the app settled twice.
	SettleCalls int
	// SettleCallsCut counts those whose caller had gone (cancelled,
	// disconnected) by the time the platform answered: the app cannot
	// know whether they landed, and may rightly send again.
	SettleCallsCut int
	SettledBy      string // "app" or "platform"
	Data           []platform.AppData
	Mappings       map[string]map[string]string // namespace → server id → cloud id
	Messages       []string                     // Forge uploaded messages to acknowledge
	Acked          map[string]string            // Forge message id → status
	AckCalls       map[string]int               // Forge message id → accepted status calls naming it
	LastActivity   time.Time                    // the last message status (or the first trigger)
	Error          *platform.ListenerError
	Feedback       []json.RawMessage
}

// New starts a Server on loopback.
func New(opts Options) *Server {
	s := newServer(opts)
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// Listen starts a Server on addr ("127.0.0.1:8082"; port 0 picks one), for
// the simulator, which serves the platform on a fixed address.
func Listen(addr string, opts Options) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("platformtest: listen on %s: %w", addr, err)
	}
	s := newServer(opts)
	s.Server = &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(s.serve), ReadHeaderTimeout: 5 * time.Second}}
	s.Server.Start()
	return s, nil
}

func newServer(opts Options) *Server {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Server{opts: opts, tenants: map[string]*tenant{}, transfers: map[string]*Transfer{}}
}

// SettleByPlatform settles transfer id as the platform does on its own
// (the transfer-settled a webhook reports): status, by "platform". It
// reports whether the transfer was in progress.
func (s *Server) SettleByPlatform(id, status string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.transfers[id]
	if t == nil {
		return false
	}
	s.expire(t)
	if t.Status != platform.InProgress {
		return false
	}
	t.Status, t.SettledBy = status, "platform"
	return true
}

// AddConnectTenant registers a Connect tenant and returns its site's URL
// (the baseUrl its installed callback names); confluence puts it under
// /wiki as Confluence sites are.
func (s *Server) AddConnectTenant(clientKey, secret string, confluence bool) string {
	p := "/site/" + clientKey
	if confluence {
		p += "/wiki"
	}
	s.mu.Lock()
	s.tenants[clientKey] = &tenant{id: clientKey, secret: secret, basePath: p}
	s.mu.Unlock()
	return s.URL + p
}

// AddForgeInstallation registers a Forge installation with its app system
// token and returns its apiBaseUrl.
func (s *Server) AddForgeInstallation(installationID, token string) string {
	p := "/forge/" + url.PathEscape(installationID) // an installation ARI holds a slash
	s.mu.Lock()
	s.tenants[installationID] = &tenant{id: installationID, token: token, forge: true, basePath: p}
	s.mu.Unlock()
	return s.URL + p
}

// AddTransfer starts transfer t (ID, Tenant, Data, Mappings, Messages'
// keys, Error as wanted); it is IN_PROGRESS from FirstTrigger (now if zero).
func (s *Server) AddTransfer(t Transfer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.FirstTrigger.IsZero() {
		t.FirstTrigger = s.opts.Now()
	}
	t.Status = platform.InProgress
	t.Messages = append([]string(nil), t.Messages...)
	t.LastActivity = t.FirstTrigger
	t.Acked, t.AckCalls = map[string]string{}, map[string]int{}
	s.transfers[t.ID] = &t
}

// Get returns a copy of what the platform knows of transfer id.
func (s *Server) Get(id string) (Transfer, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.transfers[id]
	if !ok {
		return Transfer{}, false
	}
	s.expire(t)
	c := *t
	c.Messages = append([]string(nil), t.Messages...)
	c.Acked = make(map[string]string, len(t.Acked))
	for k, v := range t.Acked {
		c.Acked[k] = v
	}
	c.AckCalls = maps.Clone(t.AckCalls)
	return c, true
}

// Transfers returns the ids of every transfer, sorted.
func (s *Server) Transfers() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.transfers))
	for id := range s.transfers {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// expire applies the platform's own deadlines to t. s.mu is held.
func (s *Server) expire(t *Transfer) {
	if t.Status != platform.InProgress {
		return
	}
	now := s.opts.Now()
	if now.Sub(t.FirstTrigger) >= SettleLimit {
		t.Status, t.SettledBy = "TIMED_OUT", "platform"
		return
	}
	if len(t.Acked) < len(t.Messages) && now.Sub(t.LastActivity) > ForgeAckWait {
		t.Status, t.SettledBy, t.Message = platform.Failed, "platform", "no message status within 15 minutes"
	}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests++
	n := s.requests
	s.mu.Unlock()
	if e := s.opts.TooManyEvery; e > 0 && n%e == 0 {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "rate limited", http.StatusTooManyRequests)
		return
	}
	if e := s.opts.FailEvery; e > 0 && n%e == 0 {
		http.Error(w, "try again", http.StatusServiceUnavailable)
		return
	}
	ten, route, err := s.authenticate(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	status, reply := s.route(r.Context(), ten, r.Method, route, r.URL.Query(), body)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if reply != nil {
		json.NewEncoder(w).Encode(reply)
	}
}

// authenticate finds the tenant of r's site and checks its credentials;
// it returns the route below the migration API's prefix.
func (s *Server) authenticate(r *http.Request) (*tenant, string, error) {
	p := r.URL.EscapedPath()
	parts := strings.SplitN(strings.TrimPrefix(p, "/"), "/", 3)
	if len(parts) < 3 || (parts[0] != "site" && parts[0] != "forge") {
		return nil, "", fmt.Errorf("no site at %s", p)
	}
	id, err := url.PathUnescape(parts[1])
	if err != nil {
		return nil, "", fmt.Errorf("no site at %s", p)
	}
	s.mu.Lock()
	ten := s.tenants[id]
	s.mu.Unlock()
	if ten == nil || ten.forge != (parts[0] == "forge") {
		return nil, "", fmt.Errorf("no site at %s", p)
	}
	rest := strings.TrimPrefix(p, ten.basePath)
	if ten.forge {
		route, ok := strings.CutPrefix(rest, platform.ForgePrefix)
		if !ok || r.Header.Get("Authorization") != "Bearer "+ten.token {
			return nil, "", fmt.Errorf("bad Forge credentials or route")
		}
		return ten, route, nil
	}
	route, ok := strings.CutPrefix(rest, platform.ConnectPrefix)
	if !ok {
		return nil, "", fmt.Errorf("no Connect migration route at %s", p)
	}
	raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "JWT ")
	if !ok {
		return nil, "", fmt.Errorf("no Connect JWT")
	}
	var claims struct {
		jwt.RegisteredClaims
		QSH string `json:"qsh"`
	}
	_, err = jwt.ParseWithClaims(raw, &claims, func(*jwt.Token) (any, error) { return []byte(ten.secret), nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired(), jwt.WithIssuer(s.opts.AppKey), jwt.WithLeeway(30*time.Second))
	if err != nil {
		return nil, "", err
	}
	if want := atlassian.QSH(r.Method, p, r.URL.RawQuery, ten.basePath); claims.QSH != want {
		return nil, "", fmt.Errorf("qsh mismatch")
	}
	return ten, route, nil
}
