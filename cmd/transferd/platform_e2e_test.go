package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/transferd/transferd/ingest/driver"
	"github.com/transferd/transferd/ingest/platform"
	"github.com/transferd/transferd/ingest/platform/platformtest"
	"github.com/transferd/transferd/ingest/simulator"
)

// driveRig is serve --drive on a fixed address and data directory, against
// the simulator's platform: a test restarts serve as it likes while the
// simulator plays (importers, later, join the same way).
type driveRig struct {
	t     *testing.T
	keys  *simulator.KeyServer
	plat  *platformtest.Server
	args  []string
	srv   *serving
	url   string
	token string
}

func newDriveRig(t *testing.T, extra ...string) *driveRig {
	t.Helper()
	keys, err := simulator.StartKeyServer("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { keys.Close() })
	plat := platformtest.New(platformtest.Options{AppKey: simulator.AppKey, TooManyEvery: 13})
	t.Cleanup(plat.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	r := &driveRig{t: t, keys: keys, plat: plat, url: "http://" + addr, token: "e2e-drive-token"}
	r.args = append([]string{"--data", t.TempDir(), "--listen", addr, "--api-token", r.token,
		"--drive", "--app-key", simulator.AppKey, "--settle-errored", "--settle-cancelled",
		"--drive-interval", "100ms", "--reconcile-interval", "200ms"}, keys.ServeFlags(simulator.DefaultAppARI)...)
	r.args = append(r.args, extra...)
	r.srv = startServe(r.t, r.args...)
	return r
}

// restart stops serve and starts it again on the same address and data.
func (r *driveRig) restart() {
	r.t.Helper()
	r.srv.stop(r.t)
	r.srv = startServe(r.t, r.args...)
}

// settledByApp counts the platform's transfers the app settled.
func (r *driveRig) settledByApp() int {
	n := 0
	for _, id := range r.plat.Transfers() {
		if tr, _ := r.plat.Get(id); tr.SettledBy == "app" {
			n++
		}
	}
	return n
}

func (r *driveRig) reconciliation() driver.Reconciliation {
	r.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, r.url+"/v1/reconciliation", nil)
	req.Header.Set("Authorization", "Bearer "+r.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out driver.Reconciliation
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&out) != nil {
		r.t.Fatalf("GET /v1/reconciliation: %d", resp.StatusCode)
	}
	return out
}

// TestDriveSettlesOnTheSimulatedPlatform runs serve --drive
// --settle-errored --settle-cancelled --reconcile-interval against the
// simulator's platform for 300 transfers, restarts serve mid-way, and
// checks on the platform that every errored or cancelled Connect transfer
// ends settled by the app once, with the configured status, none twice;
// and that reconciliation finds the uploads and transfers the platform
// lists but whose webhooks the simulator kept back.
func TestDriveSettlesOnTheSimulatedPlatform(t *testing.T) {
	r := newDriveRig(t)
	type outcome struct {
		res simulator.Result
		err error
	}
	done := make(chan outcome, 1)
	progress := &lockedBuffer{}
	go func() {
		res, err := simulator.Run(context.Background(), simulator.Config{
			Target: r.url, KeyServer: r.keys, Platform: r.plat, Transfers: 300, Concurrency: 16, Seed: 20261203,
			Duplicates: simulator.DefaultDuplicates, Reruns: simulator.DefaultReruns, Bad: 0.02,
			UnsentUploads: 3, UnsentTransfers: 2, WaitSettled: 30 * time.Second, ExpectSettled: true,
			Timeout: 50 * time.Second, Progress: progress,
		})
		done <- outcome{res, err}
	}()

	// Restart serve once the app has settled some transfers.
	deadline := time.Now().Add(40 * time.Second)
	for r.settledByApp() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("nothing settled by the app in 40 s\n%s\n%s", progress, r.srv.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	before := r.settledByApp()
	r.restart()
	o := <-done
	if o.err != nil {
		t.Fatalf("%v\n%s\n%s", o.err, progress, r.srv.stderr)
	}
	var summary strings.Builder
	o.res.WriteText(&summary)
	t.Logf("restarted after %d settles by the app\n%s", before, summary.String())
	pr := o.res.Platform
	if err := o.res.Err(); err != nil {
		t.Fatalf("%v\n%s", err, r.srv.stderr)
	}
	if pr.Owed < 5 || pr.SettledTwice != 0 || len(pr.Unsettled) != 0 {
		t.Fatalf("settlement %+v", pr)
	}
	for _, ow := range pr.Owing {
		tr, _ := r.plat.Get(ow.TransferID)
		want := map[string]string{"errored": platform.Failed, "cancelled": platform.Incomplete}[ow.Reason]
		if tr.SettledBy != "app" || tr.Status != want || tr.Settles != 1 || tr.SettleCalls-tr.SettleCallsCut != 1 {
			t.Errorf("%s (%s): %s by %q, %d settles accepted, %d calls (%d cut); want %s by the app once",
				ow.TransferID, ow.Reason, tr.Status, tr.SettledBy, tr.Settles, tr.SettleCalls, tr.SettleCallsCut, want)
		}
	}
	if n := r.settledByApp(); n != pr.Owed {
		t.Errorf("the app settled %d transfers, %d were owed a settle", n, pr.Owed)
	}

	// Reconciliation finds what the simulator kept back. A pass asks the
	// platform for every active transfer's data list, all on the one
	// simulated host, within the client's rate limit per host (10/s): under
	// the race detector on a loaded machine a pass takes several seconds.
	var rec driver.Reconciliation
	deadline = time.Now().Add(60 * time.Second)
	for {
		rec = r.reconciliation()
		missing := map[[2]string]bool{}
		for _, u := range rec.MissingUploads {
			missing[[2]string{u.TransferID, u.S3Key}] = true
		}
		var unknown []string
		for _, u := range rec.UnknownTransfers {
			unknown = append(unknown, u.TransferID)
		}
		found := slices.Equal(unknown, pr.UnsentTransfers) && len(rec.MissingUploads) == len(pr.UnsentUploads)
		for _, u := range pr.UnsentUploads {
			found = found && missing[[2]string{u.TransferID, u.S3Key}]
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("reconciliation %+v\nwant unknown %v, missing %v", rec, pr.UnsentTransfers, pr.UnsentUploads)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(rec.Errors) != 0 {
		t.Errorf("reconciliation errors: %v", rec.Errors)
	}
	resp, err := http.Get(r.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m strings.Builder
	buf := make([]byte, 1<<16)
	for {
		n, err := resp.Body.Read(buf)
		m.Write(buf[:n])
		if err != nil {
			break
		}
	}
	if !strings.Contains(m.String(), "transferd_reconcile_missing_uploads 3") || !strings.Contains(m.String(), "transferd_reconcile_unknown_transfers 2") {
		t.Error("the reconciliation metrics do not show 3 missing uploads and 2 unknown transfers")
	}
}
