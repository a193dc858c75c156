// Package driver drives transfers to their end: on a ticker (and at start)
// it finds in the projection the transfers that must be settled, decides
// their status by configuration, settles them through the platform client
// as the partner's Connect app, and appends every call's outcome to the
// journal as a platform-called event of the transfer (source app), so that
// the fold shows "settled by transferd at T".
//
// Candidates, each pass:
//   - an errored transfer (listener-errored), with Config.SettleErrored:
//     FAILED, the exceptionType as message;
//   - a transfer whose cancellation was requested, with
//     Config.SettleCancelled: INCOMPLETE by default (nothing failed, the
//     customer asked to stop; a re-run is allowed after INCOMPLETE as after
//     FAILED), due before deadlines.settleBy;
//   - any unsettled transfer whose deadlines.timesOutAt is within
//     Config.SettleBeforeTimeout: INCOMPLETE; with 0 it is only counted as
//     near its deadline (Report.Near, the metric) and logged.
//
// Forge transfers are never settled here: Forge has no settle call, only
// message status (which needs the installation's app system token, not
// kept yet); they are counted as skipped.
//
// Once, never twice. Before it calls, the driver claims the settle in the
// journal (journal.Claim, first writer wins) with its decision; whoever
// holds the claim decides the status for good. A driver acts on a claim it
// won, on its own claims (retrying one whose attempts were exhausted, with
// backoff), and on another's claim only when that one has no final outcome
// in the journal and nothing was recorded for it for Config.Lease (the
// claimant crashed or hung): it then retries with the same decision. If the
// first call had landed, the platform answers 403 and the outcome is
// recorded as settled. A platform answering 5xx, 429 or nothing is
// retried until it accepts or answers that it is too late (400, 403).
package driver

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/engine/journal"
	"github.com/transferd/transferd/ingest"
	"github.com/transferd/transferd/ingest/platform"
	"github.com/transferd/transferd/projections"
)

// Tenants finds a Connect tenant's site and shared secret
// (*ingest.Registry).
type Tenants interface {
	Get(ctx context.Context, clientKey string) (ingest.Tenant, error)
}

// Config configures a Driver.
type Config struct {
	Journal *journal.Journal
	Store   *projections.Store
	Tenants Tenants
	// Client calls the platform; its AppKey must be the Connect app key.
	// The driver owns it: New sets its Record.
	Client *platform.Client

	SettleErrored   bool
	SettleCancelled bool
	// ErroredStatus and CancelledStatus are the statuses sent; defaults
	// FAILED and INCOMPLETE.
	ErroredStatus, CancelledStatus string
	// SettleBeforeTimeout settles (INCOMPLETE) an unsettled transfer this
	// long before its 14-day limit; 0 only counts and logs it.
	SettleBeforeTimeout time.Duration
	// NearWindow is how close to timesOutAt a transfer counts as near its
	// deadline (Report.Near); default 24 hours. A pending cancellation is
	// always near (its limit is an hour).
	NearWindow time.Duration

	// Interval between passes; default 30 seconds.
	Interval time.Duration
	// Lease is how long another claimant's settle is left alone without
	// any recorded outcome before this driver takes it over; default 15
	// minutes (more than a call's whole retry budget).
	Lease time.Duration
	// RetryBase and RetryMax bound the backoff between passes that retry
	// an exhausted settle; defaults 30 seconds and 15 minutes.
	RetryBase, RetryMax time.Duration

	// Claimant names this driver in its claims; default a random id. A
	// restarted instance that keeps it (serve: one per data directory)
	// takes its own claims back at once instead of after the Lease.
	Claimant string
	// SettleDone settles a Connect transfer once its uploads are over
	// (see uploadsDecision): SUCCESS when every upload is done, else
	// UploadFailedStatus (default INCOMPLETE) naming the failed ones.
	SettleDone         bool
	UploadFailedStatus string
	// UploadsQuiet is how long without a platform event counts as past
	// the uploads when export-phase-completed never came; default 15
	// minutes.
	UploadsQuiet time.Duration
	// DeadLetterHold leaves a dead letter this long for an operator to
	// requeue before the transfer is settled with it; 0 settles at once.
	DeadLetterHold time.Duration
	// Progress reports IN_PROGRESS with percent = done/total (1–99) while
	// uploads are under way, at most once per ProgressEvery (default a
	// minute) per transfer and only above the percent the platform took.
	Progress      bool
	ProgressEvery time.Duration
	// ForgeCredential, when set, gives a Forge installation's credential
	// (ingest.Handler.ForgeCredential): the driver then acknowledges each
	// Forge upload message once its work is done (SUCCESS) or dead
	// (FAILED). A message still unreported ForgeAckBefore (default 2
	// minutes) before its 15-minute window ends is acknowledged FAILED
	// with ForgeTimeout "failed" (the default) or only counted and logged
	// with "alert".
	ForgeCredential func(installationID string) (platform.ForgeInstallation, bool)
	ForgeAckBefore  time.Duration
	ForgeTimeout    string

	// Observe, when set, is told of every settle's outcome.
	Observe func(Settle)
	Logger  *slog.Logger
	Now     func() time.Time
}

// Settle is one settle the driver made.
type Settle struct {
	TransferID, Status, Outcome string
}

// Report is what one pass found and did.
type Report struct {
	Candidates int // transfers that need settling
	Near       int // unsettled transfers near a deadline
	Settled    int // settles the platform took (ok or settled already)
	Failed     int // settles that did not go through
	Skipped    int // candidates left alone: Forge, unknown tenant, held by another, backing off
	Progressed int // progress reports the platform took
	// ForgeAcked counts Forge messages acknowledged; ForgeDue those near
	// the end of their window with no report (alerted or failed);
	// NoCredential the Forge transfers with messages to acknowledge but
	// no credential of their installation.
	ForgeAcked, ForgeDue, NoCredential int
}

// Driver settles transfers; see the package documentation.
type Driver struct {
	cfg      Config
	claimant string
	log      *slog.Logger

	mu      sync.Mutex
	busy    map[string]bool      // transfers being settled by this driver
	retryAt map[string]time.Time // own exhausted settles: not before
	tries   map[string]int
	calls   map[string]platform.Call // the last call's record, by op and transfer
	near    int

	progressAt map[string]time.Time // the last progress report sent, by transfer
	acked      map[string]bool      // Forge messages this driver acknowledged for good
	noCred     map[string]bool      // transfers whose missing credential was logged
}

// New returns a driver; Run starts it.
func New(cfg Config) (*Driver, error) {
	if cfg.Journal == nil || cfg.Store == nil || cfg.Tenants == nil || cfg.Client == nil {
		return nil, errors.New("driver: the journal, store, tenants and client are required")
	}
	if cfg.Client.AppKey == "" {
		return nil, errors.New("driver: the Connect app key is required (it signs every settle)")
	}
	for _, s := range []*string{&cfg.ErroredStatus, &cfg.CancelledStatus} {
		if *s == "" {
			continue
		}
		if p := (platform.Progress{Status: *s}); !p.Final() {
			return nil, fmt.Errorf("driver: status %q is none of SUCCESS, FAILED, INCOMPLETE", *s)
		}
	}
	if s := cfg.UploadFailedStatus; s != "" && s != platform.Failed && s != platform.Incomplete {
		return nil, fmt.Errorf("driver: upload-failed status %q is neither FAILED nor INCOMPLETE", s)
	}
	if cfg.UploadFailedStatus == "" {
		cfg.UploadFailedStatus = platform.Incomplete
	}
	switch cfg.ForgeTimeout {
	case "":
		cfg.ForgeTimeout = "failed"
	case "failed", "alert":
	default:
		return nil, fmt.Errorf("driver: forge timeout action %q is neither failed nor alert", cfg.ForgeTimeout)
	}
	if cfg.ErroredStatus == "" {
		cfg.ErroredStatus = platform.Failed
	}
	if cfg.CancelledStatus == "" {
		cfg.CancelledStatus = platform.Incomplete
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.NearWindow, engine.NearWindow)
	def(&cfg.Interval, 30*time.Second)
	def(&cfg.Lease, 15*time.Minute)
	def(&cfg.RetryBase, 30*time.Second)
	def(&cfg.RetryMax, 15*time.Minute)
	def(&cfg.UploadsQuiet, 15*time.Minute)
	def(&cfg.ProgressEvery, time.Minute)
	def(&cfg.ForgeAckBefore, 2*time.Minute)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	var id [8]byte
	rand.Read(id[:])
	d := &Driver{
		cfg: cfg, claimant: cmp.Or(cfg.Claimant, hex.EncodeToString(id[:])), log: cfg.Logger,
		busy: map[string]bool{}, retryAt: map[string]time.Time{}, tries: map[string]int{},
		calls: map[string]platform.Call{}, progressAt: map[string]time.Time{}, acked: map[string]bool{},
		noCred: map[string]bool{},
	}
	cfg.Client.Record = func(c platform.Call) {
		d.mu.Lock()
		d.calls[c.Op+"\x00"+c.TransferID] = c
		d.mu.Unlock()
	}
	return d, nil
}

// Run makes a pass at once and then every Interval until ctx ends.
func (d *Driver) Run(ctx context.Context) error {
	t := time.NewTicker(d.cfg.Interval)
	defer t.Stop()
	for {
		if _, err := d.Pass(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("driver: pass failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Near is the number of unsettled transfers near a deadline at the last
// pass.
func (d *Driver) Near() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.near
}

// decision is what a claim records: the settle to send.
type decision struct {
	Status   string    `json:"status"`
	Message  string    `json:"message,omitempty"`
	Reason   string    `json:"reason"` // errored, cancelled, timeout
	Claimant string    `json:"claimant"`
	At       time.Time `json:"at"`
}

// Pass finds the transfers to settle and settles them, one after another.
func (d *Driver) Pass(ctx context.Context) (Report, error) {
	var rep Report
	now := d.cfg.Now()
	for _, p := range engine.Phases {
		if p == engine.PhaseSettled {
			continue
		}
		cursor := ""
		for {
			page, err := d.cfg.Store.List(projections.Filter{Phase: p, Cursor: cursor, Limit: projections.MaxLimit})
			if err != nil {
				return rep, fmt.Errorf("driver: list %s transfers: %w", p, err)
			}
			for _, t := range page.Transfers {
				if err := d.consider(ctx, t, now, &rep); err != nil {
					if ctx.Err() != nil {
						return rep, ctx.Err()
					}
					d.log.Warn("driver: settle failed", "transferId", t.TransferID, "err", err)
				}
			}
			if cursor = page.NextCursor; cursor == "" {
				break
			}
		}
	}
	d.mu.Lock()
	d.near = rep.Near
	d.mu.Unlock()
	return rep, nil
}

// decide returns the settle t needs now, if any, and whether t is near a
// deadline.
func (d *Driver) decide(t *engine.Transfer, now time.Time) (dec *decision, near bool) {
	if t.Settled != nil || t.AppSettled != nil {
		return nil, false
	}
	_, _, near = t.NearDeadline(now, d.cfg.NearWindow)
	dl := t.Deadlines()
	switch {
	case t.Error != nil || t.Phase == engine.PhaseListenerErrored:
		if d.cfg.SettleErrored {
			msg := "listener errored"
			if t.Error != nil && t.Error.ExceptionType != "" {
				msg = t.Error.ExceptionType
			}
			return &decision{Status: d.cfg.ErroredStatus, Message: msg, Reason: "errored"}, near
		}
	case t.CancellationRequested:
		if d.cfg.SettleCancelled {
			return &decision{Status: d.cfg.CancelledStatus, Message: "cancellation requested", Reason: "cancelled"}, near
		}
	}
	if d.cfg.SettleDone && t.Source == engine.SourceConnect {
		if dec := d.uploadsDecision(t, now); dec != nil {
			return dec, near
		}
	}
	if b := d.cfg.SettleBeforeTimeout; b > 0 && dl.TimesOutAt != nil && dl.TimesOutAt.Sub(now) <= b {
		return &decision{Status: platform.Incomplete, Message: "not finished before the platform's 14-day limit", Reason: "timeout"}, near
	}
	return nil, near
}

func (d *Driver) consider(ctx context.Context, t *engine.Transfer, now time.Time, rep *Report) error {
	dec, near := d.decide(t, now)
	if near {
		rep.Near++
		if dec == nil && t.NeedsAction() == "" {
			d.log.Info("driver: transfer near its deadline", "transferId", t.TransferID, "timesOutAt", t.Deadlines().TimesOutAt)
		}
	}
	if t.Source == engine.SourceForge && t.Settled == nil {
		if err := d.forge(ctx, t, now, rep); err != nil {
			d.log.Warn("driver: forge message status", "transferId", t.TransferID, "err", err)
		}
	}
	if dec == nil {
		if d.cfg.Progress && t.Source == engine.SourceConnect && t.Settled == nil && t.AppSettled == nil {
			return d.progress(ctx, t, now, rep)
		}
		return nil
	}
	rep.Candidates++
	if t.Source != engine.SourceConnect {
		rep.Skipped++ // Forge has no settle call
		return nil
	}
	d.mu.Lock()
	if d.busy[t.TransferID] || now.Before(d.retryAt[t.TransferID]) {
		d.mu.Unlock()
		rep.Skipped++
		return nil
	}
	d.busy[t.TransferID] = true
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.busy, t.TransferID)
		d.mu.Unlock()
	}()

	site, err := d.site(ctx, t)
	if err != nil {
		rep.Skipped++
		return err
	}
	dec.Claimant, dec.At = d.claimant, now.UTC()
	value, _ := json.Marshal(dec)
	claim, won, err := d.cfg.Journal.Claim(ctx, "settle", t.TransferID, value)
	if err != nil {
		rep.Skipped++
		return err
	}
	if !won {
		var held decision
		if err := json.Unmarshal(claim.Value, &held); err != nil || held.Status == "" {
			rep.Skipped++
			return fmt.Errorf("driver: the settle claim of %s does not decode: %v", t.TransferID, err)
		}
		last, final, err := d.outcomes(ctx, t.TransferID)
		if err != nil {
			rep.Skipped++
			return err
		}
		if final {
			rep.Skipped++ // done; the projection has not caught up yet
			return nil
		}
		if held.Claimant != d.claimant {
			if last.Before(held.At) {
				last = held.At
			}
			if now.Sub(last) < d.cfg.Lease {
				rep.Skipped++ // another driver holds it
				return nil
			}
			d.log.Warn("driver: taking over a settle with no outcome", "transferId", t.TransferID,
				"claimant", held.Claimant, "claimedAt", held.At, "status", held.Status)
		}
		dec = &held
	}
	outcome, err := d.settle(ctx, t, site, dec)
	if err != nil {
		return err
	}
	if d.cfg.Observe != nil {
		d.cfg.Observe(Settle{TransferID: t.TransferID, Status: dec.Status, Outcome: outcome})
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	switch outcome {
	case engine.OutcomeOK, engine.OutcomeSettled:
		rep.Settled++
		delete(d.tries, t.TransferID)
		delete(d.retryAt, t.TransferID)
	case engine.OutcomeExhausted:
		rep.Failed++
		n := d.tries[t.TransferID] + 1
		d.tries[t.TransferID] = n
		d.retryAt[t.TransferID] = now.Add(min(d.cfg.RetryBase<<min(n-1, 20), d.cfg.RetryMax))
	default: // the platform said no for good: never again
		rep.Failed++
		d.retryAt[t.TransferID] = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	return nil
}

// site is t's Connect site, checking that t's issuer is the tenant the
// transfer is bound to, so that no settle is signed with another
// tenant's secret.
func (d *Driver) site(ctx context.Context, t *engine.Transfer) (platform.ConnectSite, error) {
	owner, err := d.cfg.Journal.Owner(ctx, t.TransferID)
	if err != nil {
		return platform.ConnectSite{}, fmt.Errorf("driver: owner of %s: %w", t.TransferID, err)
	}
	if owner != string(engine.SourceConnect)+":"+t.Issuer && owner != t.Issuer {
		return platform.ConnectSite{}, fmt.Errorf("driver: transfer %s is bound to %q, not its issuer %q: not settled", t.TransferID, owner, t.Issuer)
	}
	ten, err := d.cfg.Tenants.Get(ctx, t.Issuer)
	if err != nil {
		return platform.ConnectSite{}, fmt.Errorf("driver: tenant of %s: %w", t.TransferID, err)
	}
	if !ten.Active() || ten.BaseURL == "" || ten.SharedSecret == "" || ten.ClientKey != t.Issuer {
		return platform.ConnectSite{}, fmt.Errorf("driver: tenant %q of %s is not installed with a site and secret", t.Issuer, t.TransferID)
	}
	return platform.ConnectSite{BaseURL: ten.BaseURL, Secret: []byte(ten.SharedSecret)}, nil
}

// outcomes reads the journal's settle outcomes of transferID: when the
// last was recorded and whether one is final (the platform took it, or
// said it never will).
func (d *Driver) outcomes(ctx context.Context, transferID string) (last time.Time, final bool, err error) {
	for env, err := range d.cfg.Journal.Scan(ctx, journal.EventFilter(transferID, engine.KindPlatformCalled)) {
		if err != nil {
			var corrupt *journal.CorruptError
			if errors.As(err, &corrupt) {
				continue
			}
			return last, final, err
		}
		if env.Source != engine.SourceApp {
			continue
		}
		e, err := env.Event()
		if err != nil || e.Call == nil || e.Call.Op != "settle" {
			continue
		}
		if e.Call.At.After(last) {
			last = e.Call.At
		}
		if e.Call.Outcome != engine.OutcomeExhausted {
			final = true
		}
	}
	return last, final, nil
}

// settle sends dec and records its outcome; the error is one of recording
// it, or the end of ctx (then nothing is recorded: the claim stays, and a
// later pass or driver retries with the same decision).
func (d *Driver) settle(ctx context.Context, t *engine.Transfer, site platform.ConnectSite, dec *decision) (string, error) {
	cctx, ccancel := graceful(ctx)
	err := d.cfg.Client.ReportProgress(cctx, site, t.TransferID, platform.Progress{Status: dec.Status, Message: dec.Message})
	cut := cutShort(cctx, err)
	ccancel()
	call := d.lastCall("settle", t.TransferID)
	if cut {
		return "", ctx.Err()
	}
	ctx, cancel := recording(ctx)
	defer cancel()
	pc := engine.PlatformCall{
		Op: "settle", Status: dec.Status, Message: dec.Message, Outcome: outcomeOf(err),
		HTTPStatus: call.Status, Attempts: call.Attempts, Unanswered: call.Unanswered,
		At: d.cfg.Now().UTC(),
	}
	if err != nil {
		pc.Error = truncate(err.Error(), 1024)
	}
	if err := d.record(ctx, t, &pc); err != nil {
		return "", err
	}
	d.log.Info("driver: settled", "transferId", t.TransferID, "status", dec.Status, "reason", dec.Reason,
		"outcome", pc.Outcome, "httpStatus", pc.HTTPStatus, "attempts", pc.Attempts)
	return pc.Outcome, nil
}

// cutShort reports whether a call ended because ctx did, before the
// platform answered: then nothing is recorded, the claim stays, and a
// later pass retries with the same decision. A call the platform answered
// is recorded even when ctx ended an instant later (serve shutting down):
// dropping that answer would make the next driver send it again.
func cutShort(ctx context.Context, err error) bool {
	return ctx.Err() != nil && err != nil &&
		(errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded))
}

// callGrace is how long a platform call under way may go on once the
// driver's context ends (serve stopping): long enough for an answer, so
// that a stop rarely leaves it unknown whether the platform took a call.
const callGrace = 10 * time.Second

// graceful returns the context of one platform call: it ends callGrace
// after ctx does.
func graceful(ctx context.Context) (context.Context, context.CancelFunc) {
	c, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(callGrace, cancel) })
	return c, func() { stop(); cancel() }
}

// recordTimeout bounds recording an answered call after ctx has ended.
const recordTimeout = 10 * time.Second

// recording returns a context for recording a call's outcome that
// outlives ctx's cancellation (serve may stop during the append, which
// must not be cut either), bounded by recordTimeout.
func recording(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
}

// lastCall takes the record of the last call op made for transferID.
func (d *Driver) lastCall(op, transferID string) platform.Call {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := op + "\x00" + transferID
	c := d.calls[k]
	delete(d.calls, k)
	return c
}

// outcomeOf classifies a platform call's error.
func outcomeOf(err error) string {
	switch {
	case err == nil:
		return engine.OutcomeOK
	case errors.Is(err, platform.ErrSettled):
		return engine.OutcomeSettled
	case errors.Is(err, platform.ErrRejected):
		return engine.OutcomeRejected
	case errors.Is(err, platform.ErrExhausted):
		return engine.OutcomeExhausted
	}
	return engine.OutcomeInvalid
}

// record appends the platform-called event of pc, retrying the same event
// (the same identity: a duplicate is recognised) while the journal is
// unavailable, until ctx ends.
func (d *Driver) record(ctx context.Context, t *engine.Transfer, pc *engine.PlatformCall) error {
	var id [16]byte
	rand.Read(id[:])
	payload, err := json.Marshal(struct {
		EventType  string `json:"eventType"`
		TransferID string `json:"transferId"`
		MessageID  string `json:"messageId"`
		*engine.PlatformCall
	}{string(engine.KindPlatformCalled), t.TransferID, "app-" + hex.EncodeToString(id[:]), pc})
	if err != nil {
		return err
	}
	e, err := engine.Parse(engine.SourceApp, payload)
	if err != nil {
		return fmt.Errorf("driver: the platform-called event does not parse: %w", err)
	}
	e.Issuer, e.ReceivedAt = t.Issuer, d.cfg.Now().UTC()
	return appendRetrying(ctx, d.cfg.Journal, e, d.log)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
