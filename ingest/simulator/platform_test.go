package simulator_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/ingest/platform"
	"github.com/transferd/transferd/ingest/platform/platformtest"
	"github.com/transferd/transferd/ingest/simulator"
)

// TestRunWithPlatform plays a run with the simulator's platform: the
// Connect tenants are installed with their site there, Forge events carry
// its apiBaseUrl and a system token (ingest keeps them), every transfer
// exists there, the webhooks kept back are listed there but not stored, and
// the workload of the seed is the one a run without a platform sends.
func TestRunWithPlatform(t *testing.T) {
	p := platformtest.New(platformtest.Options{AppKey: simulator.AppKey, TooManyEvery: 7})
	defer p.Close()
	s := startServer(t)
	cfg := s.config(60)
	cfg.Platform, cfg.UnsentUploads, cfg.UnsentTransfers = p, 2, 1
	res, err := simulator.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	checkServer(t, s, res)
	pr := res.Platform
	if pr == nil || pr.Transfers != res.Transfers+1 || len(pr.UnsentUploads) != 2 || len(pr.UnsentTransfers) != 1 {
		t.Fatalf("platform result %+v", pr)
	}
	if got := len(p.Transfers()); got != pr.Transfers {
		t.Fatalf("%d transfers on the platform, %d reported", got, pr.Transfers)
	}
	_, byTransfer := stored(t, s.journal)
	c := &platform.Client{AppKey: simulator.AppKey, Rate: -1}
	for _, u := range pr.UnsentUploads {
		events := byTransfer[u.TransferID]
		tr := engine.Fold(u.TransferID, events)
		if len(events) == 0 || slices.ContainsFunc(tr.Uploads, func(x engine.Upload) bool { return x.Key == u.S3Key }) {
			t.Errorf("unsent upload %s of %s: stored %d events, uploads %v", u.S3Key, u.TransferID, len(events), tr.Uploads)
		}
		ten, err := s.tenants.Get(context.Background(), tr.Issuer)
		if err != nil || !strings.HasPrefix(ten.BaseURL, p.URL) {
			t.Fatalf("tenant %s installed with baseUrl %q (%v), not on the platform %s", tr.Issuer, ten.BaseURL, err, p.URL)
		}
		list, err := c.AppDataList(context.Background(), platform.ConnectSite{BaseURL: ten.BaseURL, Secret: []byte(ten.SharedSecret)}, u.TransferID)
		if err != nil || !slices.ContainsFunc(list, func(d platform.AppData) bool { return d.S3Key == u.S3Key }) {
			t.Errorf("the platform's data list of %s: %v %v", u.TransferID, list, err)
		}
	}
	if len(byTransfer[pr.UnsentTransfers[0]]) != 0 {
		t.Error("an unsent transfer was stored")
	}
	forge := 0
	for id, events := range byTransfer {
		tr := engine.Fold(id, events)
		if tr.Source != engine.SourceForge {
			continue
		}
		cred, ok := s.handler.ForgeCredential(tr.Issuer)
		if !ok || !strings.HasPrefix(cred.APIBaseURL, p.URL) || cred.Token == "" {
			t.Fatalf("Forge credential of %s: %v %v", tr.Issuer, cred, ok)
		}
		list, err := c.AppDataList(context.Background(), platform.ForgeInstallation{APIBaseURL: cred.APIBaseURL, Token: cred.Token}, id)
		if err != nil && !strings.Contains(err.Error(), "settled") {
			t.Fatalf("Forge data list of %s: %v", id, err)
		}
		forge += len(list)
	}
	if res.ForgeInstallations == 0 {
		t.Fatal("no Forge installation")
	}

	// Nothing settles yet: the owed transfers are unsettled, none twice.
	if pr.SettledTwice != 0 || len(pr.Unsettled) != pr.Owed || pr.Owed == 0 {
		t.Fatalf("settlement before any app: %+v", pr)
	}
	pr.Expect = true
	if err := res.Err(); err == nil || !strings.Contains(err.Error(), "not settled by the app") {
		t.Fatalf("ExpectSettled with owed transfers unsettled: %v", err)
	}

	// The same seed without a platform plays the same transfers.
	plain, err := simulator.Run(context.Background(), startServer(t).config(60))
	if err != nil || plain.Platform != nil {
		t.Fatal(err, plain.Platform)
	}
	ids := func(r simulator.Result) []string {
		var out []string
		for _, x := range r.Expect {
			out = append(out, x.TransferID)
		}
		slices.Sort(out)
		return out
	}
	if !slices.Equal(ids(plain), ids(res)) {
		t.Error("a platform changed the workload's transfers")
	}
}

// TestRunSettleAll: with SettleAll every Connect transfer the platform does
// not settle itself is owed a settle (those of a --settle-done serve), the
// errored and cancelled ones among them with their reasons.
func TestRunSettleAll(t *testing.T) {
	run := func(all bool) *simulator.PlatformResult {
		p := platformtest.New(platformtest.Options{AppKey: simulator.AppKey})
		t.Cleanup(p.Close)
		cfg := startServer(t).config(60)
		cfg.Platform, cfg.SettleAll = p, all
		res, err := simulator.Run(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := res.Err(); err != nil {
			t.Fatal(err)
		}
		for _, o := range res.Platform.Owing {
			if tr, ok := p.Get(o.TransferID); !ok || tr.Status != platform.InProgress {
				t.Errorf("owed %s (%s): on the platform %+v", o.TransferID, o.Reason, tr)
			}
		}
		return res.Platform
	}
	some, all := run(false), run(true)
	owed := map[string]string{}
	for _, o := range all.Owing {
		owed[o.TransferID] = o.Reason
	}
	for _, o := range some.Owing {
		if owed[o.TransferID] != o.Reason {
			t.Errorf("%s owed for %s without SettleAll, %q with it", o.TransferID, o.Reason, owed[o.TransferID])
		}
	}
	if all.Owed != len(all.Owing) || all.Owed <= some.Owed || some.Owed == 0 {
		t.Errorf("owed %d with SettleAll, %d without", all.Owed, some.Owed)
	}
	if !slices.ContainsFunc(all.Owing, func(o simulator.OwedSettle) bool { return o.Reason == "done" }) {
		t.Errorf("no transfer owed as done: %v", all.Owing)
	}
}
