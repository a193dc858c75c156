package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/transferd/transferd/engine/journal"
	"github.com/transferd/transferd/engine/journal/journaltest"
)

// TestTransfersMaxAgeFlag: --transfers-max-age sets the retention of the
// TRANSFERS stream the command creates; under a second is a usage error
// before anything is opened.
func TestTransfersMaxAgeFlag(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()
	s := storeFlags{data: t.TempDir(), sync: syncInterval, transfersMaxAge: 90 * time.Minute}
	j, err := s.openJournal(ctx, log)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	st, err := journaltest.JetStream(j).Stream(ctx, journal.StreamTransfers)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().Config.MaxAge; got != 90*time.Minute {
		t.Errorf("TRANSFERS MaxAge %v, want 1h30m", got)
	}

	bad := storeFlags{data: t.TempDir(), transfersMaxAge: 0}
	var uerr usageErr
	if _, err := bad.openJournal(ctx, log); !errors.As(err, &uerr) {
		t.Errorf("--transfers-max-age 0: %v, want a usage error", err)
	}
}
