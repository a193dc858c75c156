package ingest_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/ingest"
	"github.com/transferd/transferd/ingest/simulator"
)

// The ingest benchmarks play the platform's shape, not an easy one
// (simulator.Shape): many transfers (an event in 4.4 is the first of its
// transfer, which binds it to its tenant), benchTenants Connect tenants,
// every transfer's events shuffled together with all the others', so first
// events are everywhere. A run of N requests has about N/4.4 transfers:
// -benchtime 200000x gives 45,000.
const benchTenants = 20

// benchWorkload is the requests of one run, in sending order.
type benchWorkload struct {
	tenants []string
	reqs    []benchReq
	next    atomic.Int64
}

type benchReq struct {
	tenant int
	body   []byte
}

// newBenchWorkload draws about n requests (at least n) from a fixed seed,
// so every target of a run, and every run, sends the same ones.
func newBenchWorkload(n int) *benchWorkload {
	w := &benchWorkload{}
	for i := range benchTenants {
		w.tenants = append(w.tenants, simulator.ShapeTenant(i))
	}
	shape := simulator.NewShape(1, n, benchTenants)
	w.reqs = make([]benchReq, 0, shape.Len())
	for e, ok := shape.Next(); ok; e, ok = shape.Next() {
		w.reqs = append(w.reqs, benchReq{tenant: e.Tenant, body: e.Body})
	}
	return w
}

// take returns the next request, from the start again after the last
// (later rounds are then duplicates, as the platform's retries are).
func (w *benchWorkload) take() benchReq {
	return w.reqs[int(w.next.Add(1)-1)%len(w.reqs)]
}

// connectAuth registers the workload's tenants with p and returns the
// Authorization header of each (a Connect token binds method, path and
// query, so one per tenant serves the run).
func (w *benchWorkload) connectAuth(b *testing.B, p *platform) []string {
	b.Helper()
	auth := make([]string, len(w.tenants))
	for i, name := range w.tenants {
		secret := []byte("secret-" + name + "-0123456789")
		if err := p.reg.Put(context.Background(), ingest.Tenant{ClientKey: name, SharedSecret: string(secret)}); err != nil {
			b.Fatal(err)
		}
		auth[i] = "JWT " + p.connectToken(name, secret, 10*time.Minute)
	}
	return auth
}
