package ingest_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/ingest"
)

// The ingest benchmarks play the platform's shape, not an easy one: many
// transfers (an event in 4.4 is the first of its transfer, which binds it
// to its tenant), benchTenants Connect tenants, every transfer's events
// (a listener-triggered, two to four app-data-uploaded, and a
// transfer-settled for two in five) shuffled together with all the
// others', so first events are everywhere. A run of N requests has about
// N/4.4 transfers: -benchtime 200000x gives 45,000.
const (
	benchTenants         = 20
	benchEventsPerTransf = 4.4
)

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
	r := rand.New(rand.NewPCG(1, 2))
	w := &benchWorkload{}
	for i := range benchTenants {
		w.tenants = append(w.tenants, fmt.Sprintf("bench-tenant-%02d", i))
	}
	for t := 0; len(w.reqs) < n; t++ {
		tenant := r.IntN(benchTenants)
		id := fmt.Sprintf("%08x-bench-%d", r.Uint32(), t)
		events := []string{"listener-triggered"}
		for range 2 + r.IntN(3) {
			events = append(events, "app-data-uploaded")
		}
		if r.IntN(5) < 2 {
			events = append(events, "transfer-settled")
		}
		for k, kind := range events {
			w.reqs = append(w.reqs, benchReq{tenant: tenant, body: benchEvent(w.tenants[tenant], id, kind, k)})
		}
	}
	r.Shuffle(len(w.reqs), func(i, j int) { w.reqs[i], w.reqs[j] = w.reqs[j], w.reqs[i] })
	return w
}

// benchEvent is a ~600-byte Connect event as the platform sends them.
func benchEvent(tenant, transferID, kind string, k int) []byte {
	n := strconv.Itoa(k)
	extra := ""
	switch kind {
	case "app-data-uploaded":
		extra = `,"s3Key":"636abf0f-38a2-45c1-8c68-9c7edde97f3f-` + transferID + `-` + n + `","label":"some-optional-label"`
	case "transfer-settled":
		extra = `,"transferStatus":"SUCCESS"`
	}
	return []byte(`{"eventType":"` + kind + `","cloudAppKey":"my-cloud-app-key","transferId":"` + transferID +
		`","messageId":"` + transferID + `-msg-` + n + `","serverAppVersion":"1.0","migrationDetails":{"migrationId":"8e60dc59-78d6-484f-966a-a09ff8be8ed0",` +
		`"migrationScopeId":"442bdd69-622d-323d-889d-383b41d8e536","name":"Migration of my Confluence page","createdAt":1597211035,` +
		`"jiraClientKey":"unknown","confluenceClientKey":"` + tenant + `","cloudUrl":"https://cloud-site-under-migration.atlassian.net"}` + extra + `}`)
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
