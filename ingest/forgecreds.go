package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/transferd/transferd/engine/journal"
)

// ForgeSystemTokenHeader is the header in which Forge passes the app
// system token to a remote: the credential for calls back to the platform
// (Forge message status, mappings, app data).
const ForgeSystemTokenHeader = "X-Forge-Oauth-System"

// maxSystemToken caps the system token kept (bytes).
const maxSystemToken = 16 << 10

// ErrNoForgeCredential is returned by LoadForgeCredential for an
// installation of which no accepted event brought a credential (here, or
// to another instance on the same journal, with Config.ForgeCredentials).
var ErrNoForgeCredential = errors.New("ingest: no Forge credential for the installation")

// ForgeCredential is what the newest accepted event of a Forge installation
// carried for calls back to the platform: the FIT's app.apiBaseUrl and the
// app system token of its x-forge-oauth-system header. It is kept in memory
// and, with Config.ForgeCredentials, sealed at rest; never in the journal's
// events, the audit export or a log line: its String and LogValue leave the
// token out.
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

// GoString keeps the token out of %#v too.
func (c ForgeCredential) GoString() string { return c.String() }

// sealedCredential is a ForgeCredential as sealed at rest (the plaintext
// of the sealed value; never stored or logged as it stands).
type sealedCredential struct {
	APIBaseURL string    `json:"apiBaseUrl"`
	Token      string    `json:"token"`
	ReceivedAt time.Time `json:"receivedAt"`
}

// Timings of the credentials at rest.
const (
	// credentialRefresh: the same token and apiBaseUrl are written again
	// only when this much newer than the stored ones, so that a busy
	// installation costs no write per event.
	credentialRefresh = time.Hour
	// credentialRecheck: a credential (or its absence) is read from the
	// bucket again after this long, when asked for, so that one another
	// instance received meanwhile is used.
	credentialRecheck = time.Minute
	// credentialTimeout bounds each read or write of the bucket.
	credentialTimeout = 5 * time.Second
	// credentialRetryMax caps the backoff of failed writes.
	credentialRetryMax = 30 * time.Second
)

// forgeCredentials keeps the newest ForgeCredential per installation in
// memory and, when store and keys are set, sealed in the journal's Forge
// credentials bucket, so that a restarted serve, or another instance on
// the same NATS, still has it. Writes are off the request path: put marks
// the installation pending and one writer goroutine writes the newest
// pending credential of each (coalesced), only when it differs from the
// stored one (token, apiBaseUrl, or credentialRefresh newer). Reads of the
// bucket happen on a miss or after credentialRecheck, from get (the
// driver's path), never from put. Newest receivedAt wins, in memory and in
// the bucket (compare and set on the revision).
//
// When full, memory forgets an arbitrary half: with a bucket the next get
// reads it again; without, the next event of an installation brings it.
type forgeCredentials struct {
	mu      sync.Mutex
	m       map[string]*credEntry
	max     int
	pending map[string]ForgeCredential // installation → credential to write

	store *journal.Credentials // nil: memory only
	keys  *SecretKeys          // nil: memory only
	log   *slog.Logger
	now   func() time.Time

	wake      chan struct{}
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// credEntry is what is known of one installation's credential.
type credEntry struct {
	c       ForgeCredential // the newest known; zero Token when none is
	stored  ForgeCredential // the one known to be in the bucket
	rev     uint64          // its revision (0: unknown)
	checked time.Time       // when the bucket was last read or written for it
}

func newForgeCredentials(max int) *forgeCredentials {
	return &forgeCredentials{m: make(map[string]*credEntry), max: max, pending: map[string]ForgeCredential{}, now: time.Now}
}

// persist makes f keep credentials sealed with keys in store, with a
// writer that runs until ctx ends or close.
func (f *forgeCredentials) persist(ctx context.Context, store *journal.Credentials, keys *SecretKeys, log *slog.Logger) {
	f.store, f.keys, f.log = store, keys, log
	f.wake, f.stop, f.done = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
	go f.run(ctx)
}

func (f *forgeCredentials) persistent() bool { return f.store != nil }

// put keeps c for installation unless a newer one is kept, and marks it
// to be written when it differs from the stored one. A token that is
// empty, too long or not printable ASCII is not kept. It never waits for
// the bucket.
func (f *forgeCredentials) put(installation string, c ForgeCredential) {
	if installation == "" || c.Token == "" || len(c.Token) > maxSystemToken || !printable(c.Token) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.m[installation]
	if e != nil && e.c.ReceivedAt.After(c.ReceivedAt) {
		return
	}
	if e == nil {
		f.makeRoom()
		e = &credEntry{}
		f.m[installation] = e
	}
	e.c = c
	if !f.persistent() || !newer(c, e.stored) {
		return
	}
	if _, ok := f.pending[installation]; !ok && len(f.pending) >= f.max {
		return // the bucket is behind: the next event brings it again
	}
	f.pending[installation] = c
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// makeRoom forgets an arbitrary half when memory is full; f.mu is held.
func (f *forgeCredentials) makeRoom() {
	if len(f.m) < f.max {
		return
	}
	n := 0
	for k := range f.m {
		if n >= f.max/2 {
			break
		}
		delete(f.m, k)
		n++
	}
}

// newer reports whether c should replace stored in the bucket: it is
// newer and differs, or is credentialRefresh newer.
func newer(c, stored ForgeCredential) bool {
	if !c.ReceivedAt.After(stored.ReceivedAt) {
		return false
	}
	return c.Token != stored.Token || c.APIBaseURL != stored.APIBaseURL || c.ReceivedAt.Sub(stored.ReceivedAt) >= credentialRefresh
}

// get returns installation's newest credential: from memory, read from
// the bucket on a miss or once credentialRecheck has passed. An error is
// ErrNoForgeCredential, or a failure to read or open the stored one when
// memory has none.
func (f *forgeCredentials) get(ctx context.Context, installation string) (ForgeCredential, error) {
	f.mu.Lock()
	e := f.m[installation]
	fresh := e != nil && (!f.persistent() || f.now().Sub(e.checked) < credentialRecheck)
	var c ForgeCredential
	if e != nil {
		c = e.c
	}
	f.mu.Unlock()
	if fresh || installation == "" {
		if c.Token == "" {
			return ForgeCredential{}, ErrNoForgeCredential
		}
		return c, nil
	}
	if !f.persistent() {
		return ForgeCredential{}, ErrNoForgeCredential
	}
	loaded, err := f.load(ctx, installation)
	switch {
	case err == nil && loaded.ReceivedAt.After(c.ReceivedAt):
		return loaded, nil
	case c.Token != "":
		if err != nil && !errors.Is(err, ErrNoForgeCredential) {
			f.log.Warn("ingest: the stored Forge credential cannot be read; using the one in memory", "installation", installation, "err", err)
		}
		return c, nil
	}
	return ForgeCredential{}, err
}

// load reads installation's credential from the bucket and records it.
func (f *forgeCredentials) load(ctx context.Context, installation string) (ForgeCredential, error) {
	ctx, cancel := context.WithTimeout(ctx, credentialTimeout)
	defer cancel()
	ent, err := f.store.Get(ctx, installation)
	if errors.Is(err, journal.ErrNotFound) {
		f.record(installation, ForgeCredential{}, 0)
		return ForgeCredential{}, ErrNoForgeCredential
	}
	if err != nil {
		return ForgeCredential{}, fmt.Errorf("read the Forge credential of %s: %w", installation, err)
	}
	c, err := f.open(installation, ent.Value)
	if err != nil {
		f.record(installation, ForgeCredential{}, ent.Revision) // read again after credentialRecheck
		return ForgeCredential{}, err
	}
	f.record(installation, c, ent.Revision)
	return c, nil
}

// record notes that the bucket holds stored at rev for installation (a
// zero stored: nothing, or nothing that opens), and keeps stored in memory
// when it is newer.
func (f *forgeCredentials) record(installation string, stored ForgeCredential, rev uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.m[installation]
	if e == nil {
		f.makeRoom()
		e = &credEntry{}
		f.m[installation] = e
	}
	e.stored, e.rev, e.checked = stored, rev, f.now()
	if stored.ReceivedAt.After(e.c.ReceivedAt) {
		e.c = stored
	}
	if p, ok := f.pending[installation]; ok && !newer(p, stored) {
		delete(f.pending, installation)
	}
}

// aadCredential binds a sealed credential to its installation: a value
// copied onto another installation's key does not open.
func aadCredential(installation string) []byte {
	return append([]byte("transferd forge credential v1\x00"), installation...)
}

func (f *forgeCredentials) seal(installation string, c ForgeCredential) []byte {
	b, _ := json.Marshal(sealedCredential(c))
	return []byte(f.keys.seal(aadCredential(installation), string(b)))
}

// open decrypts a stored value; the error wraps ErrSecretKey and never
// holds the value.
func (f *forgeCredentials) open(installation string, value []byte) (ForgeCredential, error) {
	pt, _, err := f.keys.open(aadCredential(installation), string(value))
	if err != nil {
		return ForgeCredential{}, fmt.Errorf("the Forge credential of %s: %w", installation, err)
	}
	var s sealedCredential
	if err := json.Unmarshal([]byte(pt), &s); err != nil || s.Token == "" {
		return ForgeCredential{}, fmt.Errorf("the Forge credential of %s: %w: malformed", installation, ErrSecretKey)
	}
	return ForgeCredential(s), nil
}

// run writes the pending credentials until ctx ends or close, then once
// more what is still pending. After a failure it waits (1 s doubling to
// credentialRetryMax) before writing again.
func (f *forgeCredentials) run(ctx context.Context) {
	defer close(f.done)
	retry := time.NewTimer(0)
	<-retry.C
	defer retry.Stop()
	var backoff time.Duration
	for {
		wake := f.wake
		if backoff > 0 {
			wake = nil // writes again once retry fires
		}
		select {
		case <-wake:
		case <-retry.C:
		case <-ctx.Done():
			f.last()
			return
		case <-f.stop:
			f.last()
			return
		}
		if err := f.flush(ctx); err != nil {
			backoff = min(max(2*backoff, time.Second), credentialRetryMax)
			f.log.Warn("ingest: could not store a Forge credential; retrying", "err", err, "retry", backoff)
			retry.Reset(backoff)
			continue
		}
		backoff = 0
	}
}

// last writes what is still pending when the writer stops.
func (f *forgeCredentials) last() {
	if err := f.flush(context.Background()); err != nil {
		f.log.Warn("ingest: could not store a Forge credential before stopping: the installation's next event brings it again", "err", err)
	}
}

// flush writes every pending credential and returns the first error; a
// failed one stays pending unless a newer one is.
func (f *forgeCredentials) flush(ctx context.Context) error {
	f.mu.Lock()
	batch := f.pending
	f.pending = map[string]ForgeCredential{}
	f.mu.Unlock()
	var first error
	for inst, c := range batch {
		if err := f.write(ctx, inst, c); err != nil {
			if first == nil {
				first = err
			}
			f.mu.Lock()
			if p, ok := f.pending[inst]; !ok || !p.ReceivedAt.After(c.ReceivedAt) {
				f.pending[inst] = c
			}
			f.mu.Unlock()
		}
	}
	return first
}

// write stores c for installation unless the bucket holds one as new (or
// the same one, fresh enough): compare and set on the revision, read
// again after a lost race.
func (f *forgeCredentials) write(ctx context.Context, installation string, c ForgeCredential) error {
	ctx, cancel := context.WithTimeout(ctx, credentialTimeout)
	defer cancel()
	f.mu.Lock()
	var rev uint64
	if e := f.m[installation]; e != nil {
		if e.rev != 0 && !newer(c, e.stored) {
			f.mu.Unlock()
			return nil // the bucket holds one as new
		}
		rev = e.rev
	}
	f.mu.Unlock()
	value := f.seal(installation, c)
	for attempt := 0; attempt < 8; attempt++ {
		if rev == 0 {
			ent, err := f.store.Get(ctx, installation)
			if errors.Is(err, journal.ErrNotFound) {
				r, err := f.store.Create(ctx, installation, value)
				if errors.Is(err, journal.ErrConflict) {
					continue
				}
				if err != nil {
					return fmt.Errorf("store the Forge credential of %s: %w", installation, err)
				}
				f.record(installation, c, r)
				return nil
			}
			if err != nil {
				return fmt.Errorf("store the Forge credential of %s: %w", installation, err)
			}
			old, err := f.open(installation, ent.Value)
			if err == nil && !newer(c, old) {
				f.record(installation, old, ent.Revision) // as new there already
				return nil
			}
			if err != nil {
				f.log.Warn("ingest: replacing a stored Forge credential that does not open", "installation", installation, "err", err)
			}
			rev = ent.Revision
		}
		r, err := f.store.Update(ctx, installation, value, rev)
		if errors.Is(err, journal.ErrConflict) {
			rev = 0
			continue
		}
		if err != nil {
			return fmt.Errorf("store the Forge credential of %s: %w", installation, err)
		}
		f.record(installation, c, r)
		return nil
	}
	return fmt.Errorf("store the Forge credential of %s: %w", installation, journal.ErrConflict)
}

// close writes what is pending and stops the writer.
func (f *forgeCredentials) close() {
	if !f.persistent() {
		return
	}
	f.closeOnce.Do(func() { close(f.stop) })
	<-f.done
}

// ForgeCredential returns the credential the newest accepted event of the
// Forge installation carried (see ForgeCredential), and whether there is
// one: LoadForgeCredential without its error, which it logs (never the
// token). Not for the request path: it may read the bucket.
func (h *Handler) ForgeCredential(installationID string) (ForgeCredential, bool) {
	c, err := h.LoadForgeCredential(context.Background(), installationID)
	if err != nil && !errors.Is(err, ErrNoForgeCredential) {
		h.cfg.Logger.Warn("ingest: no usable Forge credential", "installation", installationID, "err", err)
	}
	return c, err == nil
}

// LoadForgeCredential returns the Forge installation's newest credential:
// kept in memory, or with Config.ForgeCredentials read from the bucket
// when memory has none (after a restart; or received by another instance)
// or has not checked it for a minute. Errors: ErrNoForgeCredential; one
// wrapping ErrSecretKey when the stored one does not open with the
// secrets keys (wrong key, another installation's, tampered with); one
// wrapping journal.ErrUnavailable when the bucket cannot be read. A
// credential in memory is returned even when the bucket fails.
func (h *Handler) LoadForgeCredential(ctx context.Context, installationID string) (ForgeCredential, error) {
	return h.forgeCreds.get(ctx, installationID)
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
