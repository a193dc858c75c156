package simulator

import (
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/ingest/atlassian"
)

// tenant is one Connect installation or one Forge installation: the issuer
// of its transfers' events.
type tenant struct {
	source   engine.Source
	issuer   string // Connect clientKey, or Forge app.installationId
	secret   []byte // Connect shared secret
	product  string // Connect productType: jira or confluence
	cloudURL string
	cloudID  string
	given    bool // a Config.ConnectTenants credential
	// With the simulator's platform: the Connect baseUrl installed (its
	// site there), or the Forge app.apiBaseUrl and app system token.
	siteURL, apiBaseURL, sysToken string
	reused                        bool // kept in Config.TenantsFile by an earlier run

	token   atomic.Pointer[cachedToken]
	expired atomic.Pointer[string] // an expired token stays expired: sign it once
	mu      sync.Mutex             // serialises re-signing
}

// cachedToken is an Authorization header value and when to sign anew.
type cachedToken struct {
	header    string
	refreshAt time.Time
}

// Token lifetimes. Connect tokens bind method, path and query only, so one
// token serves every webhook of a tenant until it is re-signed; Forge
// tokens live about 25 s, as Forge's do.
const (
	connectTokenTTL  = 3 * time.Minute
	connectRefresh   = 2 * time.Minute
	forgeTokenTTL    = 25 * time.Second
	forgeRefresh     = 15 * time.Second
	installTokenTTL  = 3 * time.Minute
	expiredTokenAge  = 10 * time.Minute // well past the server's 30 s leeway
	simulatorAppKey  = "com.example.transferd-simulator"
	serverAppVersion = "1.4.2"
)

// newTenants creates the tenants of a run: Connect ones (generated, or the
// given credentials) and Forge installations.
func newTenants(cfg Config, r *rand.Rand) []*tenant {
	nConnect, nForge := 0, 0
	switch cfg.Source {
	case MixConnect:
		nConnect = cfg.Tenants
	case MixForge:
		nForge = cfg.Tenants
	default:
		nConnect, nForge = max(1, (cfg.Tenants+1)/2), max(1, cfg.Tenants/2)
	}
	var out []*tenant
	site := func() (string, string) {
		id := uuid(r)
		return fmt.Sprintf("https://sim-%s.atlassian.net", id[:8]), id
	}
	if cfg.Install == InstallNone && cfg.Source != MixForge {
		for _, c := range cfg.ConnectTenants {
			t := &tenant{source: engine.SourceConnect, issuer: c.ClientKey, secret: []byte(c.SharedSecret), product: "jira", given: true}
			t.cloudURL, t.cloudID = site()
			out = append(out, t)
		}
		nConnect = 0
	}
	for i := range nConnect {
		t := &tenant{source: engine.SourceConnect, issuer: uuid(r), secret: newSecret(), product: "jira"}
		if i%2 == 1 {
			t.product = "confluence"
		}
		t.cloudURL, t.cloudID = site()
		out = append(out, t)
	}
	for range nForge {
		t := &tenant{source: engine.SourceForge, issuer: "ari:cloud:ecosystem::installation/" + uuid(r)}
		t.cloudURL, t.cloudID = site()
		out = append(out, t)
	}
	return out
}

// newSecret is a shared secret: random, never derived from the seed.
func newSecret() []byte {
	b := make([]byte, 32)
	crand.Read(b)
	return []byte(hex.EncodeToString(b))
}

// signer makes the Authorization headers of a run.
type signer struct {
	keys        *KeyServer
	appARI      string
	connectPath string // the webhook path as sent
	basePath    string // the path of the app's base URL
	now         func() time.Time
}

// authorization returns t's current Authorization header, re-signing it
// when it is due.
func (s *signer) authorization(t *tenant) (string, error) {
	now := s.now()
	if c := t.token.Load(); c != nil && now.Before(c.refreshAt) {
		return c.header, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if c := t.token.Load(); c != nil && now.Before(c.refreshAt) {
		return c.header, nil
	}
	var c cachedToken
	var err error
	if t.source == engine.SourceConnect {
		c.header, err = s.connect(t, t.secret, s.connectPath, connectTokenTTL, now)
		c.refreshAt = now.Add(connectRefresh)
	} else {
		c.header, err = s.forge(t, forgeTokenTTL, now)
		c.refreshAt = now.Add(forgeRefresh)
	}
	if err != nil {
		return "", err
	}
	t.token.Store(&c)
	return c.header, nil
}

func (s *signer) connect(t *tenant, secret []byte, path string, ttl time.Duration, now time.Time) (string, error) {
	tok, err := atlassian.SignConnect("POST", path, s.basePath, t.issuer, secret, ttl, now)
	if err != nil {
		return "", err
	}
	return "JWT " + tok, nil
}

func (s *signer) forge(t *tenant, ttl time.Duration, now time.Time) (string, error) {
	api := t.apiBaseURL
	if api == "" {
		api = "https://api.atlassian.com/ex/confluence/" + t.cloudID
	}
	tok, err := s.keys.SignFITAt(s.appARI, t.issuer, t.cloudID, api, ttl, now)
	if err != nil {
		return "", err
	}
	return "Bearer " + tok, nil
}

// bad returns the Authorization header of a bad request: none, signed with
// the wrong key, expired, or (Connect) with the qsh of another request.
func (s *signer) bad(t *tenant, mode authMode) (string, error) {
	now := s.now()
	switch mode {
	case authNone:
		return "", nil
	case authWrongKey:
		if t.source == engine.SourceConnect {
			return s.connect(t, newSecret(), s.connectPath, connectTokenTTL, now)
		}
		h, err := s.authorization(t)
		if err != nil {
			return "", err
		}
		return corruptSignature(h), nil
	case authExpired:
		if t.source == engine.SourceConnect {
			return s.connect(t, t.secret, s.connectPath, time.Minute, now.Add(-expiredTokenAge))
		}
		// RS256 signing costs milliseconds: keep the load generator cheap.
		if h := t.expired.Load(); h != nil {
			return *h, nil
		}
		h, err := s.forge(t, forgeTokenTTL, now.Add(-expiredTokenAge))
		if err != nil {
			return "", err
		}
		t.expired.Store(&h)
		return h, nil
	case authWrongQSH:
		return s.connect(t, t.secret, s.connectPath+"/elsewhere", connectTokenTTL, now)
	}
	return s.authorization(t)
}

// corruptSignature changes one character in the middle of a JWT's
// signature, so that it no longer verifies under the published key.
func corruptSignature(header string) string {
	b := []byte(header)
	i := len(b) - 20
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

// uuid returns a random (version 4) UUID drawn from r.
func uuid(r *rand.Rand) string {
	var b [16]byte
	for i := 0; i < 16; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
