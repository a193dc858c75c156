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

	"github.com/nats-io/nats.go/jetstream"

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
type Registry struct {
	kv jetstream.KeyValue

	mu      sync.RWMutex
	tenants map[string]Tenant
	watch   jetstream.KeyWatcher
	done    chan struct{}
}

// OpenRegistry loads the registry from kv and keeps it current until Close.
func OpenRegistry(ctx context.Context, kv jetstream.KeyValue) (*Registry, error) {
	w, err := kv.WatchAll(context.Background())
	if err != nil {
		return nil, fmt.Errorf("watch tenants: %w", err)
	}
	r := &Registry{kv: kv, tenants: map[string]Tenant{}, watch: w, done: make(chan struct{})}
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

func (r *Registry) apply(e jetstream.KeyValueEntry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e.Operation() != jetstream.KeyValuePut {
		for k, t := range r.tenants {
			if tenantKey(k) == e.Key() {
				delete(r.tenants, t.ClientKey)
			}
		}
		return
	}
	var t Tenant
	if json.Unmarshal(e.Value(), &t) == nil && t.ClientKey != "" {
		r.tenants[t.ClientKey] = t
	}
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
	r.mu.RUnlock()
	if ok {
		return t, nil
	}
	e, err := r.kv.Get(ctx, tenantKey(clientKey))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return Tenant{}, fmt.Errorf("%w %q", ErrUnknownTenant, clientKey)
	}
	if err != nil {
		return Tenant{}, fmt.Errorf("tenant %q: %w: %w", clientKey, journal.ErrUnavailable, err)
	}
	r.apply(e)
	if err := json.Unmarshal(e.Value(), &t); err != nil {
		return Tenant{}, fmt.Errorf("tenant %q: %w", clientKey, err)
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
	b, err := json.Marshal(t)
	if err != nil {
		return err
	}
	if _, err := r.kv.Put(ctx, tenantKey(t.ClientKey), b); err != nil {
		return fmt.Errorf("store tenant %q: %w: %w", t.ClientKey, journal.ErrUnavailable, err)
	}
	r.mu.Lock()
	r.tenants[t.ClientKey] = t
	r.mu.Unlock()
	return nil
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
