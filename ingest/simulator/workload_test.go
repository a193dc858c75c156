package simulator

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/transferd/transferd/engine"
)

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func testWorkload(t *testing.T, cfg Config, seed uint64) *workload {
	t.Helper()
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(seed, 1))
	w, err := buildWorkload(cfg, r, newTenants(cfg, r), testNow)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

var fullConfig = Config{Transfers: 400, Duplicates: 0.2, Reruns: 0.15, Bad: 0.05}

func TestWorkloadIsReproducible(t *testing.T) {
	bodies := func(w *workload) [][]byte {
		var out [][]byte
		for _, j := range w.jobs {
			if j.ev != nil {
				out = append(out, j.ev.body)
			} else {
				out = append(out, j.bad.body)
			}
		}
		return out
	}
	a, b, c := bodies(testWorkload(t, fullConfig, 1)), bodies(testWorkload(t, fullConfig, 1)), bodies(testWorkload(t, fullConfig, 2))
	if len(a) != len(b) {
		t.Fatalf("same seed, %d and %d requests", len(a), len(b))
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			t.Fatalf("same seed, request %d differs:\n%s\n%s", i, a[i], b[i])
		}
	}
	if len(a) == len(c) && bytes.Equal(a[0], c[0]) {
		t.Error("another seed gave the same workload")
	}
}

// TestWorkloadShape checks that a workload has every feature the simulator
// promises, in about the promised proportions.
func TestWorkloadShape(t *testing.T) {
	w := testWorkload(t, fullConfig, 3)
	count := map[string]int{}
	copies := map[*event]int{}
	adjacent := 0
	for i, j := range w.jobs {
		if j.ev == nil {
			continue
		}
		copies[j.ev]++
		if i > 0 && w.jobs[i-1].ev == j.ev {
			adjacent++
		}
	}
	for _, n := range copies {
		if n > 1 {
			count["duplicated"]++
		}
		if n > 2 {
			count["triplicated"]++
		}
	}
	if len(copies) != len(w.events) {
		t.Errorf("%d of %d events are sent", len(copies), len(w.events))
	}
	for _, tr := range w.transfers {
		if tr.original != nil {
			count["re-run"]++
			if tr.original.original != nil {
				count["re-run of a re-run"]++
			}
			if tr.tenant != tr.original.tenant {
				t.Errorf("re-run %s and its original have different tenants", tr.id)
			}
		}
		for _, e := range tr.events {
			var f map[string]any
			if err := json.Unmarshal(e.body, &f); err != nil {
				t.Fatal(err)
			}
			if p, ok := f["payload"].(map[string]any); ok {
				count["wrapped"]++
				f = p
			}
			if _, ok := f["messageId"]; !ok {
				count[string(tr.tenant.source)+" without messageId"]++
			}
			if got, _ := f["originalTransferId"].(string); tr.original != nil && got != tr.original.id || tr.original == nil && got != "" {
				t.Errorf("event of %s: originalTransferId %q", tr.id, got)
			}
			count[string(e.kind)]++
			if tr.hasReruns && e.kind == engine.KindTransferSettled && e.status != "FAILED" && e.status != "INCOMPLETE" {
				t.Errorf("re-run original %s settled %q", tr.id, e.status)
			}
			d, ok := f["migrationDetails"].(map[string]any)
			if !ok {
				continue
			}
			created := d["createdAt"].(float64)
			if tr.tenant.source == engine.SourceConnect {
				if created >= 1e11 || d["jiraClientKey"] != tr.tenant.issuer && d["confluenceClientKey"] != tr.tenant.issuer ||
					d["jiraClientKey"] != "unknown" && d["confluenceClientKey"] != "unknown" {
					t.Errorf("Connect details %v of tenant %s", d, tr.tenant.issuer)
				}
			} else if created < 1e11 || d["jiraClientKey"] != nil {
				t.Errorf("Forge details %v", d)
			}
		}
	}
	t.Logf("%d transfers, %d events, %d requests, %d adjacent copies, %v", len(w.transfers), len(w.events), len(w.jobs), adjacent, count)
	atLeast := map[string]int{
		"re-run": 60, "re-run of a re-run": 1, "duplicated": len(w.events) / 8, "triplicated": 1,
		"wrapped": 10, "connect without messageId": 10, "forge without messageId": 1,
		string(engine.KindEventFileListUploaded): 1, string(engine.KindExportPhaseCompleted): 1, string(engine.KindListenerErrored): 1,
		string(engine.KindCancellationRequested): 1, string(engine.KindTransferSettled): 200, string(engine.KindUnknown): 1,
	}
	for what, n := range atLeast {
		if count[what] < n {
			t.Errorf("%d %s, want at least %d", count[what], what, n)
		}
	}
	if adjacent == 0 {
		t.Error("no copy is sent next to another")
	}
}

func TestBadRequests(t *testing.T) {
	w := testWorkload(t, fullConfig, 4)
	good := map[string]bool{}
	for _, e := range w.events {
		good[e.id] = true
	}
	var all []*badRequest
	for _, j := range w.jobs {
		if j.bad != nil {
			all = append(all, j.bad)
		}
	}
	queued := len(all)
	for _, tr := range w.transfers {
		all = append(all, tr.deferred...)
	}
	if len(all) != w.bad || queued+w.deferred != w.bad || w.bad < 80 {
		t.Fatalf("%d bad requests, %d in the queue and %d deferred", w.bad, queued, w.deferred)
	}
	kinds := map[BadKind]int{}
	for _, b := range all {
		kinds[b.kind]++
		if good[b.id] {
			t.Errorf("%s request has a good event's identity %s", b.kind, b.id)
		}
		_, err := engine.Parse(b.sender.source, b.body)
		switch b.kind {
		case BadMalformedJSON, BadMissingTransfer, BadUploadWithoutKey:
			if err == nil {
				t.Errorf("%s body parses: %s", b.kind, b.body)
			}
		default:
			if err != nil || b.id == "" {
				t.Errorf("%s body does not parse (%v): %s", b.kind, err, b.body)
			}
		}
		if b.kind == BadCrossTenant {
			if b.sender == b.target.tenant {
				t.Error("cross-tenant request from the owner")
			}
			connectOnly := b.sender.source == engine.SourceConnect && b.target.tenant.source == engine.SourceConnect
			if b.deferred == connectOnly {
				t.Errorf("cross-tenant %s→%s deferred=%v", b.sender.source, b.target.tenant.source, b.deferred)
			}
		} else if b.deferred {
			t.Errorf("%s request deferred", b.kind)
		}
	}
	for _, k := range BadKinds {
		if kinds[k] == 0 {
			t.Errorf("no %s request", k)
		}
	}
}

func TestExpectationsOnlyCountAcknowledged(t *testing.T) {
	w := testWorkload(t, Config{Transfers: 30, Source: MixForge}, 5)
	var tr *transfer
	for _, x := range w.transfers {
		if len(x.events) >= 3 {
			tr = x
			break
		}
	}
	if tr == nil {
		t.Fatal("no transfer with three events")
	}
	last := tr.events[len(tr.events)-1]
	for _, e := range tr.events[:len(tr.events)-1] {
		e.acks.Store(1)
	}
	xs := expectations(w)
	if len(xs) != 1 || xs[0].TransferID != tr.id {
		t.Fatalf("expectations of %d transfers, want only %s", len(xs), tr.id)
	}
	x := xs[0]
	if x.Version != len(tr.events)-1 {
		t.Errorf("version %d, want %d", x.Version, len(tr.events)-1)
	}
	for _, id := range x.Events {
		if id == last.id {
			t.Errorf("unacknowledged event %s expected", id)
		}
	}
	rank := -1
	for _, e := range tr.events[:len(tr.events)-1] {
		if p, ok := e.kind.Phase(); ok && p.Rank() > rank {
			rank = p.Rank()
		}
	}
	if want := engine.Phases[max(rank, 0)]; x.Phase != want {
		t.Errorf("phase %s, want %s", x.Phase, want)
	}
}

// TestDefaultRunNeedsAction: a default 200-transfer run, whatever its
// seed, leaves some transfers errored or cancelling and unsettled, so that
// the dashboard's needs-action badge shows; none of them is one that is
// re-run (those are settled).
func TestDefaultRunNeedsAction(t *testing.T) {
	cfg := Config{Transfers: DefaultTransfers, Duplicates: DefaultDuplicates, Reruns: DefaultReruns, Bad: DefaultBad}
	for seed := uint64(1); seed <= 30; seed++ {
		w := testWorkload(t, cfg, seed)
		for _, e := range w.events {
			e.acks.Store(1)
		}
		rerun := map[string]bool{}
		for _, tr := range w.transfers {
			if tr.original != nil {
				rerun[tr.original.id] = true
			}
		}
		n := 0
		for _, x := range expectations(w) {
			if x.NeedsAction == "" {
				continue
			}
			n++
			if x.Settled != nil || (x.Error == nil && !x.CancellationRequested) {
				t.Errorf("seed %d: transfer %s needs action but is %+v", seed, x.TransferID, x)
			}
			if rerun[x.TransferID] {
				t.Errorf("seed %d: transfer %s needs action but is re-run", seed, x.TransferID)
			}
		}
		if n == 0 {
			t.Errorf("seed %d: no transfer of %d needs action", seed, len(w.transfers))
		}
	}
}
