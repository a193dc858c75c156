package engine

import (
	"context"
	"sync"

	"github.com/looplab/fsm"
)

// Machine is the transfer state machine. It has one fsm event per phase-setting
// kind, with a transition from every lower-ranked phase to the kind's phase and
// none from an equal or higher one: a transfer only ever moves upward, so the
// phase reached from a set of events does not depend on their order.
//
// A Machine is not safe for concurrent use; Advance on the package level uses
// a pool.
type Machine struct {
	f *fsm.FSM
}

// NewMachine returns a machine in PhasePending.
func NewMachine() *Machine {
	var events fsm.Events
	for _, k := range Kinds {
		dst, ok := k.Phase()
		if !ok {
			continue
		}
		var src []string
		for _, p := range Phases[:dst.Rank()] {
			src = append(src, string(p))
		}
		events = append(events, fsm.EventDesc{Name: string(k), Src: src, Dst: string(dst)})
	}
	return &Machine{f: fsm.NewFSM(string(PhasePending), events, nil)}
}

// Advance returns the phase a transfer in phase from reaches on an event of
// kind k: k's phase when it ranks higher, from otherwise.
func (m *Machine) Advance(from Phase, k Kind) Phase {
	if _, ok := k.Phase(); !ok {
		return from
	}
	m.f.SetState(string(from))
	// The only possible errors are "no transition from this phase" (an event
	// of equal or lower rank) and "unknown event"; both leave the phase alone.
	if err := m.f.Event(context.Background(), string(k)); err != nil {
		return from
	}
	return Phase(m.f.Current())
}

var machines = sync.Pool{New: func() any { return NewMachine() }}

// Advance is Machine.Advance on a pooled machine; safe for concurrent use.
func Advance(from Phase, k Kind) Phase {
	m := machines.Get().(*Machine)
	defer machines.Put(m)
	return m.Advance(from, k)
}
