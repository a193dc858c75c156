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

// reconcileFlags are serve's flags of reconciliation with the platform
// (driver.Reconciler), which needs --drive (its app key signs the calls).
type reconcileFlags struct {
	interval time.Duration
}

func (f *reconcileFlags) register(fs *flag.FlagSet) {
	fs.DurationVar(&f.interval, "reconcile-interval", 0, "with --drive, compare at start and this often the platform's recent transfers and each active\ntransfer's app-data list with the journal, showing at GET /v1/reconciliation what only the\nplatform knows (webhooks that never arrived) and journaling each missing upload as an\nupload-discovered event (importer work); 0 is off")
}

// start starts the reconciler when --reconcile-interval is set; it returns
// what the query API shows (nil when off) and a function that waits for it
// to stop once ctx ends.
func (f *reconcileFlags) start(ctx context.Context, log *slog.Logger, drive *driveFlags, j *journal.Journal, store *projections.Store, tenants *ingest.Registry, in *ingest.Handler, metrics *api.Metrics) (show func() any, wait func(), err error) {
	if f.interval == 0 {
		return nil, func() {}, nil
	}
	switch {
	case f.interval < 0:
		return nil, nil, usageError("--reconcile-interval cannot be negative")
	case !drive.drive:
		return nil, nil, usageError("--reconcile-interval needs --drive (and its --app-key): it calls the platform as the app")
	}
	r, err := driver.NewReconciler(driver.ReconcileConfig{
		Store: store, Tenants: tenants, ForgeCredential: in.ForgeCredential,
		Client:   &platform.Client{AppKey: drive.appKey},
		Interval: f.interval, Logger: log, Journal: j,
	})
	if err != nil {
		return nil, nil, usageError(err.Error())
	}
	unknown := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "transferd_reconcile_unknown_transfers",
		Help: "Transfers the platform lists as recent of which the journal has no event, at the last reconciliation.",
	}, func() float64 { return float64(len(r.Last().UnknownTransfers)) })
	missing := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "transferd_reconcile_missing_uploads",
		Help: "Uploads the platform lists for active transfers whose webhook never arrived, at the last reconciliation.",
	}, func() float64 { return float64(len(r.Last().MissingUploads)) })
	metrics.Registry().MustRegister(unknown, missing)
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	log.Info("reconciling with the platform", "interval", f.interval)
	return func() any { return r.Last() }, func() { <-done }, nil
}
