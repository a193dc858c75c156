package projections_test

import (
	"strings"
	"testing"

	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/engine/journal/journaltest"
	"github.com/transferd/transferd/projections"
)

// A rebuild folds runs of batches in one transaction each: the store it
// arrives at is the one batch-by-batch projection arrives at, in fewer
// commits.
func TestRunsFoldLikeBatches(t *testing.T) {
	j := journaltest.Open(t)
	events := generate(7, 400)
	appendFast(t, j, events)

	batched := newStore(t)
	mustCatchUp(t, j, batched, projections.ProjectorOptions{NoPublish: true, MaxBatch: 10})
	runs := newStore(t)
	mustCatchUp(t, j, runs, projections.WithRuns(projections.ProjectorOptions{NoPublish: true}, 10, 100))

	if diffs, err := projections.CompareStores(batched, runs); err != nil || len(diffs) != 0 {
		t.Fatalf("runs and batches differ: %v %v", diffs, err)
	}
	assertMatchesFold(t, j, runs)
	// 400 events in batches of 10 are 40 commits; in runs of 100, 4 (a
	// run also ends where the reader found nothing pending).
	if b, r := batched.Commits(), runs.Commits(); r >= b || r > 12 {
		t.Errorf("commits: %d in runs, %d in batches", r, b)
	}
}

// A panic while folding a run rolls the run back; its batches are folded
// again one by one, which parks the one event that fails, as without
// runs, and the rest is applied.
func TestPanicInARunParks(t *testing.T) {
	j := journaltest.Open(t)
	events := generate(11, 120)
	seen := map[string]int{}
	for _, e := range events {
		seen[e.ID]++
	}
	boom := events[57]
	for i := 57; seen[boom.ID] != 1; i++ {
		boom = events[i]
	}
	appendFast(t, j, events)

	inject := func(opts projections.ProjectorOptions) projections.ProjectorOptions {
		return projections.WithBeforeApply(opts, func(e *engine.Event) {
			if e.ID == boom.ID {
				panic("injected")
			}
		})
	}
	runs := newStore(t)
	mustCatchUp(t, j, runs, inject(projections.WithRuns(projections.ProjectorOptions{NoPublish: true}, 8, 40)))
	got, total, err := runs.Parked(0, 0)
	if err != nil || total != 1 || len(got) != 1 || got[0].ID != boom.ID || !strings.Contains(got[0].Reason, "injected") {
		t.Fatalf("parked %+v total %d err %v", got, total, err)
	}
	batched := newStore(t)
	mustCatchUp(t, j, batched, inject(projections.ProjectorOptions{NoPublish: true, MaxBatch: 8}))
	if diffs, err := projections.CompareStores(batched, runs); err != nil || len(diffs) != 0 {
		t.Fatalf("runs and batches differ: %v %v", diffs, err)
	}
	// The runs before and after the failed one were folded as runs: fewer
	// commits than 15 batches and the failed batch's one commit per event.
	if r, b := runs.Commits(), batched.Commits(); r >= b {
		t.Errorf("commits: %d with runs, %d in batches", r, b)
	}
}
