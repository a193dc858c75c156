package simulator

import (
	"slices"
	"strings"

	"github.com/transferd/transferd/engine"
)

// TransferExpect is what a transfer must end up as, given the events the
// server acknowledged. It is worked out from what the simulator sent, not
// with engine.Fold, so that it can check the fold. Its field names follow
// the query API's transfer (DESIGN §6).
type TransferExpect struct {
	TransferID         string            `json:"transferId"`
	Source             engine.Source     `json:"source"`
	Issuer             string            `json:"issuer"`
	Phase              engine.Phase      `json:"phase"`
	Version            int               `json:"version"` // distinct acknowledged events
	OriginalTransferID string            `json:"originalTransferId,omitempty"`
	Migration          *engine.Migration `json:"migration,omitempty"`
	Uploads            []engine.Upload   `json:"uploads"` // sorted by key
	ExportCompleted    bool              `json:"exportCompleted"`
	// Error is set when a listener-errored event was acknowledged; its
	// fields are empty for Connect, which sends no details.
	Error                 *engine.TransferError `json:"error,omitempty"`
	CancellationRequested bool                  `json:"cancellationRequested"`
	Settled               *SettledExpect        `json:"settled,omitempty"`
	// NeedsAction is "settle" when the transfer errored or its
	// cancellation was requested and it is not settled (DESIGN §6).
	NeedsAction string `json:"needsAction,omitempty"`
	// Events are the identities of the acknowledged events, sorted.
	Events []string `json:"events"`
}

// SettledExpect is the settlement a transfer must show.
type SettledExpect struct {
	Status string `json:"status,omitempty"`
}

// phaseOf is DESIGN §3's "sets phase" column, and phaseRank §4's order,
// written out here rather than taken from package engine: the expectation
// checks the engine.
var (
	phaseOf = map[engine.Kind]engine.Phase{
		engine.KindListenerTriggered:     "listener_triggered",
		engine.KindAppDataUploaded:       "data_uploaded",
		engine.KindEventFileListUploaded: "data_uploaded",
		engine.KindExportPhaseCompleted:  "export_completed",
		engine.KindListenerErrored:       "listener_errored",
		engine.KindCancellationRequested: "cancellation_requested",
		engine.KindTransferSettled:       "settled",
	}
	phaseRank = map[engine.Phase]int{
		"pending": 0, "listener_triggered": 1, "data_uploaded": 2, "export_completed": 3,
		"listener_errored": 4, "cancellation_requested": 5, "settled": 6,
	}
)

// expectations lists, by transferId, what every transfer with at least one
// acknowledged event must be. Events never acknowledged are left out.
func expectations(w *workload) []TransferExpect {
	var out []TransferExpect
	for _, t := range w.transfers {
		x := TransferExpect{
			TransferID: t.id, Source: t.tenant.source, Issuer: t.tenant.issuer,
			Phase: "pending", Uploads: []engine.Upload{}, Events: []string{},
		}
		for _, e := range t.events {
			if e.acks.Load() == 0 {
				continue
			}
			x.Version++
			x.Events = append(x.Events, e.id)
			if t.original != nil {
				x.OriginalTransferID = t.original.id
			}
			if e.details && x.Migration == nil {
				m := t.migration
				x.Migration = &engine.Migration{MigrationID: m.id, MigrationScopeID: m.scopeID, Name: m.name, CreatedAt: m.createdAt.UTC(), CloudURL: m.cloudURL}
			}
			if p, ok := phaseOf[e.kind]; ok && phaseRank[p] > phaseRank[x.Phase] {
				x.Phase = p
			}
			switch e.kind {
			case engine.KindAppDataUploaded, engine.KindEventFileListUploaded:
				x.Uploads = append(x.Uploads, *e.upload)
			case engine.KindExportPhaseCompleted:
				x.ExportCompleted = true
			case engine.KindListenerErrored:
				x.Error = &engine.TransferError{}
				if e.errInfo != nil {
					*x.Error = *e.errInfo
				}
			case engine.KindCancellationRequested:
				x.CancellationRequested = true
			case engine.KindTransferSettled:
				x.Settled = &SettledExpect{Status: e.status}
			}
		}
		if x.Version == 0 {
			continue
		}
		if x.Settled == nil && (x.Error != nil || x.CancellationRequested) {
			x.NeedsAction = "settle"
		}
		slices.SortFunc(x.Uploads, func(a, b engine.Upload) int { return strings.Compare(a.Key, b.Key) })
		slices.Sort(x.Events)
		out = append(out, x)
	}
	slices.SortFunc(out, func(a, b TransferExpect) int { return strings.Compare(a.TransferID, b.TransferID) })
	return out
}

// acked lists the acknowledged events by identity.
func acked(w *workload) []AckedEvent {
	var out []AckedEvent
	for _, e := range w.events {
		if n := e.acks.Load(); n > 0 {
			out = append(out, AckedEvent{ID: e.id, TransferID: e.transfer.id, Kind: e.kind, Seq: e.seq.Load(), Acks: int(n)})
		}
	}
	slices.SortFunc(out, func(a, b AckedEvent) int { return strings.Compare(a.ID, b.ID) })
	return out
}
