package main

import (
	"context"
	"flag"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/transferd/transferd/api"
	"github.com/transferd/transferd/engine/journal"
	"github.com/transferd/transferd/ingest"
	"github.com/transferd/transferd/ingest/driver"
	"github.com/transferd/transferd/ingest/platform"
	"github.com/transferd/transferd/projections"
)

// driveFlags are serve's flags of the driver (ingest/driver), off unless
// --drive: the driver calls the platform and writes events to the journal.
type driveFlags struct {
	drive               bool
	appKey              string
	settleErrored       bool
	settleCancelled     bool
	erroredStatus       string
	cancelledStatus     string
	settleBeforeTimeout time.Duration
	interval            time.Duration
	claimant            string // not a flag: serve sets it per data directory

	// Importer work (--work) and what the driver does with it.
	work               bool
	workLease          time.Duration
	workMaxAttempts    int
	workRetryBase      time.Duration
	settleDone         bool
	uploadFailedStatus string
	uploadsQuiet       time.Duration
	deadLetterHold     time.Duration
	progress           bool
	forgeAck           bool
	forgeTimeout       string
}

func (f *driveFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&f.drive, "drive", false, "drive transfers to their end: settle them through the platform as the Connect app\n(--settle-errored, --settle-cancelled, --settle-before-timeout) and record every call as\nan event of the transfer; off by default (it writes to the journal and calls the platform)")
	fs.StringVar(&f.appKey, "app-key", "", "the Connect app `key`, the iss of the tokens --drive signs its calls with")
	fs.BoolVar(&f.settleErrored, "settle-errored", false, "with --drive, settle errored transfers (--errored-status, the exceptionType as message)")
	fs.BoolVar(&f.settleCancelled, "settle-cancelled", false, "with --drive, settle transfers whose cancellation was requested (--cancelled-status) before\ntheir 1-hour limit")
	fs.StringVar(&f.erroredStatus, "errored-status", platform.Failed, "`status` --settle-errored sends: FAILED or INCOMPLETE")
	fs.StringVar(&f.cancelledStatus, "cancelled-status", platform.Incomplete, "`status` --settle-cancelled sends: INCOMPLETE or FAILED")
	fs.DurationVar(&f.settleBeforeTimeout, "settle-before-timeout", 0, "with --drive, settle an unsettled Connect transfer INCOMPLETE this long before its\n14-day limit; 0 only counts it (metric transferd_transfers_near_deadline) and logs it")
	fs.DurationVar(&f.interval, "drive-interval", 30*time.Second, "how often --drive looks for transfers to settle")
	fs.BoolVar(&f.work, "work", false, "serve importer work: each uploaded piece of app data is a unit of work that importers\nclaim (POST /v1/work/claim) and report (done or failed); dead letters are listed and requeueable")
	fs.DurationVar(&f.workLease, "work-lease", 5*time.Minute, "how long an importer's claim is held; one that runs out without a report is a failed attempt")
	fs.IntVar(&f.workMaxAttempts, "work-max-attempts", 5, "attempts of an upload before a retryable failure is final (a dead letter)")
	fs.DurationVar(&f.workRetryBase, "work-retry-base", 30*time.Second, "backoff after an upload's first retryable failure, doubling up to 15 minutes")
	fs.BoolVar(&f.settleDone, "settle-done", false, "with --drive, settle a Connect transfer once its uploads are over: SUCCESS when every\nupload is done, else --upload-failed-status naming the failed ones")
	fs.StringVar(&f.uploadFailedStatus, "upload-failed-status", platform.Incomplete, "`status` --settle-done sends when an upload failed for good: INCOMPLETE or FAILED")
	fs.DurationVar(&f.uploadsQuiet, "uploads-quiet", 15*time.Minute, "with --settle-done, a transfer without export-phase-completed is past its uploads after\nthis long without a platform event")
	fs.DurationVar(&f.deadLetterHold, "dead-letter-hold", 0, "with --settle-done, leave a dead letter this long for an operator to requeue before\nsettling with it; 0 settles at once")
	fs.BoolVar(&f.progress, "progress", false, "with --drive, report IN_PROGRESS with percent = done/total uploads, at most once a\nminute per transfer")
	fs.BoolVar(&f.forgeAck, "forge-ack", false, "with --drive, send Forge message status for each upload message once its work is\ndone (SUCCESS) or dead (FAILED), with the installation's x-forge-oauth-system token")
	fs.StringVar(&f.forgeTimeout, "forge-timeout", "failed", "with --forge-ack, what to do with a Forge message still unreported 2 minutes before its\n15-minute window ends: failed (acknowledge FAILED) or alert (log and count only)")
}

// startWork returns the work queue when --work is set, else nil.
func (f *driveFlags) startWork(log *slog.Logger, j *journal.Journal, store *projections.Store) (*driver.Work, error) {
	if !f.work {
		return nil, nil
	}
	w, err := driver.NewWork(driver.WorkConfig{
		Journal: j, Store: store, Lease: f.workLease, MaxAttempts: f.workMaxAttempts, RetryBase: f.workRetryBase, Logger: log,
	})
	if err != nil {
		return nil, usageError(err.Error())
	}
	log.Info("serving importer work", "lease", f.workLease, "maxAttempts", f.workMaxAttempts)
	return w, nil
}

// startDriver starts the driver when --drive is set; the returned function
// waits for it to stop once ctx ends.
func (f *driveFlags) start(ctx context.Context, log *slog.Logger, j *journal.Journal, store *projections.Store, tenants *ingest.Registry, in *ingest.Handler, metrics *api.Metrics) (wait func(), err error) {
	if !f.drive {
		return func() {}, nil
	}
	if f.appKey == "" {
		return nil, usageError("--drive needs --app-key: the Connect app key signs every settle")
	}
	settles := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "transferd_settles_total",
		Help: "Settles transferd sent to the platform, by outcome (ok, settled, rejected, exhausted, invalid).",
	}, []string{"outcome"})
	d, err := driver.New(driver.Config{
		Journal: j, Store: store, Tenants: tenants,
		Client:          &platform.Client{AppKey: f.appKey},
		SettleErrored:   f.settleErrored,
		SettleCancelled: f.settleCancelled,
		ErroredStatus:   f.erroredStatus, CancelledStatus: f.cancelledStatus,
		SettleBeforeTimeout: f.settleBeforeTimeout,
		Interval:            f.interval,
		Claimant:            f.claimant,
		SettleDone:          f.settleDone, UploadFailedStatus: f.uploadFailedStatus,
		UploadsQuiet: f.uploadsQuiet, DeadLetterHold: f.deadLetterHold,
		Progress: f.progress, ForgeTimeout: f.forgeTimeout,
		ForgeCredential: f.forgeCredential(in),
		Observe:         func(s driver.Settle) { settles.WithLabelValues(s.Outcome).Inc() },
		Logger:          log,
	})
	if err != nil {
		return nil, usageError(err.Error())
	}
	near := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "transferd_transfers_near_deadline",
		Help: "Unsettled transfers near a deadline at the driver's last pass: a pending cancellation, or within 24h of the 14-day limit.",
	}, func() float64 { return float64(d.Near()) })
	metrics.Registry().MustRegister(settles, near)
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.Run(ctx)
	}()
	log.Info("driving transfers", "settleErrored", f.settleErrored, "settleCancelled", f.settleCancelled,
		"settleBeforeTimeout", f.settleBeforeTimeout, "interval", f.interval, "settleDone", f.settleDone,
		"progress", f.progress, "forgeAck", f.forgeAck)
	return func() { <-done }, nil
}

// forgeCredential gives the driver the newest Forge credential ingest
// kept for an installation, with --forge-ack.
func (f *driveFlags) forgeCredential(in *ingest.Handler) func(string) (platform.ForgeInstallation, bool) {
	if !f.forgeAck || in == nil {
		return nil
	}
	return func(inst string) (platform.ForgeInstallation, bool) {
		c, ok := in.ForgeCredential(inst)
		if !ok {
			return platform.ForgeInstallation{}, false
		}
		return platform.ForgeInstallation{APIBaseURL: c.APIBaseURL, Token: c.Token}, true
	}
}
