package driver

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/engine/journal"
	"github.com/transferd/transferd/projections"
)

// Work hands the uploads of unsettled transfers to importers and records
// their reports. An upload (app-data-uploaded or event-file-list-uploaded)
// is one unit of work, keyed by (transfer, upload key): the fold's set of
// uploads, so an upload announced twice is still one unit. Its state is
// the fold's Upload.Work, the greatest upload-reported event of it, so
// the queue survives restarts with the journal:
//
//   - no report, or requeued: claimable (attempt = last attempt + 1);
//   - failed, retryable: claimable again after a backoff from the report
//     (RetryBase doubling up to RetryMax);
//   - failed, final (a dead letter: not retryable, or MaxAttempts reached):
//     listed by DeadLetters until Requeue;
//   - done: finished.
//
// A claim is a lease held in memory for Lease: the upload is handed to no
// one else meanwhile. A lease that runs out without a report is recorded
// as a failed, retryable attempt (by transferd), so an importer that dies
// counts towards MaxAttempts. Leases are per process: after a restart, or
// with several instances, an upload may be handed out twice; importers
// must be idempotent (the fold keeps the greatest report).
//
// Tenancy: every method takes the caller's tenant (a Connect clientKey or
// Forge installationId); "" is partner-wide. A scoped caller sees only
// its tenant's work, and a report or requeue on another tenant's transfer
// is ErrTenantMismatch.
type Work struct {
	cfg WorkConfig
	log *slog.Logger

	mu     sync.Mutex
	leases map[string]*lease // by leaseKey
}

// WorkConfig configures a Work.
type WorkConfig struct {
	Journal *journal.Journal
	Store   *projections.Store
	// Lease is how long a claim is held; default 5 minutes.
	Lease time.Duration
	// MaxAttempts bounds the attempts of an upload; default 5.
	MaxAttempts int
	// RetryBase and RetryMax bound the backoff after a retryable
	// failure; defaults 30 seconds and 15 minutes.
	RetryBase, RetryMax time.Duration
	Logger              *slog.Logger
	Now                 func() time.Time
}

// Errors of Work; test them with errors.Is.
var (
	ErrNotFound       = errors.New("work: no such transfer or upload")
	ErrTenantMismatch = errors.New("work: the transfer belongs to another tenant")
	ErrInvalid        = errors.New("work: invalid request")
	ErrConflict       = errors.New("work: the upload is not in a state that allows it")
)

// Item is an upload handed to an importer.
type Item struct {
	TransferID string        `json:"transferId"`
	Tenant     string        `json:"tenant"`
	Source     engine.Source `json:"source"`
	Key        string        `json:"key"`
	Label      string        `json:"label"`
	Kind       string        `json:"kind,omitempty"`
	Attempt    int           `json:"attempt"`
	Lease      string        `json:"lease"`
	LeaseUntil time.Time     `json:"leaseUntil"`
}

// WorkReport is an importer's report on an upload.
type WorkReport struct {
	Status    string `json:"status"` // done or failed
	Retryable bool   `json:"retryable,omitempty"`
	Message   string `json:"message,omitempty"`
	// Attempt is the claim's attempt; 0 takes the open lease's, or the
	// next one.
	Attempt int `json:"attempt,omitempty"`
}

// DeadLetter is an upload that failed for good.
type DeadLetter struct {
	TransferID string            `json:"transferId"`
	Tenant     string            `json:"tenant"`
	Source     engine.Source     `json:"source"`
	Key        string            `json:"key"`
	Label      string            `json:"label"`
	Work       engine.UploadWork `json:"work"`
}

type lease struct {
	id       string
	attempt  int
	until    time.Time
	reported bool // a report of attempt was appended; the fold may lag
}

// NewWork returns a Work.
func NewWork(cfg WorkConfig) (*Work, error) {
	if cfg.Journal == nil || cfg.Store == nil {
		return nil, errors.New("work: the journal and store are required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.Lease, 5*time.Minute)
	def(&cfg.RetryBase, 30*time.Second)
	def(&cfg.RetryMax, 15*time.Minute)
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 5
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Work{cfg: cfg, log: cfg.Logger, leases: map[string]*lease{}}, nil
}

func leaseKey(transferID, key string) string { return transferID + "\x00" + key }

// backoff is the wait after the n-th failed attempt.
func (w *Work) backoff(n int) time.Duration {
	return min(w.cfg.RetryBase<<min(max(n-1, 0), 20), w.cfg.RetryMax)
}

// claimable reports whether u can be handed out at now, and its attempt.
func (w *Work) claimable(u *engine.Upload, now time.Time) (int, bool) {
	if !u.Announced() { // only reported, never announced nor discovered
		return 0, false
	}
	switch wk := u.Work; {
	case wk == nil:
		return 1, true
	case wk.Status == engine.WorkRequeued:
		return wk.Attempt + 1, true
	case wk.Status == engine.WorkFailed && !wk.Final:
		return wk.Attempt + 1, !now.Before(wk.At.Add(w.backoff(wk.Attempt)))
	}
	return 0, false
}

// each calls fn for every unsettled transfer of tenant ("" for all).
func (w *Work) each(tenant string, fn func(*engine.Transfer) (stop bool, err error)) error {
	for _, p := range engine.Phases {
		if p == engine.PhaseSettled {
			continue
		}
		cursor := ""
		for {
			page, err := w.cfg.Store.List(projections.Filter{Phase: p, Cursor: cursor, Limit: projections.MaxLimit})
			if err != nil {
				return fmt.Errorf("work: list %s transfers: %w", p, err)
			}
			for _, t := range page.Transfers {
				if t.Settled != nil || t.AppSettled != nil || (tenant != "" && t.Issuer != tenant) {
					continue
				}
				if stop, err := fn(t); stop || err != nil {
					return err
				}
			}
			if cursor = page.NextCursor; cursor == "" {
				break
			}
		}
	}
	return nil
}

// Claim leases the next claimable upload of tenant's transfers ("" for
// any tenant), oldest upload first within a transfer; nil when there is
// none.
func (w *Work) Claim(ctx context.Context, tenant string) (*Item, error) {
	now := w.cfg.Now()
	var item *Item
	var expired []func() error
	err := w.each(tenant, func(t *engine.Transfer) (bool, error) {
		w.mu.Lock()
		defer w.mu.Unlock()
		for i := range t.Uploads {
			u := &t.Uploads[i]
			lk := leaseKey(t.TransferID, u.Key)
			attempt, ok := w.claimable(u, now)
			if l := w.leases[lk]; l != nil {
				switch {
				case u.Work != nil && u.Work.Attempt >= l.attempt:
					delete(w.leases, lk) // the fold has the lease's outcome
				case l.reported:
					continue // the report is on its way to the fold
				case now.Before(l.until):
					continue // leased
				default:
					// The lease ran out without a report: a failed attempt.
					l.reported = true
					tt, key, n, since := t, u.Key, l.attempt, sinceOf(u.Work)
					expired = append(expired, func() error {
						_, err := w.record(ctx, tt, key, engine.UploadWork{
							Status: engine.WorkFailed, Attempt: n, Final: n-since >= w.cfg.MaxAttempts, Since: since,
							Message: "lease expired without a report", By: "transferd",
						}, "lease-"+strconv.Itoa(n))
						return err
					})
					continue
				}
			}
			if !ok {
				continue
			}
			var id [12]byte
			rand.Read(id[:])
			l := &lease{id: hex.EncodeToString(id[:]), attempt: attempt, until: now.Add(w.cfg.Lease)}
			w.leases[lk] = l
			item = &Item{
				TransferID: t.TransferID, Tenant: t.Issuer, Source: t.Source, Key: u.Key, Label: u.Label, Kind: u.Kind,
				Attempt: attempt, Lease: l.id, LeaseUntil: l.until.UTC(),
			}
			return true, nil
		}
		return false, nil
	})
	for _, f := range expired {
		if err := f(); err != nil {
			w.log.Warn("work: recording an expired lease", "err", err)
		}
	}
	return item, err
}

// transfer reads transferID's state and checks tenant may act on it.
func (w *Work) transfer(tenant, transferID, key string) (*engine.Transfer, *engine.Upload, error) {
	b, err := w.cfg.Store.TransferJSON(transferID)
	if errors.Is(err, projections.ErrNotFound) {
		return nil, nil, fmt.Errorf("%w: transfer %s", ErrNotFound, transferID)
	}
	if err != nil {
		return nil, nil, err
	}
	t, err := engine.UnmarshalTransfer(b)
	if err != nil {
		return nil, nil, err
	}
	if tenant != "" && t.Issuer != tenant {
		return nil, nil, fmt.Errorf("%w: transfer %s", ErrTenantMismatch, transferID)
	}
	i := sort.Search(len(t.Uploads), func(i int) bool { return t.Uploads[i].Key >= key })
	if i == len(t.Uploads) || t.Uploads[i].Key != key || !t.Uploads[i].Announced() {
		return nil, nil, fmt.Errorf("%w: upload %q of transfer %s", ErrNotFound, key, transferID)
	}
	return t, &t.Uploads[i], nil
}

// Report records r on the upload key of transferID and returns the work
// as recorded: failed is final when not retryable or at MaxAttempts.
func (w *Work) Report(ctx context.Context, tenant, transferID, key string, r WorkReport) (engine.UploadWork, error) {
	if r.Status != engine.WorkDone && r.Status != engine.WorkFailed {
		return engine.UploadWork{}, fmt.Errorf("%w: status must be done or failed", ErrInvalid)
	}
	if r.Attempt < 0 || r.Attempt > 1_000_000 {
		return engine.UploadWork{}, fmt.Errorf("%w: attempt must be 1 to 1000000", ErrInvalid)
	}
	t, u, err := w.transfer(tenant, transferID, key)
	if err != nil {
		return engine.UploadWork{}, err
	}
	lk := leaseKey(transferID, key)
	n := r.Attempt
	w.mu.Lock()
	if l := w.leases[lk]; n == 0 && l != nil {
		n = l.attempt
	}
	w.mu.Unlock()
	if n == 0 {
		n = 1
		if u.Work != nil {
			n = u.Work.Attempt + 1
		}
	}
	since := sinceOf(u.Work)
	wk := engine.UploadWork{Status: r.Status, Attempt: n, Since: since, Message: truncate(r.Message, 4096), By: "importer"}
	wk.Final = r.Status == engine.WorkDone || !r.Retryable || n-since >= w.cfg.MaxAttempts
	wk, err = w.record(ctx, t, key, wk, "")
	if err != nil {
		return wk, err
	}
	w.mu.Lock()
	if l := w.leases[lk]; l == nil || l.attempt <= n {
		w.leases[lk] = &lease{attempt: n, reported: true}
	}
	w.mu.Unlock()
	return wk, nil
}

// DeadLetters lists tenant's uploads that failed for good ("" for all
// tenants), by transfer and key.
func (w *Work) DeadLetters(tenant string) ([]DeadLetter, error) {
	out := []DeadLetter{}
	err := w.each(tenant, func(t *engine.Transfer) (bool, error) {
		for _, u := range t.Uploads {
			if u.Work.Dead() {
				out = append(out, DeadLetter{TransferID: t.TransferID, Tenant: t.Issuer, Source: t.Source, Key: u.Key, Label: u.Label, Work: *u.Work})
			}
		}
		return false, nil
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].TransferID != out[j].TransferID {
			return out[i].TransferID < out[j].TransferID
		}
		return out[i].Key < out[j].Key
	})
	return out, err
}

// Requeue puts the dead letter key of transferID back to work (an
// upload-reported event, status requeued, by operator): its next claim is
// attempt+1, and MaxAttempts more attempts are allowed from there.
func (w *Work) Requeue(ctx context.Context, tenant, transferID, key, message string) (engine.UploadWork, error) {
	t, u, err := w.transfer(tenant, transferID, key)
	if err != nil {
		return engine.UploadWork{}, err
	}
	if t.Settled != nil || t.AppSettled != nil {
		return engine.UploadWork{}, fmt.Errorf("%w: transfer %s is settled", ErrConflict, transferID)
	}
	if !u.Work.Dead() {
		return engine.UploadWork{}, fmt.Errorf("%w: upload %q of %s is not a dead letter", ErrConflict, key, transferID)
	}
	if message == "" {
		message = "requeued"
	}
	return w.record(ctx, t, key, engine.UploadWork{Status: engine.WorkRequeued, Attempt: u.Work.Attempt, Since: u.Work.Since, Message: truncate(message, 4096), By: "operator"}, "")
}

// sinceOf is the attempt the upload's budget counts from: that of its last
// requeue (MaxAttempts more are allowed after each), 0 before any.
func sinceOf(wk *engine.UploadWork) int {
	switch {
	case wk == nil:
		return 0
	case wk.Status == engine.WorkRequeued:
		return wk.Attempt
	}
	return wk.Since
}

// record appends wk as an upload-reported event of t's upload key. A
// non-empty id names the event deterministically (the same fact from two
// instances is one event); else it is random.
func (w *Work) record(ctx context.Context, t *engine.Transfer, key string, wk engine.UploadWork, id string) (engine.UploadWork, error) {
	wk.At = w.cfg.Now().UTC().Truncate(time.Millisecond)
	var mid string
	if id != "" {
		sum := sha256.Sum256([]byte(t.TransferID + "\x00" + key + "\x00" + id))
		mid = "work-" + hex.EncodeToString(sum[:16])
	} else {
		var b [16]byte
		rand.Read(b[:])
		mid = "work-" + hex.EncodeToString(b[:])
	}
	payload, err := json.Marshal(struct {
		EventType  string `json:"eventType"`
		TransferID string `json:"transferId"`
		MessageID  string `json:"messageId"`
		Key        string `json:"key"`
		engine.UploadWork
	}{string(engine.KindUploadReported), t.TransferID, mid, key, wk})
	if err != nil {
		return wk, err
	}
	e, err := engine.Parse(engine.SourceApp, payload)
	if err != nil {
		return wk, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	e.Issuer, e.ReceivedAt = t.Issuer, wk.At
	if err := appendRetrying(ctx, w.cfg.Journal, e, w.log); err != nil {
		return wk, err
	}
	w.log.Info("work: upload reported", "transferId", t.TransferID, "key", key, "status", wk.Status,
		"attempt", wk.Attempt, "final", wk.Final, "by", wk.By)
	return wk, nil
}

// appendRetrying appends e, retrying the same event while the journal is
// unavailable, until ctx ends.
func appendRetrying(ctx context.Context, j *journal.Journal, e *engine.Event, log *slog.Logger) error {
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 10*time.Second) {
		_, err := j.Append(ctx, e)
		if err == nil || !errors.Is(err, journal.ErrUnavailable) {
			return err
		}
		log.Warn("driver: appending an app event", "transferId", e.TransferID, "kind", e.Kind, "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}
