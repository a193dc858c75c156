package projections_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/engine/journal/journaltest"
	"github.com/transferd/transferd/projections"
)

// lineageEvents: original O; R1 re-runs O, R2 re-runs R1 (a chain), R3
// re-runs O again. R1's first event was received before O's (delivery
// skew), so only the rule "an original comes before its re-runs" puts O
// first.
func lineageEvents(t *testing.T) map[string]*engine.Event {
	t.Helper()
	at := func(s int) time.Time { return genEpoch.Add(time.Duration(s) * time.Second) }
	mk := func(id, original string, s int) *engine.Event {
		orig := ""
		if original != "" {
			orig = fmt.Sprintf(`,"originalTransferId":%q`, original)
		}
		return event(t, engine.SourceForge, fmt.Sprintf(
			`{"eventType":"avi:ecosystem.migration:triggered:listener","transferId":%q,"messageId":"%s-1"%s}`, id, id, orig), at(s))
	}
	return map[string]*engine.Event{
		"O":  mk("O", "", 10),
		"R1": mk("R1", "O", 5),
		"R2": mk("R2", "R1", 20),
		"R3": mk("R3", "O", 15),
	}
}

func TestLineageEitherOrder(t *testing.T) {
	events := lineageEvents(t)
	orders := [][]string{
		{"O", "R1", "R2", "R3"},
		{"R2", "R1", "R3", "O"},
		{"R1", "O", "R2", "R3"},
		{"R3", "R2", "O", "R1"},
	}
	want := []string{"O", "R1", "R3", "R2"} // by time, originals first
	for _, order := range orders {
		t.Run(fmt.Sprint(order), func(t *testing.T) {
			j := journaltest.Open(t)
			s := newStore(t)
			for _, id := range order { // one batch per event
				mustAppend(t, j, events[id])
				mustCatchUp(t, j, s, projections.ProjectorOptions{NoPublish: true})
			}
			for _, id := range order {
				root, ts, err := s.Lineage(id)
				if err != nil {
					t.Fatalf("Lineage(%s): %v", id, err)
				}
				if root != "O" || !slices.Equal(ids(ts), want) {
					t.Errorf("Lineage(%s) = %s, %v; want O, %v", id, root, ids(ts), want)
				}
				if r, err := s.Root(id); err != nil || r != "O" {
					t.Errorf("Root(%s) = %s, %v", id, r, err)
				}
			}
		})
	}
}

func TestLineageBeforeTheOriginalArrives(t *testing.T) {
	events := lineageEvents(t)
	j := journaltest.Open(t)
	s := newStore(t)
	mustAppend(t, j, events["R2"])
	mustCatchUp(t, j, s, projections.ProjectorOptions{NoPublish: true})

	// Only R2 is known: R1 is named as its original, O not at all yet.
	for _, id := range []string{"R2", "R1"} {
		root, ts, err := s.Lineage(id)
		if err != nil || root != "R1" || !slices.Equal(ids(ts), []string{"R2"}) {
			t.Errorf("Lineage(%s) = %s, %v, %v; want R1, [R2]", id, root, ids(ts), err)
		}
	}
	if _, _, err := s.Lineage("O"); !errors.Is(err, projections.ErrNotFound) {
		t.Errorf("Lineage(O) before anything names it: %v, want ErrNotFound", err)
	}

	mustAppend(t, j, events["R1"])
	mustCatchUp(t, j, s, projections.ProjectorOptions{NoPublish: true})
	root, ts, err := s.Lineage("R2")
	if err != nil || root != "O" || !slices.Equal(ids(ts), []string{"R1", "R2"}) {
		t.Errorf("Lineage(R2) = %s, %v, %v; want O, [R1 R2]", root, ids(ts), err)
	}
}

// TestLineageCycle: re-runs that name each other (hostile or broken data)
// still give an answer, rooted at the smallest id of the cycle.
func TestLineageCycle(t *testing.T) {
	j := journaltest.Open(t)
	s := newStore(t)
	for i, pair := range [][2]string{{"A", "B"}, {"B", "C"}, {"C", "A"}} {
		mustAppend(t, j, event(t, engine.SourceConnect, fmt.Sprintf(
			`{"eventType":"listener-triggered","transferId":%q,"messageId":"c%d","originalTransferId":%q}`, pair[0], i, pair[1]),
			genEpoch.Add(time.Duration(i)*time.Second)))
	}
	mustCatchUp(t, j, s, projections.ProjectorOptions{NoPublish: true})
	for _, id := range []string{"A", "B", "C"} {
		root, ts, err := s.Lineage(id)
		if err != nil || root != "A" || len(ts) != 3 {
			t.Errorf("Lineage(%s) = %s, %v, %v", id, root, ids(ts), err)
		}
	}
}

func TestLineageOfAPlainTransfer(t *testing.T) {
	j := journaltest.Open(t)
	s := newStore(t)
	mustAppend(t, j, lineageEvents(t)["O"])
	mustCatchUp(t, j, s, projections.ProjectorOptions{NoPublish: true})
	root, ts, err := s.Lineage("O")
	if err != nil || root != "O" || !slices.Equal(ids(ts), []string{"O"}) {
		t.Errorf("Lineage(O) = %s, %v, %v", root, ids(ts), err)
	}
	if _, _, err := s.Lineage("nobody"); !errors.Is(err, projections.ErrNotFound) {
		t.Errorf("Lineage(nobody): %v, want ErrNotFound", err)
	}
}
