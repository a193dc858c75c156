package ingest

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/transferd/transferd/engine/journal"
)

// Tenant is one Connect installation, as the installed callback describes it.
type Tenant struct {
	ClientKey     string     `json:"clientKey"`
	SharedSecret  string     `json:"sharedSecret"`
	BaseURL       string     `json:"baseUrl"`
	ProductType   string     `json:"productType,omitempty"`
	AppKey        string     `json:"key,omitempty"`
	CloudID       string     `json:"cloudId,omitempty"`
	InstalledAt   time.Time  `json:"installedAt"`
	UninstalledAt *time.Time `json:"uninstalledAt,omitempty"`
}

// Active reports whether t is installed.
func (t Tenant) Active() bool { return t.UninstalledAt == nil }

// Registry is the tenant registry, kept in the KV bucket transferd_tenants so
// that every instance on the same NATS shares it. Each instance watches the
// bucket and answers lookups from memory, falling back to the bucket for a
// tenant it has not seen yet.
//
// With WithSecretKeys, shared secrets are stored sealed (see SecretKeys):
// the bucket's records hold "sealedSecret" and no "sharedSecret". Records
// stored in plaintext (before keys were configured) are still read, and
// sealed when next written or by Rekey.
type Registry struct {
	kv   *journal.Tenants
	keys *SecretKeys // nil stores secrets in plaintext

	mu      sync.RWMutex
	tenants map[string]Tenant
	stored  map[string]storedAt // by clientKey: how and at which revision each record is stored
	broken  map[string]error    // by clientKey: records whose secret does not open
	watch   *journal.TenantWatcher
	done    chan struct{}
}

// storedAt is a record's revision and the key id its secret is sealed
// with ("" for plaintext).
type storedAt struct {
	rev   uint64
	keyID string
}

// record is a tenant as stored in the bucket.
type record struct {
	Tenant
	SharedSecret string `json:"sharedSecret,omitempty"` // plaintext: written only without keys
	SealedSecret string `json:"sealedSecret,omitempty"`
}

// RegistryOption configures OpenRegistry.
type RegistryOption func(*Registry)

// WithSecretKeys seals shared secrets at rest with keys.
func WithSecretKeys(keys *SecretKeys) RegistryOption {
	return func(r *Registry) { r.keys = keys }
}

// OpenRegistry loads the registry from kv and keeps it current until Close.
// A record whose secret does not open with the configured keys (or one
// sealed, without keys) fails it with an error wrapping ErrSecretKey.
func OpenRegistry(ctx context.Context, kv *journal.Tenants, opts ...RegistryOption) (*Registry, error) {
	w, err := kv.Watch(context.Background())
	if err != nil {
		return nil, fmt.Errorf("watch tenants: %w", err)
	}
	r := &Registry{kv: kv, tenants: map[string]Tenant{}, stored: map[string]storedAt{}, broken: map[string]error{},
		watch: w, done: make(chan struct{})}
	for _, o := range opts {
		o(r)
	}
	initial := true
	for initial {
		select {
		case e, ok := <-w.Updates():
			if !ok || e == nil { // nil marks the end of the initial values
				initial = false
				break
			}
			r.apply(e)
		case <-ctx.Done():
			w.Stop()
			return nil, ctx.Err()
		}
	}
	if n := len(r.broken); n > 0 {
		w.Stop()
		for _, err := range r.broken {
			return nil, fmt.Errorf("tenants: %d shared secrets cannot be decrypted (wrong or missing secrets key?): %w", n, err)
		}
	}
	go r.follow()
	return r, nil
}

func (r *Registry) follow() {
	defer close(r.done)
	for e := range r.watch.Updates() {
		if e != nil {
			r.apply(e)
		}
	}
}

func (r *Registry) apply(e *journal.TenantEntry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e.Deleted {
		for k := range r.tenants {
			if tenantKey(k) == e.Key {
				delete(r.tenants, k)
				delete(r.stored, k)
			}
		}
		for k := range r.broken {
			if tenantKey(k) == e.Key {
				delete(r.broken, k)
			}
		}
		return
	}
	r.applyLocked(e)
}

// applyLocked records the tenant e holds and returns it; r.mu is held.
func (r *Registry) applyLocked(e *journal.TenantEntry) (Tenant, error) {
	t, keyID, err := r.decode(e.Value)
	if t.ClientKey == "" {
		return t, err
	}
	if err != nil {
		delete(r.tenants, t.ClientKey)
		delete(r.stored, t.ClientKey)
		r.broken[t.ClientKey] = err
		return t, err
	}
	delete(r.broken, t.ClientKey)
	r.tenants[t.ClientKey] = t
	r.stored[t.ClientKey] = storedAt{rev: e.Revision, keyID: keyID}
	return t, nil
}

// decode parses a stored record and opens its secret; keyID is the key it
// was sealed with, "" for a plaintext record.
func (r *Registry) decode(b []byte) (t Tenant, keyID string, err error) {
	var rec record
	if err := json.Unmarshal(b, &rec); err != nil {
		return Tenant{}, "", err
	}
	t = rec.Tenant
	switch {
	case rec.SealedSecret == "":
		t.SharedSecret = rec.SharedSecret
	case r.keys == nil:
		return t, "", fmt.Errorf("tenant %q: %w: it is sealed and no secrets key is configured", t.ClientKey, ErrSecretKey)
	default:
		if t.SharedSecret, keyID, err = r.keys.Open(t.ClientKey, rec.SealedSecret); err != nil {
			return t, keyID, fmt.Errorf("tenant %q: %w", t.ClientKey, err)
		}
	}
	return t, keyID, nil
}

// encode is t as stored: its secret sealed with the current key, when
// there are keys.
func (r *Registry) encode(t Tenant) ([]byte, string, error) {
	rec := record{Tenant: t}
	rec.Tenant.SharedSecret = ""
	keyID := ""
	if r.keys == nil {
		rec.SharedSecret = t.SharedSecret
	} else {
		rec.SealedSecret, keyID = r.keys.Seal(t.ClientKey, t.SharedSecret), r.keys.Current()
	}
	b, err := json.Marshal(rec)
	return b, keyID, err
}

// Close stops following the bucket.
func (r *Registry) Close() error {
	r.watch.Stop()
	<-r.done
	return nil
}

// Get returns the tenant clientKey, installed or not.
func (r *Registry) Get(ctx context.Context, clientKey string) (Tenant, error) {
	r.mu.RLock()
	t, ok := r.tenants[clientKey]
	broken := r.broken[clientKey]
	r.mu.RUnlock()
	if ok {
		return t, nil
	}
	if broken != nil {
		return Tenant{}, broken
	}
	e, err := r.kv.Get(ctx, tenantKey(clientKey))
	if errors.Is(err, journal.ErrNotFound) {
		return Tenant{}, fmt.Errorf("%w %q", ErrUnknownTenant, clientKey)
	}
	if err != nil {
		return Tenant{}, fmt.Errorf("tenant %q: %w", clientKey, err)
	}
	r.mu.Lock()
	t, err = r.applyLocked(&e)
	r.mu.Unlock()
	if err != nil {
		return Tenant{}, fmt.Errorf("tenant %q: %w", clientKey, err)
	}
	if t.ClientKey != clientKey {
		return Tenant{}, fmt.Errorf("tenant %q: the record names %q", clientKey, t.ClientKey)
	}
	return t, nil
}

// SharedSecret returns the secret of an installed tenant, or an error
// wrapping ErrUnknownTenant.
func (r *Registry) SharedSecret(ctx context.Context, clientKey string) ([]byte, error) {
	t, err := r.Get(ctx, clientKey)
	if err != nil {
		return nil, err
	}
	if !t.Active() {
		return nil, fmt.Errorf("%w %q: uninstalled", ErrUnknownTenant, clientKey)
	}
	return []byte(t.SharedSecret), nil
}

// previousSecrets answers with a tenant's last secret even after an
// uninstall: re-installs are signed with it.
type previousSecrets struct{ r *Registry }

func (p previousSecrets) SharedSecret(ctx context.Context, clientKey string) ([]byte, error) {
	t, err := p.r.Get(ctx, clientKey)
	if err != nil {
		return nil, err
	}
	return []byte(t.SharedSecret), nil
}

// Put stores t, replacing any installation with the same clientKey.
func (r *Registry) Put(ctx context.Context, t Tenant) error {
	if t.ClientKey == "" || t.SharedSecret == "" {
		return errors.New("tenant needs a clientKey and a sharedSecret")
	}
	b, keyID, err := r.encode(t)
	if err != nil {
		return err
	}
	rev, err := r.kv.Put(ctx, tenantKey(t.ClientKey), b)
	if err != nil {
		return fmt.Errorf("store tenant %q: %w", t.ClientKey, err)
	}
	r.mu.Lock()
	if r.stored[t.ClientKey].rev < rev {
		r.tenants[t.ClientKey] = t
		r.stored[t.ClientKey] = storedAt{rev: rev, keyID: keyID}
		delete(r.broken, t.ClientKey)
	}
	r.mu.Unlock()
	return nil
}

// KeyID is the id of the key that seals secrets, "" without keys.
func (r *Registry) KeyID() string {
	if r.keys == nil {
		return ""
	}
	return r.keys.Current()
}

// Rekey seals again, with the current key, every secret stored in
// plaintext or with another key, and returns how many it rewrote. A record
// written meanwhile by someone else is left as it is (it was sealed with
// their current key); run Rekey again once every instance has the new key.
func (r *Registry) Rekey(ctx context.Context) (int, error) {
	if r.keys == nil {
		return 0, errors.New("rekey: no secrets key configured")
	}
	type todo struct {
		t   Tenant
		rev uint64
	}
	var list []todo
	r.mu.RLock()
	for k, t := range r.tenants {
		if s := r.stored[k]; s.keyID != r.keys.Current() {
			list = append(list, todo{t, s.rev})
		}
	}
	r.mu.RUnlock()
	n := 0
	for _, x := range list {
		b, keyID, err := r.encode(x.t)
		if err != nil {
			return n, err
		}
		rev, err := r.kv.Update(ctx, tenantKey(x.t.ClientKey), b, x.rev)
		if errors.Is(err, journal.ErrConflict) {
			continue // written meanwhile
		}
		if err != nil {
			return n, fmt.Errorf("rekey tenant %q: %w", x.t.ClientKey, err)
		}
		r.mu.Lock()
		if r.stored[x.t.ClientKey].rev < rev {
			r.stored[x.t.ClientKey] = storedAt{rev: rev, keyID: keyID}
		}
		r.mu.Unlock()
		n++
	}
	return n, nil
}

// Uninstall marks clientKey uninstalled at at; its secret is kept for a
// signed re-install.
func (r *Registry) Uninstall(ctx context.Context, clientKey string, at time.Time) error {
	t, err := r.Get(ctx, clientKey)
	if err != nil {
		return err
	}
	at = at.UTC()
	t.UninstalledAt = &at
	return r.Put(ctx, t)
}

// Remove forgets clientKey entirely.
func (r *Registry) Remove(ctx context.Context, clientKey string) error {
	if _, err := r.Get(ctx, clientKey); err != nil {
		return err
	}
	if err := r.kv.Delete(ctx, tenantKey(clientKey)); err != nil {
		return fmt.Errorf("remove tenant %q: %w", clientKey, err)
	}
	r.mu.Lock()
	delete(r.tenants, clientKey)
	delete(r.stored, clientKey)
	r.mu.Unlock()
	return nil
}

// List returns every tenant, installed or not, by clientKey.
func (r *Registry) List() []Tenant {
	r.mu.RLock()
	out := make([]Tenant, 0, len(r.tenants))
	for _, t := range r.tenants {
		out = append(out, t)
	}
	r.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ClientKey < out[j].ClientKey })
	return out
}

// tenantKey is clientKey as a KV key: itself when it only uses the
// characters keys allow, else "hex." and its hex encoding.
func tenantKey(clientKey string) string {
	ok := clientKey != "" && !strings.HasPrefix(clientKey, "hex.") &&
		!strings.HasPrefix(clientKey, ".") && !strings.HasSuffix(clientKey, ".")
	for i := 0; ok && i < len(clientKey); i++ {
		c := clientKey[i]
		ok = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-/_=.", c) >= 0
	}
	if ok && !strings.Contains(clientKey, "..") {
		return clientKey
	}
	return "hex." + hex.EncodeToString([]byte(clientKey))
}
