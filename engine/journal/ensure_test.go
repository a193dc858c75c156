package journal_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/transferd/transferd/engine/journal"
	"github.com/transferd/transferd/engine/journal/journaltest"
)

// TestOpenKeepsOperatorLimits: limits an operator set on the streams and a
// bucket through the JetStream API survive reopening the journal, while a
// setting transferd owns that was changed is put back.
func TestOpenKeepsOperatorLimits(t *testing.T) {
	dir := t.TempDir()
	logs := &lockedBuilder{} // the embedded server logs from its own goroutines too
	j := journaltest.OpenConfig(t, journal.Config{DataDir: dir, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if strings.Contains(logs.String(), "stream TRANSFERS keeps one state") {
		t.Errorf("a new TRANSFERS warned of old limits:\n%s", logs.String())
	}
	ctx := testContext(t)
	js := journal.JetStream(j)
	set := func(name string, change func(*jetstream.StreamConfig)) {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		cfg := s.CachedInfo().Config
		change(&cfg)
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			t.Fatalf("update %s: %v", name, err)
		}
	}
	set(journal.StreamEvents, func(c *jetstream.StreamConfig) {
		c.MaxBytes, c.MaxAge, c.MaxMsgs = 1<<30, 90*24*time.Hour, 1_000_000
		c.Duplicates = time.Minute // owned by transferd: put back
	})
	// TRANSFERS as transferd created it before December 2026: the latest
	// state per subject, kept for ever. A stream of then keeps it.
	set(journal.StreamTransfers, func(c *jetstream.StreamConfig) { c.MaxAge, c.MaxMsgsPerSubject = 0, 1 })
	set("KV_"+journal.BucketTenants, func(c *jetstream.StreamConfig) { c.MaxBytes = 64 << 20 })
	j.Close()

	logs = &lockedBuilder{}
	j = journaltest.OpenConfig(t, journal.Config{DataDir: dir, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	js = journal.JetStream(j)
	if !strings.Contains(logs.String(), "stream TRANSFERS keeps one state per transfer and phase") ||
		!strings.Contains(logs.String(), "nats stream edit TRANSFERS --max-msgs-per-subject=-1") {
		t.Errorf("TRANSFERS of old limits: no warning saying how to move it:\n%s", logs.String())
	}
	get := func(name string) jetstream.StreamConfig {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		return s.CachedInfo().Config
	}
	if c := get(journal.StreamEvents); c.MaxBytes != 1<<30 || c.MaxAge != 90*24*time.Hour || c.MaxMsgs != 1_000_000 {
		t.Errorf("%s limits after reopening: MaxBytes %d, MaxAge %v, MaxMsgs %d", journal.StreamEvents, c.MaxBytes, c.MaxAge, c.MaxMsgs)
	} else if c.Duplicates != 2*time.Minute || !c.DenyDelete || !c.DenyPurge {
		t.Errorf("%s owned settings not restored: %+v", journal.StreamEvents, c)
	}
	if c := get(journal.StreamTransfers); c.MaxAge != 0 || c.MaxMsgsPerSubject != 1 {
		t.Errorf("%s limits after reopening: MaxAge %v, MaxMsgsPerSubject %d; want 0 and 1", journal.StreamTransfers, c.MaxAge, c.MaxMsgsPerSubject)
	}
	if c := get("KV_" + journal.BucketTenants); c.MaxBytes != 64<<20 {
		t.Errorf("tenants bucket MaxBytes after reopening: %d", c.MaxBytes)
	}
}
