package engine

// Phase is where a transfer stands. Phases are ranked; a transfer's phase is
// the highest-ranked phase among the facts seen for it.
type Phase string

// The phases in rank order (DESIGN §4).
const (
	PhasePending               Phase = "pending"
	PhaseListenerTriggered     Phase = "listener_triggered"
	PhaseDataUploaded          Phase = "data_uploaded"
	PhaseExportCompleted       Phase = "export_completed"
	PhaseListenerErrored       Phase = "listener_errored"
	PhaseCancellationRequested Phase = "cancellation_requested"
	PhaseSettled               Phase = "settled"
)

// Phases lists every phase, lowest rank first.
var Phases = []Phase{
	PhasePending, PhaseListenerTriggered, PhaseDataUploaded, PhaseExportCompleted,
	PhaseListenerErrored, PhaseCancellationRequested, PhaseSettled,
}

// Rank is p's position in Phases, or -1 for an unknown phase.
func (p Phase) Rank() int {
	for i, q := range Phases {
		if p == q {
			return i
		}
	}
	return -1
}

// Valid reports whether p is one of Phases.
func (p Phase) Valid() bool { return p.Rank() >= 0 }

// Phase is the phase an event of kind k moves a transfer to; ok is false
// for kinds that never change the phase (KindUnknown).
func (k Kind) Phase() (p Phase, ok bool) {
	switch k {
	case KindListenerTriggered:
		return PhaseListenerTriggered, true
	case KindAppDataUploaded, KindEventFileListUploaded:
		return PhaseDataUploaded, true
	case KindExportPhaseCompleted:
		return PhaseExportCompleted, true
	case KindListenerErrored:
		return PhaseListenerErrored, true
	case KindCancellationRequested:
		return PhaseCancellationRequested, true
	case KindTransferSettled:
		return PhaseSettled, true
	}
	return "", false
}
