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
}

// startDriver starts the driver when --drive is set; the returned function
// waits for it to stop once ctx ends.
func (f *driveFlags) start(ctx context.Context, log *slog.Logger, j *journal.Journal, store *projections.Store, tenants *ingest.Registry, metrics *api.Metrics) (wait func(), err error) {
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
		Observe:             func(s driver.Settle) { settles.WithLabelValues(s.Outcome).Inc() },
		Logger:              log,
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
		"settleBeforeTimeout", f.settleBeforeTimeout, "interval", f.interval)
	return func() { <-done }, nil
}
