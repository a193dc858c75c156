package api

import (
	"net/http"
	"strconv"

	"github.com/transferd/transferd/projections"
)

// ParkedList is the body of GET /v1/parked.
type ParkedList struct {
	// Parked are events the projector could not fold, in stream order.
	// They stay in the journal (GET /v1/transfers/{id}/events shows them)
	// but are not applied to their transfer.
	Parked []projections.ParkedEvent `json:"parked"`
	// Total counts every parked event.
	Total uint64 `json:"total"`
	// NextAfter continues the listing (?after=); absent on the last page.
	NextAfter uint64 `json:"nextAfter,omitempty"`
}

// handleParked serves GET /v1/parked?after=&limit=.
func (s *Server) handleParked(w http.ResponseWriter, r *http.Request) error {
	q, err := values(r, "after", "limit")
	if err != nil {
		return err
	}
	var after uint64
	if a := q.Get("after"); a != "" {
		if after, err = parseSeq("after", a); err != nil {
			return err
		}
	}
	limit := DefaultLimit
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > MaxLimit {
			return invalidParam("limit", "want an integer from 1 to "+strconv.Itoa(MaxLimit))
		}
		limit = n
	}
	// One more than asked tells whether a next page exists.
	ps, total, err := s.store.Parked(after, limit+1)
	if err != nil {
		return storeErr(err)
	}
	out := ParkedList{Parked: ps, Total: total}
	if len(ps) > limit {
		out.Parked = ps[:limit]
		out.NextAfter = ps[limit-1].Seq
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
