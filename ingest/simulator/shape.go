package simulator

import (
	"fmt"
	"math/rand/v2"
	"strconv"

	"github.com/transferd/transferd/engine"
)

// Shape is the load the platform sends at scale, for benchmarks: Connect
// events of many transfers across tenants, ~4.4 a transfer (a
// listener-triggered, two to four app-data-uploaded, and in two transfers
// of five a transfer-settled), every transfer's events in an order of their
// own and all transfers' events shuffled together, so that about one event
// in 4.4 is the first of its transfer to arrive. Each event is a ~600-byte
// payload as the platform's examples are, with a messageId; a migration has
// 64 transfers, all of one tenant.
//
// A Shape plans the order up front (4 bytes an event) and makes each event
// only when Next is called, so that a million of them do not weigh on what
// a benchmark measures. The same seed gives the same events in the same
// order. A Shape is not safe for concurrent use.
type Shape struct {
	seed    uint64
	tenants int
	order   []int32 // the transfer of each event, in sending order
	sent    []uint8 // events of each transfer sent so far
	next    int
}

// ShapedEvent is one event of a Shape.
type ShapedEvent struct {
	// Tenant is the index of the sending tenant, from 0; ShapeTenant names it.
	Tenant     int
	TransferID string
	Kind       engine.Kind
	// First reports that no event of the transfer came before this one.
	First bool
	// Body is the Connect webhook's payload.
	Body []byte
}

// NewShape plans events (at least one transfer's worth) of the platform's
// shape across tenants (at least 1), from seed.
func NewShape(seed uint64, events, tenants int) *Shape {
	s := &Shape{seed: seed, tenants: max(tenants, 1)}
	for t := 0; len(s.order) < events || t == 0; t++ {
		for range len(s.kinds(t)) {
			s.order = append(s.order, int32(t))
		}
	}
	s.sent = make([]uint8, s.order[len(s.order)-1]+1)
	r := rand.New(rand.NewPCG(seed, ^uint64(0))) // a stream no transfer draws from
	r.Shuffle(len(s.order), func(i, j int) { s.order[i], s.order[j] = s.order[j], s.order[i] })
	return s
}

// ShapeTenant is the client key of tenant i of a Shape.
func ShapeTenant(i int) string { return fmt.Sprintf("bench-tenant-%02d", i) }

// Len is how many events the Shape sends: its transfers' whole lifecycles,
// so from the number asked up to 6 more.
func (s *Shape) Len() int { return len(s.order) }

// Transfers is how many transfers the events belong to.
func (s *Shape) Transfers() int { return len(s.sent) }

// Next returns the next event, and false once all were returned.
func (s *Shape) Next() (ShapedEvent, bool) {
	if s.next == len(s.order) {
		return ShapedEvent{}, false
	}
	t := int(s.order[s.next])
	s.next++
	k := int(s.sent[t])
	s.sent[t]++
	kinds := s.kinds(t)
	// The k-th event of t to arrive is the perm[k]-th of its lifecycle:
	// the platform delivers out of order.
	perm := rand.New(rand.NewPCG(s.seed, uint64(t)*4+1)).Perm(len(kinds))
	n := perm[k]
	tenant := s.tenant(t)
	id := s.transferID(t)
	return ShapedEvent{
		Tenant:     tenant,
		TransferID: id,
		Kind:       kinds[n],
		First:      k == 0,
		Body:       shapedBody(ShapeTenant(tenant), fmt.Sprintf("8e60dc59-78d6-484f-%04x-%012x", uint16(s.seed), t/shapeMigration), id, kinds[n], n),
	}, true
}

// kinds is transfer t's lifecycle, drawn from the seed and t alone.
func (s *Shape) kinds(t int) []engine.Kind {
	r := rand.New(rand.NewPCG(s.seed, uint64(t)*4))
	kinds := []engine.Kind{engine.KindListenerTriggered}
	for range 2 + r.IntN(3) {
		kinds = append(kinds, engine.KindAppDataUploaded)
	}
	if r.IntN(5) < 2 {
		kinds = append(kinds, engine.KindTransferSettled)
	}
	return kinds
}

// shapeMigration is how many transfers a migration of a Shape has: a
// migration is one customer's, so its transfers share a tenant.
const shapeMigration = 64

// tenant is the tenant of transfer t's migration.
func (s *Shape) tenant(t int) int {
	m := uint64(t / shapeMigration)
	return int(rand.New(rand.NewPCG(s.seed, m*4+2)).Uint64() % uint64(s.tenants))
}

// transferID is a UUID-shaped id, unique per t (and per seed).
func (s *Shape) transferID(t int) string {
	return fmt.Sprintf("%08x-%04x-4000-8000-%012x", uint32(t)*2654435761, uint16(s.seed), t)
}

// shapedBody is the n-th event of a transfer's lifecycle, a ~600-byte
// Connect payload as the platform sends them.
func shapedBody(tenant, migrationID, transferID string, kind engine.Kind, n int) []byte {
	k := strconv.Itoa(n)
	extra := ""
	switch kind {
	case engine.KindAppDataUploaded:
		extra = `,"s3Key":"636abf0f-38a2-45c1-8c68-9c7edde97f3f-` + transferID + `-` + k + `","label":"some-optional-label"`
	case engine.KindTransferSettled:
		extra = `,"transferStatus":"SUCCESS"`
	}
	return []byte(`{"eventType":"` + engine.ConnectEventType(kind) + `","cloudAppKey":"my-cloud-app-key","transferId":"` + transferID +
		`","messageId":"` + transferID + `-msg-` + k + `","serverAppVersion":"1.0","migrationDetails":{"migrationId":"` + migrationID + `",` +
		`"migrationScopeId":"442bdd69-622d-323d-889d-383b41d8e536","name":"Migration of my Confluence page","createdAt":1597211035,` +
		`"jiraClientKey":"unknown","confluenceClientKey":"` + tenant + `","cloudUrl":"https://cloud-site-under-migration.atlassian.net"}` + extra + `}`)
}
