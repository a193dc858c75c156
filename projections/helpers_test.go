package projections_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/engine/journal"
	"github.com/transferd/transferd/engine/journal/journaltest"
	"github.com/transferd/transferd/projections"
)

// mustOpen opens a store at path, and at the end of the test checks its
// consistency and closes it.
func mustOpen(tb testing.TB, path string) *projections.Store {
	tb.Helper()
	s, err := projections.Open(path, projections.Options{})
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Check(); err != nil && !errors.Is(err, projections.ErrClosed) {
			tb.Errorf("consistency check: %v", err)
		}
		s.Close()
	})
	return s
}

// newStore opens a store in a temporary directory.
func newStore(tb testing.TB) *projections.Store {
	tb.Helper()
	return mustOpen(tb, filepath.Join(tb.TempDir(), "projections.db"))
}

func testContext(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(tb.Context(), 30*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

// mustCatchUp projects everything in j into s.
func mustCatchUp(tb testing.TB, j *journal.Journal, s *projections.Store, opts projections.ProjectorOptions) {
	tb.Helper()
	if err := projections.CatchUp(testContext(tb), j, s, opts); err != nil {
		tb.Fatalf("CatchUp: %v", err)
	}
}

// mustAppend appends events one by one through the journal.
func mustAppend(tb testing.TB, j *journal.Journal, events ...*engine.Event) uint64 {
	tb.Helper()
	var seq uint64
	for _, e := range events {
		ack, err := j.Append(testContext(tb), e)
		if err != nil {
			tb.Fatalf("Append %s: %v", e.ID, err)
		}
		seq = ack.Seq
	}
	return seq
}

// folded reads the whole stream back and folds each transfer's events with
// the engine, as the projection should.
func folded(tb testing.TB, j *journal.Journal) map[string]*engine.Transfer {
	tb.Helper()
	byTransfer := map[string][]*engine.Event{}
	for env, err := range j.Scan(testContext(tb), "") {
		if err != nil {
			tb.Fatalf("Scan: %v", err)
		}
		e, err := env.Event()
		if err != nil && !errors.Is(err, journal.ErrUnparsable) {
			tb.Fatal(err)
		}
		byTransfer[e.TransferID] = append(byTransfer[e.TransferID], e)
	}
	out := map[string]*engine.Transfer{}
	for id, events := range byTransfer {
		if tr := engine.Fold(id, events); tr.Version > 0 { // else only parked events
			out[id] = tr
		}
	}
	return out
}

// assertMatchesFold checks that every transfer in s is the engine's fold of
// its events in the stream, byte for byte, and that s has no others.
func assertMatchesFold(tb testing.TB, j *journal.Journal, s *projections.Store) {
	tb.Helper()
	want := folded(tb, j)
	for id, tr := range want {
		got, err := s.TransferJSON(id)
		if err != nil {
			tb.Fatalf("TransferJSON(%s): %v", id, err)
		}
		if w := tr.MarshalCanonical(); string(got) != string(w) {
			tb.Fatalf("transfer %s:\n got %s\nwant %s", id, got, w)
		}
	}
	st, err := s.Stats()
	if err != nil {
		tb.Fatal(err)
	}
	if st.Transfers != uint64(len(want)) {
		tb.Fatalf("store has %d transfers, the stream %d", st.Transfers, len(want))
	}
}

// feedMsg is a message of the TRANSFERS stream.
type feedMsg struct {
	Subject, MsgID string
	Data           []byte
}

// readFeed returns the TRANSFERS messages matching filter ("" for all),
// read with a plain ordered consumer.
func readFeed(tb testing.TB, j *journal.Journal, filter string) []feedMsg {
	tb.Helper()
	ctx := testContext(tb)
	cfg := jetstream.OrderedConsumerConfig{}
	if filter != "" {
		cfg.FilterSubjects = []string{filter}
	}
	cons, err := journaltest.JetStream(j).OrderedConsumer(ctx, journal.StreamTransfers, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	var out []feedMsg
	for n := info.NumPending; n > 0; {
		batch, err := cons.Fetch(int(min(n, 1000)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			tb.Fatal(err)
		}
		for m := range batch.Messages() {
			out = append(out, feedMsg{m.Subject(), m.Headers().Get(jetstream.MsgIDHeader), m.Data()})
			n--
		}
		if err := batch.Error(); err != nil {
			tb.Fatal(err)
		}
	}
	return out
}

// feedCount returns how many messages TRANSFERS holds.
func feedCount(tb testing.TB, j *journal.Journal) uint64 {
	tb.Helper()
	st, err := journaltest.JetStream(j).Stream(testContext(tb), journal.StreamTransfers)
	if err != nil {
		tb.Fatal(err)
	}
	return st.CachedInfo().State.Msgs
}

// event builds a parsed event of transfer id from a Connect payload.
func event(tb testing.TB, src engine.Source, payload string, receivedAt time.Time) *engine.Event {
	tb.Helper()
	e, err := engine.Parse(src, []byte(payload))
	if err != nil {
		tb.Fatalf("Parse(%s): %v", payload, err)
	}
	e.Issuer = "tenant-1"
	e.ReceivedAt = receivedAt
	return e
}

// ids returns the transfer ids of ts.
func ids(ts []*engine.Transfer) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.TransferID
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func contextWithTimeout(tb testing.TB, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(tb.Context(), d)
}
