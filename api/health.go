package api

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/transferd/transferd/engine/journal"
)

// Readiness is the body of GET /readyz: 200 with Status "ready", or 503
// with Status "not_ready" and the Reason.
type Readiness struct {
	Status    string          `json:"status"`
	Reason    string          `json:"reason,omitempty"`
	Journal   *JournalState   `json:"journal,omitempty"`
	Projector *ProjectorState `json:"projector,omitempty"`
	Bounds    LagBounds       `json:"bounds"`
}

// JournalState is what /readyz saw of the journal.
type JournalState struct {
	LastSeq uint64 `json:"lastSeq"` // the last MIGRATIONS sequence
	// Durability is what a 200 survives (journal.Durability); the warning
	// is set where one host crash can lose acknowledged events.
	Durability        string `json:"durability,omitempty"`
	DurabilityWarning string `json:"durabilityWarning,omitempty"`
}

// ProjectorState is how far the projection is behind the journal.
type ProjectorState struct {
	Checkpoint   uint64  `json:"checkpoint"`   // the last sequence applied
	LagSequences uint64  `json:"lagSequences"` // messages stored but not applied
	LagSeconds   float64 `json:"lagSeconds"`   // age of the oldest message not applied
}

// LagBounds are the lag limits beyond which /readyz answers 503.
type LagBounds struct {
	Sequences uint64  `json:"lagSequences"`
	Seconds   float64 `json:"lagSeconds"`
}

// handleHealth serves GET /healthz: the process is alive.
func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) error {
	writeBody(w, http.StatusOK, []byte(`{"status":"ok"}`+"\n"))
	return nil
}

// handleReady serves GET /readyz: the journal can store events
// (journal.Journal.Writable) and answers within Config.ReadyTimeout, and
// the projector is behind it by at most Config.MaxLagSequences messages and Config.MaxLag of time (the age of the
// oldest message not yet applied). Either bound exceeded is 503.
func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ReadyTimeout)
	defer cancel()
	rd := Readiness{Status: "ready", Bounds: LagBounds{s.cfg.MaxLagSequences, s.cfg.MaxLag.Seconds()}}
	js, ps, err := s.lag(ctx)
	rd.Journal, rd.Projector = js, ps
	switch werr := s.journal.Writable(); {
	case s.ctx.Err() != nil:
		rd.Reason = "the server is shutting down"
	case werr != nil:
		rd.Reason = "journal cannot store events: " + werr.Error()
	case err != nil:
		rd.Reason = "journal unreachable: " + err.Error()
	case ps.LagSequences > s.cfg.MaxLagSequences:
		rd.Reason = fmt.Sprintf("projector %d messages behind the journal (bound %d)", ps.LagSequences, s.cfg.MaxLagSequences)
	case ps.LagSeconds > s.cfg.MaxLag.Seconds():
		rd.Reason = fmt.Sprintf("projector %.1fs behind the journal (bound %v)", ps.LagSeconds, s.cfg.MaxLag)
	}
	status := http.StatusOK
	if rd.Reason != "" {
		rd.Status, status = "not_ready", http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, rd)
	return nil
}

// lag measures how far the projection is behind MIGRATIONS. The time lag is
// the age of the first message not applied, as the stream stored it.
func (s *Server) lag(ctx context.Context) (*JournalState, *ProjectorState, error) {
	st, err := s.journal.State(ctx, journal.StreamEvents)
	if err != nil {
		return nil, nil, err
	}
	last := st.LastSeq
	cp := s.store.Checkpoint()
	ps := &ProjectorState{Checkpoint: cp}
	if last > cp {
		ps.LagSequences = last - cp
		at, err := s.journal.StoredAt(ctx, cp+1)
		if err != nil {
			return &JournalState{LastSeq: last}, ps, err
		}
		ps.LagSeconds = max(0, time.Since(at).Seconds())
	}
	d := s.journal.Durability()
	return &JournalState{LastSeq: last, Durability: d.Guarantee, DurabilityWarning: d.Warning}, ps, nil
}
