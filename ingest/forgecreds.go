package ingest

import (
	"log/slog"
	"sync"
	"time"
)

// ForgeSystemTokenHeader is the header in which Forge passes the app
// system token to a remote: the credential for calls back to the platform
// (Forge message status, mappings, app data).
const ForgeSystemTokenHeader = "X-Forge-Oauth-System"

// maxSystemToken caps the system token kept (bytes).
const maxSystemToken = 16 << 10

// ForgeCredential is what the newest accepted event of a Forge installation
// carried for calls back to the platform: the FIT's app.apiBaseUrl and the
// app system token of its x-forge-oauth-system header. It is kept in memory
// only, never in the journal, the audit export or a log line: its String
// and LogValue leave the token out.
type ForgeCredential struct {
	APIBaseURL string
	Token      string
	ReceivedAt time.Time
}

// String describes c without its token.
func (c ForgeCredential) String() string {
	return "ForgeCredential{apiBaseUrl: " + c.APIBaseURL + ", token: [redacted], receivedAt: " + c.ReceivedAt.Format(time.RFC3339) + "}"
}

// LogValue keeps the token out of structured logs.
func (c ForgeCredential) LogValue() slog.Value {
	return slog.GroupValue(slog.String("apiBaseUrl", c.APIBaseURL), slog.String("token", "[redacted]"), slog.Time("receivedAt", c.ReceivedAt))
}

// forgeCredentials keeps the newest ForgeCredential per installation. When
// full it forgets an arbitrary half: the next event of an installation
// brings its credential again.
type forgeCredentials struct {
	mu  sync.RWMutex
	m   map[string]ForgeCredential
	max int
}

func newForgeCredentials(max int) *forgeCredentials {
	return &forgeCredentials{m: make(map[string]ForgeCredential), max: max}
}

// put keeps c for installation unless a newer one is kept. A token that
// is empty, too long or not printable ASCII is not kept.
func (f *forgeCredentials) put(installation string, c ForgeCredential) {
	if c.Token == "" || len(c.Token) > maxSystemToken || !printable(c.Token) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if old, ok := f.m[installation]; ok && old.ReceivedAt.After(c.ReceivedAt) {
		return
	}
	if _, ok := f.m[installation]; !ok && len(f.m) >= f.max {
		n := 0
		for k := range f.m {
			if n >= f.max/2 {
				break
			}
			delete(f.m, k)
			n++
		}
	}
	f.m[installation] = c
}

func (f *forgeCredentials) get(installation string) (ForgeCredential, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	c, ok := f.m[installation]
	return c, ok
}

// ForgeCredential returns the credential the newest accepted event of the
// Forge installation carried (see ForgeCredential), and whether there is
// one. It lives as long as the Handler: after a restart, the next event of
// each installation brings it again.
func (h *Handler) ForgeCredential(installationID string) (ForgeCredential, bool) {
	return h.forgeCreds.get(installationID)
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// GoString keeps the token out of %#v too.
func (c ForgeCredential) GoString() string { return c.String() }
