package simulator

import (
	"slices"
	"testing"

	"github.com/transferd/transferd/engine"
)

// TestShape: every transfer's lifecycle arrives whole, first exactly once,
// out of order and shuffled with the others', as parseable Connect events
// of the kind and transfer said, a migration's transfers all of one tenant;
// the same seed repeats it.
func TestShape(t *testing.T) {
	const events, tenants = 20000, 20
	s := NewShape(7, events, tenants)
	if s.Len() < events || s.Len() > events+6 {
		t.Fatalf("Len %d for %d events asked", s.Len(), events)
	}
	type seen struct {
		kinds  []engine.Kind
		tenant int
		firsts int
		at     []int
	}
	byID := map[string]*seen{}
	migrations := map[string]int{} // the tenant of each
	var firsts, triggeredFirst, n int
	for ; ; n++ {
		e, ok := s.Next()
		if !ok {
			break
		}
		ev, err := engine.Parse(engine.SourceConnect, e.Body)
		if err != nil {
			t.Fatalf("event %d: %v\n%s", n, err, e.Body)
		}
		if ev.TransferID != e.TransferID || ev.Kind != e.Kind {
			t.Fatalf("event %d parses as %s %s, said %s %s", n, ev.TransferID, ev.Kind, e.TransferID, e.Kind)
		}
		if e.Tenant < 0 || e.Tenant >= tenants {
			t.Fatalf("event %d: tenant %d of %d", n, e.Tenant, tenants)
		}
		if ev.Migration == nil {
			t.Fatalf("event %d has no migrationDetails", n)
		}
		if m, ok := migrations[ev.Migration.MigrationID]; ok && m != e.Tenant {
			t.Fatalf("migration %s has transfers of tenants %d and %d", ev.Migration.MigrationID, m, e.Tenant)
		}
		migrations[ev.Migration.MigrationID] = e.Tenant
		x := byID[e.TransferID]
		if x == nil {
			x = &seen{tenant: e.Tenant}
			byID[e.TransferID] = x
		}
		if x.tenant != e.Tenant {
			t.Fatalf("transfer %s sent by tenants %d and %d", e.TransferID, x.tenant, e.Tenant)
		}
		x.kinds = append(x.kinds, e.Kind)
		x.at = append(x.at, n)
		if e.First {
			x.firsts++
			firsts++
			if e.Kind == engine.KindListenerTriggered {
				triggeredFirst++
			}
		}
	}
	if n != s.Len() {
		t.Fatalf("Next gave %d events, Len says %d", n, s.Len())
	}
	if want := (s.Transfers() + 63) / 64; len(migrations) != want {
		t.Errorf("%d migrations, want %d (64 transfers each)", len(migrations), want)
	}
	if len(byID) != s.Transfers() {
		t.Fatalf("%d transfers seen, Transfers says %d", len(byID), s.Transfers())
	}
	spread := 0
	for id, x := range byID {
		if x.firsts != 1 || len(x.kinds) < 3 || len(x.kinds) > 6 {
			t.Fatalf("transfer %s: %d events marked first, kinds %v", id, x.firsts, x.kinds)
		}
		if slices.Index(x.kinds, engine.KindListenerTriggered) < 0 {
			t.Fatalf("transfer %s has no listener-triggered: %v", id, x.kinds)
		}
		if x.at[len(x.at)-1]-x.at[0] > events/10 {
			spread++
		}
	}
	// About one event in 4.4 is a transfer's first; the lifecycle's order
	// is not the arrival order; a transfer's events are spread over the run.
	if r := float64(n) / float64(firsts); r < 4 || r > 4.8 {
		t.Errorf("one event in %.2f is a transfer's first, want about 4.4", r)
	}
	if triggeredFirst > firsts*2/3 {
		t.Errorf("%d of %d transfers start with listener-triggered: not out of order", triggeredFirst, firsts)
	}
	if spread < len(byID)/2 {
		t.Errorf("only %d of %d transfers spread over more than a tenth of the run", spread, len(byID))
	}

	again := NewShape(7, events, tenants)
	other := NewShape(8, events, tenants)
	a1, _ := again.Next()
	s2 := NewShape(7, events, tenants)
	b1, _ := s2.Next()
	o1, _ := other.Next()
	if string(a1.Body) != string(b1.Body) {
		t.Errorf("the same seed gave different first events")
	}
	if string(a1.Body) == string(o1.Body) {
		t.Errorf("seeds 7 and 8 gave the same first event")
	}
}
