package driver_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/engine/journal"
	"github.com/transferd/transferd/ingest/driver"
	"github.com/transferd/transferd/ingest/platform"
	"github.com/transferd/transferd/ingest/platform/platformtest"
)

const reconUploaded = `{"eventType":"app-data-uploaded","transferId":"%s","messageId":"u-%[1]s-%s","s3Key":"%[2]s","label":"attachments"}`

func (r *rig) reconciler() *driver.Reconciler {
	r.t.Helper()
	rc, err := driver.NewReconciler(driver.ReconcileConfig{
		Store: r.store, Tenants: r.reg,
		Client: &platform.Client{AppKey: appKey, Retry: platform.Retry{Attempts: 4, Base: time.Millisecond, Max: 5 * time.Millisecond}},
	})
	if err != nil {
		r.t.Fatal(err)
	}
	return rc
}

// TestReconcileFindsWhatOnlyThePlatformKnows: a transfer the platform lists
// as recent of which no webhook arrived, and an upload it lists for an
// active transfer whose webhook never arrived, are found; what the journal
// has, and settled transfers, are not reported; a later pass keeps when it
// first saw each and drops what arrived since.
func TestReconcileFindsWhatOnlyThePlatformKnows(t *testing.T) {
	r := newRig(t)
	r.tenant("ck-1", "secret-secret-secret-1")
	r.transfer("ck-1", "t-known", fmt.Sprintf(triggered, "t-known"), fmt.Sprintf(reconUploaded, "t-known", "k-seen"))
	r.plat.AddTransfer(platformtest.Transfer{ID: "t-known", Tenant: "ck-1", Data: []platform.AppData{{S3Key: "k-seen"}, {S3Key: "k-lost", Label: "DATABASE"}}})
	r.plat.AddTransfer(platformtest.Transfer{ID: "t-unknown", Tenant: "ck-1"})
	r.transfer("ck-1", "t-done", fmt.Sprintf(triggered, "t-done"))
	r.plat.AddTransfer(platformtest.Transfer{ID: "t-done", Tenant: "ck-1", Data: []platform.AppData{{S3Key: "k-gone"}}})
	r.plat.SettleByPlatform("t-done", platform.Success)

	rc := r.reconciler()
	got := rc.Pass(r.ctx)
	if len(got.Errors) != 0 || got.Tenants != 1 || got.Transfers != 2 || got.Passes != 1 {
		t.Fatalf("pass: %+v", got)
	}
	if len(got.UnknownTransfers) != 1 || got.UnknownTransfers[0].TransferID != "t-unknown" || got.UnknownTransfers[0].Tenant != "ck-1" {
		t.Errorf("unknown transfers %+v", got.UnknownTransfers)
	}
	if len(got.MissingUploads) != 1 || got.MissingUploads[0] != (driver.MissingUpload{TransferID: "t-known", S3Key: "k-lost", Label: "DATABASE", FirstSeenAt: got.MissingUploads[0].FirstSeenAt}) {
		t.Errorf("missing uploads %+v", got.MissingUploads)
	}
	firstSeen := got.MissingUploads[0].FirstSeenAt

	// The lost webhook arrives late; the unknown transfer stays unknown.
	r.transfer("ck-1", "t-known", fmt.Sprintf(reconUploaded, "t-known", "k-lost"))
	r.plat.AddTransfer(platformtest.Transfer{ID: "t-known", Tenant: "ck-1", Data: []platform.AppData{{S3Key: "k-seen"}, {S3Key: "k-lost"}, {S3Key: "k-new"}}})
	again := rc.Pass(r.ctx)
	if len(again.MissingUploads) != 1 || again.MissingUploads[0].S3Key != "k-new" || again.MissingUploads[0].FirstSeenAt.Before(firstSeen) {
		t.Errorf("second pass missing uploads %+v", again.MissingUploads)
	}
	if len(again.UnknownTransfers) != 1 || !again.UnknownTransfers[0].FirstSeenAt.Equal(got.UnknownTransfers[0].FirstSeenAt) {
		t.Errorf("second pass unknown transfers %+v (first seen %v)", again.UnknownTransfers, got.UnknownTransfers[0].FirstSeenAt)
	}
	if last := rc.Last(); last.Passes != 2 || len(last.MissingUploads) != 1 {
		t.Errorf("Last %+v", last)
	}

	// The platform goes away: the pass reports the errors and keeps what
	// earlier passes found.
	r.plat.Close()
	gone := rc.Pass(r.ctx)
	if len(gone.Errors) == 0 || len(gone.MissingUploads) != 1 || gone.MissingUploads[0].S3Key != "k-new" || len(gone.UnknownTransfers) != 1 {
		t.Errorf("a pass without the platform %+v", gone)
	}
}

// TestReconcileReportsPlatformErrors: a tenant whose site refuses the
// app's token is reported as an error of the pass, with no secret in it.
func TestReconcileReportsPlatformErrors(t *testing.T) {
	r := newRig(t)
	r.tenant("ck-1", "secret-secret-secret-1")
	r.plat.AddConnectTenant("ck-1", "another-secret-entirely", false) // the platform has another secret
	got := r.reconciler().Pass(r.ctx)
	if len(got.Errors) != 1 || len(got.UnknownTransfers) != 0 {
		t.Fatalf("%+v", got)
	}
	for _, s := range []string{"secret-secret-secret-1", "another-secret-entirely"} {
		if strings.Contains(got.Errors[0], s) {
			t.Fatalf("an error names a secret: %s", got.Errors[0])
		}
	}
}

// TestReconcileJournalsHeldBackUpload: an upload the platform lists whose
// webhook was held back is journaled once as upload-discovered (two passes,
// a restarted reconciler), folds into the transfer marked discovered,
// becomes claimable work, and a settle-done waits for it: SUCCESS only
// once it is reported done.
func TestReconcileJournalsHeldBackUpload(t *testing.T) {
	r := newRig(t)
	r.tenant("ck-1", "secret-secret-secret-1")
	id := "t-held"
	r.transfer("ck-1", id, fmt.Sprintf(triggered, id), fmt.Sprintf(reconUploaded, id, "k-seen"), fmt.Sprintf(`{"eventType":"export-phase-completed","transferId":"%s"}`, id))
	r.plat.AddTransfer(platformtest.Transfer{ID: id, Tenant: "ck-1", Data: []platform.AppData{{S3Key: "k-seen"}, {S3Key: "k-held", Label: "DATABASE"}}})

	journaling := func() *driver.Reconciler {
		rc, err := driver.NewReconciler(driver.ReconcileConfig{
			Store: r.store, Tenants: r.reg, Journal: r.j, Logger: discard(),
			Client: &platform.Client{AppKey: appKey, Retry: platform.Retry{Attempts: 4, Base: time.Millisecond, Max: 5 * time.Millisecond}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return rc
	}
	rc := journaling()
	for range 2 {
		if got := rc.Pass(r.ctx); len(got.Errors) != 0 || len(got.MissingUploads) != 1 || got.MissingUploads[0].S3Key != "k-held" {
			t.Fatalf("pass: %+v", got)
		}
		r.caughtUp()
	}
	if got := journaling().Pass(r.ctx); len(got.MissingUploads) != 1 { // a restart
		t.Fatalf("pass after a restart: %+v", got)
	}
	r.caughtUp()
	n := 0
	for env, err := range r.j.Scan(r.ctx, journal.EventFilter(id, engine.KindUploadDiscovered)) {
		if err != nil {
			t.Fatal(err)
		}
		if e, err := env.Event(); err != nil || env.Source != engine.SourceApp || e.Issuer != "ck-1" || e.Upload == nil || e.Upload.Key != "k-held" {
			t.Fatalf("event %s: source %s %+v %v", env.ID, env.Source, e, err)
		}
		n++
	}
	if n != 1 {
		t.Fatalf("%d upload-discovered events, want 1", n)
	}
	tr := r.folded(id)
	if len(tr.Uploads) != 2 || tr.Uploads[0].Key != "k-held" || !tr.Uploads[0].Discovered || tr.Uploads[0].Label != "DATABASE" || tr.Uploads[1].Discovered {
		t.Fatalf("folded uploads %+v", tr.Uploads)
	}

	w := r.work(driver.WorkConfig{})
	var items []*driver.Item
	for it := r.claim(w, ""); it != nil; it = r.claim(w, "") {
		items = append(items, it)
	}
	if len(items) != 2 || items[0].Key != "k-held" || items[1].Key != "k-seen" {
		t.Fatalf("claimed %+v, want k-held and k-seen", items)
	}
	d := r.driver(driver.Config{SettleDone: true})
	r.report(w, items[1], driver.WorkReport{Status: "done"})
	if rep := r.pass(d); rep.Settled != 0 || r.platform(id).Settles != 0 {
		t.Fatalf("settled with the discovered upload not done: %+v", rep)
	}
	r.report(w, items[0], driver.WorkReport{Status: "done"})
	if rep := r.pass(d); rep.Settled != 1 {
		t.Fatalf("not settled once all were done: %+v", rep)
	}
	if pt := r.platform(id); pt.Settles != 1 || pt.Status != platform.Success {
		t.Errorf("platform %+v", pt)
	}
}
