package api

import (
	"cmp"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/projections"
)

// NearDeadlineWindow is how close to its 14-day limit an unsettled
// transfer counts as near its deadline (engine.Transfer.NearDeadline), the
// default of the driver's metric transferd_transfers_near_deadline.
const NearDeadlineWindow = engine.NearWindow

// DeadlineList is the body of GET /v1/deadlines.
type DeadlineList struct {
	// Transfers are the unsettled transfers near or past a deadline, the
	// most pressing (earliest deadline) first, at most limit of them.
	Transfers []NearDeadline `json:"transfers"`
	// Total counts them all.
	Total int `json:"total"`
}

// NearDeadline is one transfer of GET /v1/deadlines.
type NearDeadline struct {
	TransferID  string        `json:"transferId"`
	Tenant      string        `json:"tenant"`
	Source      engine.Source `json:"source"`
	Phase       engine.Phase  `json:"phase"`
	NeedsAction string        `json:"needsAction,omitempty"`
	// Deadline names the deadline that is near: settleBy (a cancellation
	// to settle within the hour) or timesOutAt (the 14-day limit); the
	// earlier when both are.
	Deadline string    `json:"deadline"`
	At       time.Time `json:"at"`
	// Overdue is set when At has passed.
	Overdue bool `json:"overdue"`
}

// nearDeadline returns t's near deadline at now, if it has one
// (engine.Transfer.NearDeadline with NearDeadlineWindow).
func nearDeadline(t *engine.Transfer, now time.Time) (NearDeadline, bool) {
	name, at, ok := t.NearDeadline(now, NearDeadlineWindow)
	if !ok {
		return NearDeadline{}, false
	}
	return NearDeadline{
		TransferID: t.TransferID, Tenant: t.Issuer, Source: t.Source, Phase: t.Phase, NeedsAction: t.NeedsAction(),
		Deadline: name, At: at, Overdue: !at.After(now),
	}, true
}

// handleDeadlines serves GET /v1/deadlines?limit=: the unsettled
// transfers near or past a deadline. It reads every unsettled transfer
// of the projection, as the driver's pass does: fine for thousands.
func (s *Server) handleDeadlines(w http.ResponseWriter, r *http.Request) error {
	q, err := values(r, "limit")
	if err != nil {
		return err
	}
	limit := DefaultLimit
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > MaxLimit {
			return invalidParam("limit", "want an integer from 1 to "+strconv.Itoa(MaxLimit))
		}
		limit = n
	}
	now := time.Now()
	near := []NearDeadline{}
	for _, p := range engine.Phases {
		if p == engine.PhaseSettled {
			continue
		}
		cursor := ""
		for {
			page, err := s.store.List(projections.Filter{Phase: p, Cursor: cursor, Limit: projections.MaxLimit})
			if err != nil {
				return storeErr(err)
			}
			for _, t := range page.Transfers {
				if n, ok := nearDeadline(t, now); ok {
					near = append(near, n)
				}
			}
			if cursor = page.NextCursor; cursor == "" {
				break
			}
		}
	}
	slices.SortFunc(near, func(a, b NearDeadline) int {
		return cmp.Or(a.At.Compare(b.At), cmp.Compare(a.TransferID, b.TransferID))
	})
	out := DeadlineList{Transfers: near, Total: len(near)}
	if len(near) > limit {
		out.Transfers = near[:limit]
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
