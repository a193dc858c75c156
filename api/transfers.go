package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/engine/journal"
	"github.com/transferd/transferd/projections"
)

// handleTransfer serves GET /v1/transfers/{id}: the transfer's view from
// the projection, or with ?at= as folded from the journal up to that point.
func (s *Server) handleTransfer(w http.ResponseWriter, r *http.Request) error {
	id, err := transferID(r)
	if err != nil {
		return err
	}
	if r.URL.RawQuery != "" {
		q, err := values(r, "at")
		if err != nil {
			return err
		}
		if at := q.Get("at"); at != "" {
			b, err := s.transferAt(r, id, at)
			if err != nil {
				return err
			}
			writeBody(w, http.StatusOK, append(b, '\n'))
			return nil
		}
	}
	stored, err := s.store.TransferJSON(id)
	if err != nil {
		if errors.Is(err, projections.ErrNotFound) {
			return notFound("no transfer " + id)
		}
		return storeErr(err)
	}
	buf := buffers.Get().(*[]byte)
	defer buffers.Put(buf)
	b, err := appendView((*buf)[:0], stored)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	writeBody(w, http.StatusOK, b)
	if cap(b) <= maxPooled {
		*buf = b
	}
	return nil
}

// buffers recycle reply buffers of GET /v1/transfers/{id}: net/http copies
// a reply into its own buffer during Write.
var buffers = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// maxPooled keeps exceptionally large replies out of the pool.
const maxPooled = 64 << 10

// point is a position in the stream: a sequence, or a receive time.
type point struct {
	seq  uint64
	time time.Time
}

func parsePoint(s string) (point, error) {
	if n, err := strconv.ParseUint(s, 10, 64); err == nil {
		return point{seq: n}, nil
	}
	if t, ok := parseTime(s); ok {
		return point{time: t}, nil
	}
	return point{}, invalidParam("at", "want an RFC 3339 time (2026-03-01T12:00:00Z) or a stream sequence")
}

// includes reports whether env is at or before p: its sequence is at most
// p's, or it was received at or before p's time. Receive times come from
// the ingest clocks, so they need not grow with the sequence.
func (p point) includes(env *journal.Envelope) bool {
	if p.time.IsZero() {
		return env.Seq <= p.seq
	}
	return !env.ReceivedAt.After(p.time)
}

// transferAt folds transfer id's events up to at from the journal, as the
// projector would have folded them then, independently of the projection.
// Payloads that no longer parse are folded as unknown events, as the
// projector does.
func (s *Server) transferAt(r *http.Request, id, at string) ([]byte, error) {
	p, err := parsePoint(at)
	if err != nil {
		return nil, err
	}
	var events []*engine.Event
	for env, err := range s.journal.Scan(r.Context(), journal.TransferEventsFilter(id)) {
		if err != nil {
			var cerr *journal.CorruptError
			if errors.As(err, &cerr) {
				continue // the projector skips it too
			}
			return nil, err
		}
		if !p.includes(&env) {
			if p.time.IsZero() {
				break // stream order: nothing later is included
			}
			continue
		}
		ev, _ := env.Event() // usable even when the payload no longer parses
		events = append(events, ev)
	}
	if len(events) == 0 {
		return nil, notFound("transfer " + id + " has no events at " + at)
	}
	return marshalView(engine.Fold(id, events))
}

// TransferList is the body of GET /v1/transfers.
type TransferList struct {
	Transfers  []engine.View `json:"transfers"`
	NextCursor string        `json:"nextCursor,omitempty"`
	// Tenant is set for a list by migrationId or cloudUrl: the issuer
	// whose transfers are listed, ?tenant= when given, else the issuer of
	// the oldest transfer naming that migration id (or cloud URL); absent
	// when none does. OtherTenants are the other issuers with transfers
	// naming it, sorted; absent when there are none. Such a list stays
	// inside one tenant, as GET /v1/migrations/{id} does.
	Tenant       string   `json:"tenant,omitempty"`
	OtherTenants []string `json:"otherTenants,omitempty"`
}

// MaxLimit is the largest page of GET /v1/transfers; DefaultLimit the page
// size when limit is not given.
const (
	MaxLimit     = 500
	DefaultLimit = 50
)

// handleList serves GET /v1/transfers.
func (s *Server) handleList(w http.ResponseWriter, r *http.Request) error {
	f, err := parseFilter(r)
	if err != nil {
		return err
	}
	page, err := s.store.List(f)
	switch {
	case errors.Is(err, projections.ErrInvalidCursor):
		return invalidParam("cursor", "not a cursor from a previous page")
	case errors.Is(err, projections.ErrInvalidFilter):
		return invalidParam("phase", err.Error())
	case err != nil:
		return storeErr(err)
	}
	writeJSON(w, http.StatusOK, TransferList{Transfers: views(page.Transfers), NextCursor: page.NextCursor,
		Tenant: page.Tenant, OtherTenants: page.OtherTenants})
	return nil
}

func parseFilter(r *http.Request) (projections.Filter, error) {
	q, err := values(r, "migrationId", "cloudUrl", "tenant", "phase", "needsAction", "limit", "cursor")
	if err != nil {
		return projections.Filter{}, err
	}
	f := projections.Filter{
		MigrationID: q.Get("migrationId"),
		CloudURL:    q.Get("cloudUrl"),
		Tenant:      q.Get("tenant"),
		Cursor:      q.Get("cursor"),
		Limit:       DefaultLimit,
	}
	if p := q.Get("phase"); p != "" {
		if f.Phase = engine.Phase(p); !f.Phase.Valid() {
			return f, invalidParam("phase", "unknown phase "+strconv.Quote(p)+"; want one of pending, listener_triggered, data_uploaded, export_completed, listener_errored, cancellation_requested, settled")
		}
	}
	switch na := q.Get("needsAction"); na {
	case "":
	case "true", "settle":
		yes := true
		f.NeedsAction = &yes
	case "false":
		no := false
		f.NeedsAction = &no
	default:
		return f, invalidParam("needsAction", "want true, false or settle")
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > MaxLimit {
			return f, invalidParam("limit", "want an integer from 1 to "+strconv.Itoa(MaxLimit))
		}
		f.Limit = n
	}
	return f, nil
}

// Lineage is the body of GET /v1/transfers/{id}/lineage.
type Lineage struct {
	Root      string        `json:"root"`
	Transfers []engine.View `json:"transfers"`
}

// handleLineage serves GET /v1/transfers/{id}/lineage.
func (s *Server) handleLineage(w http.ResponseWriter, r *http.Request) error {
	id, err := transferID(r)
	if err != nil {
		return err
	}
	if err := checkQuery(r); err != nil {
		return err
	}
	root, ts, err := s.store.Lineage(id)
	if errors.Is(err, projections.ErrNotFound) {
		return notFound("no transfer " + id)
	} else if err != nil {
		return storeErr(err)
	}
	writeJSON(w, http.StatusOK, Lineage{Root: root, Transfers: views(ts)})
	return nil
}

// Migration is the body of GET /v1/migrations/{migrationId}.
type Migration struct {
	MigrationID string `json:"migrationId"`
	// Tenant is the issuer whose transfers are listed: ?tenant= when
	// given, else the issuer of the migration's oldest transfer.
	Tenant string `json:"tenant"`
	// OtherTenants are the other issuers with transfers naming this
	// migration id, sorted; absent when there are none. A migration id
	// belongs to one tenant: another's use of it is shown, never mixed in.
	OtherTenants []string `json:"otherTenants,omitempty"`
	// Migration holds the details as the oldest transfer that has them
	// reports them.
	Migration *engine.Migration `json:"migration"`
	// Transfers are the tenant's transfers of the migration, oldest first.
	Transfers []engine.View `json:"transfers"`
}

// handleMigration serves GET /v1/migrations/{migrationId}[?tenant=].
func (s *Server) handleMigration(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("migrationId")
	q, err := values(r, "tenant")
	if err != nil {
		return err
	}
	tenant := q.Get("tenant")
	page, err := s.store.Migration(id, tenant)
	switch {
	case errors.Is(err, projections.ErrNotFound) && tenant != "":
		return notFound("no migration " + id + " of tenant " + tenant)
	case errors.Is(err, projections.ErrNotFound):
		return notFound("no migration " + id)
	case err != nil:
		return storeErr(err)
	}
	ts := page.Transfers
	m := Migration{MigrationID: id, Tenant: page.Tenant, OtherTenants: page.OtherTenants, Transfers: views(ts)}
	for _, t := range ts {
		if t.Migration != nil {
			m.Migration = t.Migration
			break
		}
	}
	writeJSON(w, http.StatusOK, m)
	return nil
}

func views(ts []*engine.Transfer) []engine.View {
	vs := make([]engine.View, len(ts))
	for i, t := range ts {
		vs[i] = t.View()
	}
	return vs
}

// transferData turns a message of the TRANSFERS feed into a view: the feed
// carries the canonical transfer, or already its view.
func (s *Server) transferData(b []byte) ([]byte, error) {
	if bytes.Contains(b, []byte(`"needsAction":`)) {
		if !json.Valid(b) {
			return nil, errors.New("api: transfer state is not JSON")
		}
		return oneLine(b), nil
	}
	v, err := appendView(nil, b)
	if err != nil {
		return nil, err
	}
	return oneLine(v), nil
}

// errStoreUnavailable marks a projection that cannot answer (closed).
var errStoreUnavailable = errors.New("api: projection unavailable")

func storeErr(err error) error {
	if errors.Is(err, projections.ErrClosed) {
		return errors.Join(errStoreUnavailable, err)
	}
	return err
}
