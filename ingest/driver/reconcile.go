package driver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/engine/journal"
	"github.com/transferd/transferd/ingest"
	"github.com/transferd/transferd/ingest/platform"
	"github.com/transferd/transferd/projections"
)

// TenantLister lists the Connect tenants (*ingest.Registry).
type TenantLister interface {
	Tenants
	List() []ingest.Tenant
}

// ReconcileConfig configures a Reconciler.
type ReconcileConfig struct {
	Store   *projections.Store
	Tenants TenantLister
	// ForgeCredential finds the newest apiBaseUrl and app system token of
	// a Forge installation (ingest.Handler.ForgeCredential); nil leaves
	// Forge transfers out.
	ForgeCredential func(installationID string) (ingest.ForgeCredential, bool)
	// Client calls the platform as the Connect app (its AppKey signs).
	Client *platform.Client
	// Interval between passes; default 5 minutes.
	Interval time.Duration
	// Journal, when set, receives an upload-discovered event (source app)
	// for each missing upload, named by transferId and key so repeated
	// passes and instances store one: it becomes the transfer's upload
	// (work, and a settle-done waits for it). Nil only shows them.
	Journal *journal.Journal
	Logger  *slog.Logger
	Now     func() time.Time
}

// Reconciliation is what the last reconciliation pass found: what the
// platform knows and the journal (through the projection) does not, as
// GET /v1/reconciliation shows it.
type Reconciliation struct {
	// At is when the last pass ended; zero before the first.
	At     time.Time `json:"at"`
	Passes int       `json:"passes"`
	// Tenants and Transfers count what the last pass compared: Connect
	// tenants asked for transfer/recent, active transfers whose app-data
	// list was read.
	Tenants   int `json:"tenants"`
	Transfers int `json:"transfers"`
	// UnknownTransfers are transfers the platform lists as recent (in
	// progress) of which the journal holds no event: their webhooks never
	// arrived.
	UnknownTransfers []UnknownTransfer `json:"unknownTransfers"`
	// MissingUploads are uploads the platform lists for an active transfer
	// whose app-data-uploaded webhook never arrived (also once journaled
	// as upload-discovered: they stay here until the webhook comes).
	MissingUploads []MissingUpload `json:"missingUploads"`
	// Errors are the calls that failed in the last pass (which tenant or
	// transfer, and why), without secrets.
	Errors []string `json:"errors,omitempty"`
}

// UnknownTransfer is a transfer only the platform knows.
type UnknownTransfer struct {
	TransferID string `json:"transferId"`
	// Tenant is the Connect clientKey of the site that listed it.
	Tenant string `json:"tenant"`
	// FirstSeenAt is the first pass that found it missing.
	FirstSeenAt time.Time `json:"firstSeenAt"`
}

// MissingUpload is an upload only the platform knows.
type MissingUpload struct {
	TransferID  string    `json:"transferId"`
	S3Key       string    `json:"s3Key"`
	Label       string    `json:"label,omitempty"`
	FirstSeenAt time.Time `json:"firstSeenAt"`
}

// Reconciler compares, at start and every Interval, the platform's recent
// transfers (per Connect tenant) and the app-data list of every active
// transfer with the projection, and keeps what only the platform knows.
// It calls only the platform's GET routes; with a Journal it appends what
// it finds missing as upload-discovered events.
type Reconciler struct {
	cfg ReconcileConfig

	mu   sync.Mutex
	last Reconciliation
}

// NewReconciler returns a Reconciler; Run starts it.
func NewReconciler(cfg ReconcileConfig) (*Reconciler, error) {
	if cfg.Store == nil || cfg.Tenants == nil || cfg.Client == nil {
		return nil, errors.New("driver: reconciliation needs the store, tenants and client")
	}
	if cfg.Client.AppKey == "" {
		return nil, errors.New("driver: reconciliation needs the Connect app key (it signs every call)")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 5 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Reconciler{cfg: cfg, last: Reconciliation{UnknownTransfers: []UnknownTransfer{}, MissingUploads: []MissingUpload{}}}, nil
}

// Run makes a pass at once and then every Interval until ctx ends.
func (r *Reconciler) Run(ctx context.Context) {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		r.Pass(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Last returns a copy of what the last pass found.
func (r *Reconciler) Last() Reconciliation {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.last
	c.UnknownTransfers = slices.Clone(r.last.UnknownTransfers)
	c.MissingUploads = slices.Clone(r.last.MissingUploads)
	c.Errors = slices.Clone(r.last.Errors)
	return c
}

// Pass compares once and returns what it found (Last afterwards).
func (r *Reconciler) Pass(ctx context.Context) Reconciliation {
	now := r.cfg.Now().UTC()
	prev := r.Last()
	seenT := map[string]time.Time{}
	for _, u := range prev.UnknownTransfers {
		seenT[u.TransferID] = u.FirstSeenAt
	}
	seenU := map[[2]string]time.Time{}
	for _, u := range prev.MissingUploads {
		seenU[[2]string{u.TransferID, u.S3Key}] = u.FirstSeenAt
	}
	first := func(m time.Time) time.Time {
		if m.IsZero() {
			return now
		}
		return m
	}
	out := Reconciliation{Passes: prev.Passes + 1, UnknownTransfers: []UnknownTransfer{}, MissingUploads: []MissingUpload{}}
	fail := func(format string, a ...any) {
		if len(out.Errors) < 100 {
			out.Errors = append(out.Errors, fmt.Sprintf(format, a...))
		}
	}

	// The platform's recent transfers, per installed Connect tenant.
	for _, ten := range r.cfg.Tenants.List() {
		if ctx.Err() != nil {
			return prev
		}
		if !ten.Active() || ten.BaseURL == "" || ten.SharedSecret == "" {
			continue
		}
		out.Tenants++
		recent, err := r.cfg.Client.RecentTransfers(ctx, platform.ConnectSite{BaseURL: ten.BaseURL, Secret: []byte(ten.SharedSecret)})
		if err != nil {
			fail("transfer/recent of tenant %s: %v", ten.ClientKey, err)
			// Keep what an earlier pass found there, unless it arrived since.
			for _, u := range prev.UnknownTransfers {
				if _, err := r.cfg.Store.Transfer(u.TransferID); u.Tenant == ten.ClientKey && errors.Is(err, projections.ErrNotFound) {
					out.UnknownTransfers = append(out.UnknownTransfers, u)
				}
			}
			continue
		}
		for _, rt := range recent {
			_, err := r.cfg.Store.Transfer(rt.TransferID)
			switch {
			case errors.Is(err, projections.ErrNotFound):
				out.UnknownTransfers = append(out.UnknownTransfers, UnknownTransfer{TransferID: rt.TransferID, Tenant: ten.ClientKey, FirstSeenAt: first(seenT[rt.TransferID])})
			case err != nil:
				fail("transfer %s: %v", rt.TransferID, err)
			}
		}
	}

	// The app-data list of every active transfer.
	for _, p := range engine.Phases {
		if p == engine.PhaseSettled {
			continue
		}
		for cursor := ""; ; {
			page, err := r.cfg.Store.List(projections.Filter{Phase: p, Cursor: cursor, Limit: projections.MaxLimit})
			if err != nil {
				fail("list %s transfers: %v", p, err)
				break
			}
			for _, t := range page.Transfers {
				if ctx.Err() != nil {
					return prev
				}
				if t.Settled != nil || t.AppSettled != nil {
					continue // its data is gone
				}
				target, ok := r.target(ctx, t)
				if !ok {
					continue
				}
				out.Transfers++
				list, err := r.cfg.Client.AppDataList(ctx, target, t.TransferID)
				if err != nil {
					if errors.Is(err, platform.ErrSettled) || errors.Is(err, platform.ErrNotFound) {
						continue
					}
					fail("data list of %s: %v", t.TransferID, err)
					// Keep what an earlier pass found, unless it arrived since.
					for _, u := range prev.MissingUploads {
						if u.TransferID == t.TransferID && !slices.ContainsFunc(t.Uploads, func(x engine.Upload) bool { return x.Key == u.S3Key && x.ReceivedAt != nil }) {
							out.MissingUploads = append(out.MissingUploads, u)
						}
					}
					continue
				}
				for _, d := range list {
					i := slices.IndexFunc(t.Uploads, func(u engine.Upload) bool { return u.Key == d.S3Key })
					if d.S3Key == "" || i >= 0 && t.Uploads[i].ReceivedAt != nil {
						continue // its webhook arrived
					}
					k := [2]string{t.TransferID, d.S3Key}
					out.MissingUploads = append(out.MissingUploads, MissingUpload{TransferID: t.TransferID, S3Key: d.S3Key, Label: d.Label, FirstSeenAt: first(seenU[k])})
					if i >= 0 && t.Uploads[i].Discovered {
						continue // journaled by an earlier pass
					}
					if err := r.discovered(ctx, t, d); err != nil {
						fail("journal the upload %s of %s: %v", d.S3Key, t.TransferID, err)
					}
				}
			}
			if cursor = page.NextCursor; cursor == "" {
				break
			}
		}
	}
	sort.Slice(out.UnknownTransfers, func(i, j int) bool { return out.UnknownTransfers[i].TransferID < out.UnknownTransfers[j].TransferID })
	sort.Slice(out.MissingUploads, func(i, j int) bool {
		a, b := out.MissingUploads[i], out.MissingUploads[j]
		return a.TransferID < b.TransferID || a.TransferID == b.TransferID && a.S3Key < b.S3Key
	})
	out.At = r.cfg.Now().UTC()
	if n := len(out.UnknownTransfers) + len(out.MissingUploads); n > 0 && (len(out.UnknownTransfers) != len(prev.UnknownTransfers) || len(out.MissingUploads) != len(prev.MissingUploads)) {
		r.cfg.Logger.Warn("reconciliation: the platform knows more than the journal", "unknownTransfers", len(out.UnknownTransfers),
			"missingUploads", len(out.MissingUploads))
	}
	r.mu.Lock()
	r.last = out
	r.mu.Unlock()
	return out
}

// target is where t's app data is listed: its Connect site (only its own
// tenant's), or its Forge installation's newest credential.
func (r *Reconciler) target(ctx context.Context, t *engine.Transfer) (platform.Target, bool) {
	switch t.Source {
	case engine.SourceConnect:
		ten, err := r.cfg.Tenants.Get(ctx, t.Issuer)
		if err != nil || !ten.Active() || ten.BaseURL == "" || ten.SharedSecret == "" || ten.ClientKey != t.Issuer {
			return nil, false
		}
		return platform.ConnectSite{BaseURL: ten.BaseURL, Secret: []byte(ten.SharedSecret)}, true
	case engine.SourceForge:
		if r.cfg.ForgeCredential == nil {
			return nil, false
		}
		c, ok := r.cfg.ForgeCredential(t.Issuer)
		if !ok || c.Token == "" || c.APIBaseURL == "" {
			return nil, false
		}
		return platform.ForgeInstallation{APIBaseURL: c.APIBaseURL, Token: c.Token}, true
	}
	return nil, false
}

// discovered appends the upload-discovered event of d, an upload of t the
// platform lists, when a Journal is set. Its id is a digest of transferId
// and key: every pass and instance writes the same event.
func (r *Reconciler) discovered(ctx context.Context, t *engine.Transfer, d platform.AppData) error {
	if r.cfg.Journal == nil {
		return nil
	}
	sum := sha256.Sum256([]byte(t.TransferID + "\x00" + d.S3Key))
	payload, err := json.Marshal(struct {
		EventType  string `json:"eventType"`
		TransferID string `json:"transferId"`
		MessageID  string `json:"messageId"`
		Key        string `json:"key"`
		Label      string `json:"label,omitempty"`
	}{string(engine.KindUploadDiscovered), t.TransferID, "disc-" + hex.EncodeToString(sum[:16]), d.S3Key, d.Label})
	if err != nil {
		return err
	}
	e, err := engine.Parse(engine.SourceApp, payload)
	if err != nil {
		return err
	}
	e.Issuer, e.ReceivedAt = t.Issuer, r.cfg.Now().UTC()
	return appendRetrying(ctx, r.cfg.Journal, e, r.cfg.Logger)
}
