package projections_test

import (
	"context"
	"fmt"
	"log"
	"path/filepath"

	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/engine/journal"
	"github.com/transferd/transferd/projections"
)

// The read side of transferd serve: open the store, run the projector
// until the context ends (it drains on the way out), and close the store
// after it.
func ExampleRun() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	j, err := journal.Open(ctx, journal.Config{DataDir: "./data"})
	if err != nil {
		log.Fatal(err)
	}
	defer j.Close()
	s, err := projections.Open(filepath.Join("./data", "projections.db"), projections.Options{})
	if err != nil {
		log.Fatal(err) // projections.ErrLocked: another transferd uses ./data
	}
	defer s.Close()
	err = projections.Run(ctx, j, s, projections.ProjectorOptions{
		Notify: func(changes []projections.Change) {
			// Hand off to the SSE hub without blocking.
		},
	})
	if err != nil {
		log.Fatal(err)
	}
}

// Paging through the transfers that need the partner to act, newest first.
func ExampleStore_List() {
	s, err := projections.Open("./data/projections.db", projections.Options{ReadOnly: true})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	yes := true
	f := projections.Filter{NeedsAction: &yes, Phase: engine.PhaseCancellationRequested, Limit: 100}
	for {
		page, err := s.List(f)
		if err != nil {
			log.Fatal(err)
		}
		for _, t := range page.Transfers {
			fmt.Println(t.TransferID, t.Deadlines().SettleBy)
		}
		if page.NextCursor == "" {
			break
		}
		f.Cursor = page.NextCursor
	}
}
