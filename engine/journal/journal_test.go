package journal_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/engine/journal"
	"github.com/transferd/transferd/engine/journal/journaltest"
)

// backend is a place journals live: each call of open opens a journal on
// the same store, which must outlive the journal.
type backend struct {
	name string
	new  func(t *testing.T) (open func(t *testing.T) *journal.Journal)
}

var backends = []backend{
	{"embedded", func(t *testing.T) func(t *testing.T) *journal.Journal {
		dir := t.TempDir()
		return func(t *testing.T) *journal.Journal {
			return journaltest.OpenConfig(t, journal.Config{DataDir: dir})
		}
	}},
	{"embedded-sync", func(t *testing.T) func(t *testing.T) *journal.Journal {
		dir := t.TempDir() // syncing every write: appends share fsyncs
		return func(t *testing.T) *journal.Journal {
			return journaltest.OpenConfig(t, journal.Config{DataDir: dir, SyncAlways: true})
		}
	}},
	{"embedded-atomic", func(t *testing.T) func(t *testing.T) *journal.Journal {
		dir := t.TempDir() // syncing every write: appends share atomic batches
		return func(t *testing.T) *journal.Journal {
			return journaltest.OpenConfig(t, journal.Config{DataDir: dir, SyncAlways: true, GroupCommit: journal.GroupCommitAtomic})
		}
	}},
	{"external", func(t *testing.T) func(t *testing.T) *journal.Journal {
		url := journaltest.Server(t)
		return func(t *testing.T) *journal.Journal {
			return journaltest.OpenConfig(t, journal.Config{URL: url})
		}
	}},
	{"external-single", func(t *testing.T) func(t *testing.T) *journal.Journal {
		url := journaltest.Server(t)
		return func(t *testing.T) *journal.Journal {
			return journaltest.OpenConfig(t, journal.Config{URL: url, GroupCommit: journal.GroupCommitOff})
		}
	}},
}

// TestJournal runs the journal's contract against every backend.
func TestJournal(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			for _, tc := range acceptance {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					tc.test(t, b.new(t))
				})
			}
		})
	}
}

var acceptance = []struct {
	name string
	test func(t *testing.T, open func(t *testing.T) *journal.Journal)
}{
	{"OpenTwice", testOpenTwice},
	{"AppendSequences", testAppendSequences},
	{"AppendDuplicate", testAppendDuplicate},
	{"AppendInvalid", testAppendInvalid},
	{"AppendTooLarge", testAppendTooLarge},
	{"ReadAfter", testReadAfter},
	{"ReadFilter", testReadFilter},
	{"ReadLive", testReadLive},
	{"ReadDelivered", testReadDelivered},
	{"ReadCorrupt", testReadCorrupt},
	{"Scan", testScan},
	{"Publish", testPublish},
	{"AppendOwned", testAppendOwned},
}

func testOpenTwice(t *testing.T, open func(t *testing.T) *journal.Journal) {
	j := open(t)
	ack := mustAppend(t, j, event(t, "t1", 1))
	j.Close()

	j = open(t)
	if got := mustLastSeq(t, j); got != ack.Seq {
		t.Errorf("LastSeq after reopening = %d, want %d", got, ack.Seq)
	}
	ctx := testContext(t)
	s, err := journal.JetStream(j).Stream(ctx, journal.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	if !cfg.DenyDelete || !cfg.DenyPurge || cfg.Storage != jetstream.FileStorage ||
		cfg.Retention != jetstream.LimitsPolicy || cfg.Duplicates != 2*time.Minute ||
		cfg.MaxMsgs != -1 || cfg.MaxBytes != -1 || cfg.MaxAge != 0 ||
		len(cfg.Subjects) != 1 || cfg.Subjects[0] != "migrations.events.>" {
		t.Errorf("%s config = %+v", journal.StreamEvents, cfg)
	}
	s, err = journal.JetStream(j).Stream(ctx, journal.StreamTransfers)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := s.CachedInfo().Config; cfg.Subjects[0] != "migrations.transfers.>" || cfg.Storage != jetstream.FileStorage {
		t.Errorf("%s config = %+v", journal.StreamTransfers, cfg)
	}
	for _, kv := range journal.Buckets(j) {
		st, err := kv.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.BackingStore() != "JetStream" || st.History() != 1 {
			t.Errorf("bucket %s: store %s, history %d", kv.Bucket(), st.BackingStore(), st.History())
		}
	}
}

func testAppendSequences(t *testing.T, open func(t *testing.T) *journal.Journal) {
	j := open(t)
	var last uint64
	for i := range 5 {
		ack := mustAppend(t, j, event(t, "t1", i))
		if ack.Seq <= last || ack.Duplicate {
			t.Fatalf("append %d: %+v after seq %d", i, ack, last)
		}
		last = ack.Seq
	}
	if got := mustLastSeq(t, j); got != last {
		t.Errorf("LastSeq = %d, want %d", got, last)
	}
}

func testAppendDuplicate(t *testing.T, open func(t *testing.T) *journal.Journal) {
	j := open(t)
	mustAppend(t, j, event(t, "t0", 0))
	e := event(t, "t1", 1)
	first := mustAppend(t, j, e)
	again := *e
	again.ReceivedAt = e.ReceivedAt.Add(time.Second) // a re-delivery, received later
	second := mustAppend(t, j, &again)
	if !second.Duplicate || second.Seq != first.Seq {
		t.Errorf("second append = %+v, want duplicate of seq %d", second, first.Seq)
	}
	n := 0
	for env, err := range j.Scan(testContext(t), journal.TransferEventsFilter("t1")) {
		if err != nil {
			t.Fatal(err)
		}
		if !env.ReceivedAt.Equal(e.ReceivedAt) {
			t.Errorf("stored receivedAt %v, want the first's %v", env.ReceivedAt, e.ReceivedAt)
		}
		n++
	}
	if n != 1 {
		t.Errorf("stream holds %d messages of t1, want 1", n)
	}
}

func testAppendInvalid(t *testing.T, open func(t *testing.T) *journal.Journal) {
	j := open(t)
	for name, mutate := range map[string]func(*engine.Event){
		"no id":          func(e *engine.Event) { e.ID = "" },
		"bad source":     func(e *engine.Event) { e.Source = "smtp" },
		"dot in id":      func(e *engine.Event) { e.TransferID = "a.b" },
		"wildcard in id": func(e *engine.Event) { e.TransferID = "a*" },
		"empty kind":     func(e *engine.Event) { e.Kind = "" },
	} {
		e := event(t, "t1", 1)
		mutate(e)
		if _, err := j.Append(testContext(t), e); !errors.Is(err, journal.ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
	if got := mustLastSeq(t, j); got != 0 {
		t.Errorf("LastSeq = %d after invalid appends, want 0", got)
	}
}

func testAppendTooLarge(t *testing.T, open func(t *testing.T) *journal.Journal) {
	j := open(t)
	e := event(t, "t1", 1)
	e.Payload = []byte(`{"x":"` + strings.Repeat("a", 5<<20) + `"}`)
	if _, err := j.Append(testContext(t), e); !errors.Is(err, journal.ErrTooLarge) || errors.Is(err, journal.ErrUnavailable) {
		t.Errorf("append of 5 MiB: %v, want ErrTooLarge", err)
	}
}

// TestAppendIngestLimit: a body of 1 MiB, the ingest limit, fits in the
// embedded server (an external NATS needs max_payload above 1 MiB too).
func TestAppendIngestLimit(t *testing.T) {
	e := event(t, "t1", 1)
	e.Payload = []byte(`{"x":"` + strings.Repeat("a", 1<<20-8) + `"}`)
	if _, err := journaltest.Open(t).Append(testContext(t), e); err != nil {
		t.Errorf("append of 1 MiB: %v", err)
	}
}

func testReadAfter(t *testing.T, open func(t *testing.T) *journal.Journal) {
	j := open(t)
	var events []*engine.Event
	for i := range 10 {
		e := event(t, fmt.Sprintf("t%d", i%2), i)
		mustAppend(t, j, e)
		events = append(events, e)
	}
	for _, after := range []uint64{0, 4, 9, 10} {
		r, err := j.Read(testContext(t), after, "")
		if err != nil {
			t.Fatal(err)
		}
		if got, want := r.Pending(), 10-after; got != want {
			t.Errorf("after %d: Pending = %d, want %d", after, got, want)
		}
		got := readAll(t, r, 3)
		r.Stop()
		if len(got) != int(10-after) {
			t.Fatalf("after %d: read %d envelopes, want %d", after, len(got), 10-after)
		}
		for i, env := range got {
			seq := after + uint64(i) + 1
			if env.Seq != seq {
				t.Errorf("after %d: envelope %d has seq %d, want %d", after, i, env.Seq, seq)
			}
			assertEnvelope(t, env, events[seq-1])
		}
	}
}

func testReadFilter(t *testing.T, open func(t *testing.T) *journal.Journal) {
	j := open(t)
	for i := range 9 {
		mustAppend(t, j, event(t, fmt.Sprintf("t%d", i%3), i))
	}
	r, err := j.Read(testContext(t), 2, journal.TransferEventsFilter("t1"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	got := readAll(t, r, 100)
	var seqs []uint64
	for _, env := range got {
		if env.TransferID != "t1" {
			t.Errorf("seq %d belongs to %s", env.Seq, env.TransferID)
		}
		seqs = append(seqs, env.Seq)
	}
	if fmt.Sprint(seqs) != "[5 8]" {
		t.Errorf("seqs = %v, want [5 8]", seqs)
	}
}

func testReadLive(t *testing.T, open func(t *testing.T) *journal.Journal) {
	j := open(t)
	mustAppend(t, j, event(t, "t1", 0))
	r, err := j.Read(testContext(t), 1, "")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	batch, err := r.Next(ctx, 10)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || len(batch) != 0 {
		t.Fatalf("Next at the end = %d envelopes, %v; want none and DeadlineExceeded", len(batch), err)
	}

	appended := make(chan error, 1)
	go func() {
		time.Sleep(50 * time.Millisecond)
		_, err := j.Append(testContext(t), event(t, "t1", 1))
		appended <- err
	}()
	batch, err = r.Next(testContext(t), 10)
	if err != nil || len(batch) != 1 || batch[0].Seq != 2 {
		t.Fatalf("Next = %+v, %v; want seq 2", batch, err)
	}
	if err := <-appended; err != nil {
		t.Fatal(err)
	}
	r.Stop()
	if _, err := r.Next(testContext(t), 1); !errors.Is(err, journal.ErrStopped) {
		t.Errorf("Next after Stop: %v, want ErrStopped", err)
	}
}

// testReadDelivered: messages the server delivered one at a time, each
// with nothing pending after it, while the caller was busy, come back in
// one batch (the projector's batch after a commit), not one per call.
func testReadDelivered(t *testing.T, open func(t *testing.T) *journal.Journal) {
	j := open(t)
	ctx := testContext(t)
	r, err := j.Read(ctx, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	const n = 8
	for i := range n {
		mustAppend(t, j, event(t, fmt.Sprint("t", i), 0))
		// Delivered before the next is appended: the server counted
		// nothing pending after it.
		for journal.Delivered(r) < i+1 {
			if ctx.Err() != nil {
				t.Fatalf("%d of %d messages delivered", journal.Delivered(r), i+1)
			}
			time.Sleep(time.Millisecond)
		}
	}
	var seqs []uint64
	for _, max := range []int{3, 100} {
		batch, err := r.Next(ctx, max)
		if err != nil {
			t.Fatal(err)
		}
		for _, env := range batch {
			seqs = append(seqs, env.Seq)
		}
	}
	if want := []uint64{1, 2, 3, 4, 5, 6, 7, 8}; fmt.Sprint(seqs) != fmt.Sprint(want) || r.Pending() != 0 {
		t.Fatalf("Next(3), Next(100) = %v, pending %d; want %v in two batches, none pending", seqs, r.Pending(), want)
	}
}

func testReadCorrupt(t *testing.T, open func(t *testing.T) *journal.Journal) {
	j := open(t)
	mustAppend(t, j, event(t, "t1", 0))
	if _, err := j.Publish(testContext(t), "migrations.events.connect.t1.junk", "", []byte("not json")); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, j, event(t, "t1", 2))

	r, err := j.Read(testContext(t), 0, "")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	var got []string
	for r.Pending() > 0 {
		batch, err := r.Next(testContext(t), 10)
		var cerr *journal.CorruptError
		switch {
		case errors.As(err, &cerr):
			if !errors.Is(err, journal.ErrMalformed) {
				t.Errorf("CorruptError does not wrap ErrMalformed: %v", err)
			}
			got = append(got, fmt.Sprintf("corrupt %d", cerr.Seq))
		case err != nil:
			t.Fatal(err)
		}
		for _, env := range batch {
			got = append(got, fmt.Sprint(env.Seq))
		}
	}
	if fmt.Sprint(got) != "[1 corrupt 2 3]" {
		t.Errorf("read %v, want [1 corrupt 2 3]", got)
	}
}

func testScan(t *testing.T, open func(t *testing.T) *journal.Journal) {
	j := open(t)
	keys := map[string]string{} // id → key
	for i := range 600 {
		e := event(t, fmt.Sprintf("t%d", i%2), i)
		keys[e.ID] = e.Key()
		mustAppend(t, j, e)
	}
	ctx := testContext(t)

	var seqs []uint64
	for env, err := range j.Scan(ctx, journal.TransferEventsFilter("t1")) {
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, env.Seq)
		// The key read back from the Nats-Msg-Id is the one appended, and
		// the event rebuilt with it (no digest computed) has it.
		if e, err := env.Event(); env.Key != keys[env.ID] || err != nil || e.Key() != keys[env.ID] || e.Digest != "" {
			t.Fatalf("seq %d: envelope key %q, event key %q (digest %q, %v); want %q", env.Seq, env.Key, e.Key(), e.Digest, err, keys[env.ID])
		}
	}
	if len(seqs) != 300 {
		t.Fatalf("scanned %d envelopes, want 300", len(seqs))
	}
	for i, s := range seqs {
		if s != uint64(2*i+2) {
			t.Fatalf("envelope %d has seq %d, want %d", i, s, 2*i+2)
		}
	}

	start := time.Now()
	for env, err := range j.Scan(ctx, journal.TransferEventsFilter("nobody")) {
		t.Errorf("scan of an unknown transfer yielded %+v, %v", env, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("scan of an unknown transfer took %v", d)
	}

	// An unfiltered scan reads every message stored when it began, in
	// order, and not those appended while it runs.
	var all []uint64
	for env, err := range j.Scan(ctx, "") {
		if err != nil {
			t.Fatal(err)
		}
		if len(all) == 0 {
			mustAppend(t, j, event(t, "later", 0))
		}
		all = append(all, env.Seq)
	}
	if len(all) != 600 || all[0] != 1 || all[599] != 600 {
		t.Errorf("unfiltered scan: %d envelopes, seqs %v…%v, want 1…600", len(all), all[:min(len(all), 1)], all[max(len(all)-1, 0):])
	}

	n := 0
	for range j.Scan(ctx, "") {
		if n++; n == 5 {
			break
		}
	}
	if n != 5 {
		t.Errorf("break after 5: got %d", n)
	}

	s, err := journal.JetStream(j).Stream(ctx, journal.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := s.Info(ctx); err != nil || info.State.Consumers != 0 {
		t.Errorf("consumers left after the scans: %d, %v", info.State.Consumers, err)
	}
}

func testPublish(t *testing.T, open func(t *testing.T) *journal.Journal) {
	j := open(t)
	subj := journal.TransferSubject("t1", engine.PhaseCancellationRequested)
	ctx := testContext(t)
	a1, err := j.Publish(ctx, subj, "t1:1", []byte(`{"version":1}`))
	if err != nil {
		t.Fatal(err)
	}
	a2, err := j.Publish(ctx, subj, "t1:1", []byte(`{"version":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if a1.Duplicate || !a2.Duplicate || a1.Seq != a2.Seq {
		t.Errorf("acks %+v, %+v; want the second a duplicate of the first", a1, a2)
	}
	s, err := journal.JetStream(j).Stream(ctx, journal.StreamTransfers)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := s.GetLastMsgForSubject(ctx, "migrations.transfers.*.cancellation_requested"); err != nil || m.Sequence != a1.Seq {
		t.Errorf("last state: %+v, %v", m, err)
	}
	if got := mustLastSeq(t, j); got != 0 {
		t.Errorf("MIGRATIONS LastSeq = %d; the feed must not land there", got)
	}
}

// transferEvents reads every stored event of transfer id.
func transferEvents(t *testing.T, j *journal.Journal, id string) []journal.Envelope {
	t.Helper()
	r, err := j.Read(testContext(t), 0, journal.TransferEventsFilter(id))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	return readAll(t, r, 100)
}

// testAppendOwned: of first events of one transfer sent at once by
// several tenants, exactly one tenant's is stored and owns the transfer;
// the others store nothing and learn the owner, then and later.
func testAppendOwned(t *testing.T, open func(t *testing.T) *journal.Journal) {
	j := open(t)
	ctx := testContext(t)
	for _, id := range []string{"6f1c2a7e-0d4b-4f4e-9a55-3c1d7b8e2f10", "odd:id+with@chars~=x"} {
		var wg sync.WaitGroup
		owners := make([]string, 8)
		stored := make([]bool, len(owners))
		for i := range owners {
			wg.Go(func() {
				e := event(t, id, 0)
				e.Issuer = fmt.Sprintf("issuer-%d", i)
				if i%2 == 1 {
					e.Source = engine.SourceForge
				}
				ack, o, err := j.AppendOwned(ctx, e)
				if err != nil {
					t.Error(err)
				}
				owners[i], stored[i] = o, ack.Seq != 0
			})
		}
		wg.Wait()
		winners := 0
		for i, o := range owners {
			if o != owners[0] {
				t.Errorf("%s: owners disagree: %v", id, owners)
				break
			}
			if stored[i] {
				winners++
				if want := journal.OwnerOf(map[bool]engine.Source{false: engine.SourceConnect, true: engine.SourceForge}[i%2 == 1], fmt.Sprintf("issuer-%d", i)); o != want {
					t.Errorf("%s: stored the event of %s, owner %s", id, want, o)
				}
			}
		}
		if winners != 1 {
			t.Errorf("%s: %d first events stored, want 1", id, winners)
		}
		envs := transferEvents(t, j, id)
		if len(envs) != 1 {
			t.Errorf("%s: %d events stored, want 1", id, len(envs))
		}

		// The owner appends on; a late tenant stores nothing.
		src, issuer, _ := strings.Cut(owners[0], ":")
		next := event(t, id, 1)
		next.Source, next.Issuer = engine.Source(src), issuer
		if ack, o, err := j.AppendOwned(ctx, next); err != nil || o != owners[0] || ack.Seq == 0 || ack.Duplicate {
			t.Errorf("%s: the owner's next event: %+v, %q, %v", id, ack, o, err)
		}
		late := event(t, id, 2)
		late.Issuer = "late"
		if ack, o, err := j.AppendOwned(ctx, late); err != nil || o != owners[0] || ack.Seq != 0 {
			t.Errorf("%s: a late tenant: %+v, %q, %v; want owner %q and nothing stored", id, ack, o, err, owners[0])
		}
		if envs := transferEvents(t, j, id); len(envs) != 2 {
			t.Errorf("%s: %d events stored, want 2", id, len(envs))
		}
	}
}

// TestOpenConcurrently opens two journals on one external NATS at once.
func TestOpenConcurrently(t *testing.T) {
	url := journaltest.Server(t)
	js := make([]*journal.Journal, 4)
	var wg sync.WaitGroup
	for i := range js {
		wg.Go(func() {
			j, err := journal.Open(testContext(t), journal.Config{URL: url})
			if err != nil {
				t.Error(err)
				return
			}
			js[i] = j
		})
	}
	wg.Wait()
	for _, j := range js {
		if j != nil {
			j.Close()
		}
	}
}

// TestAppendJournalDown stops the server under appenders: every append
// either is acknowledged or fails with ErrUnavailable, none outlives its
// context, and, with the embedded server, every acknowledged event is in
// the stream when it comes back.
func TestAppendJournalDown(t *testing.T) {
	for _, tc := range []struct {
		name string
		open func(t *testing.T) (j *journal.Journal, stop func(), reopen func() *journal.Journal)
	}{
		{"embedded", func(t *testing.T) (*journal.Journal, func(), func() *journal.Journal) {
			dir := t.TempDir()
			j := journaltest.OpenConfig(t, journal.Config{DataDir: dir})
			return j, func() { journal.ShutdownServer(j) }, func() *journal.Journal {
				j.Close()
				return journaltest.OpenConfig(t, journal.Config{DataDir: dir})
			}
		}},
		{"embedded-sync", func(t *testing.T) (*journal.Journal, func(), func() *journal.Journal) {
			dir := t.TempDir()
			j := journaltest.OpenConfig(t, journal.Config{DataDir: dir, SyncAlways: true})
			return j, func() { journal.ShutdownServer(j) }, func() *journal.Journal {
				j.Close()
				return journaltest.OpenConfig(t, journal.Config{DataDir: dir})
			}
		}},
		{"embedded-atomic", func(t *testing.T) (*journal.Journal, func(), func() *journal.Journal) {
			dir := t.TempDir()
			j := journaltest.OpenConfig(t, journal.Config{DataDir: dir, SyncAlways: true, GroupCommit: journal.GroupCommitAtomic})
			return j, func() { journal.ShutdownServer(j) }, func() *journal.Journal {
				j.Close()
				return journaltest.OpenConfig(t, journal.Config{DataDir: dir})
			}
		}},
		{"external", func(t *testing.T) (*journal.Journal, func(), func() *journal.Journal) {
			s := journaltest.StartServer(t)
			j := journaltest.OpenConfig(t, journal.Config{URL: s.ClientURL()})
			return j, s.Shutdown, nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			j, stop, reopen := tc.open(t)
			const timeout = 2 * time.Second
			var (
				mu    sync.Mutex
				acked = map[string]uint64{}
				wg    sync.WaitGroup
				done  = make(chan struct{})
			)
			for w := range 16 {
				wg.Go(func() {
					for i := 0; ; i++ {
						select {
						case <-done:
							return
						default:
						}
						e := event(t, fmt.Sprintf("w%d", w), i)
						ctx, cancel := context.WithTimeout(context.Background(), timeout)
						start := time.Now()
						ack, err := j.Append(ctx, e)
						cancel()
						if d := time.Since(start); d > timeout+time.Second {
							t.Errorf("append took %v with a %v context", d, timeout)
						}
						if err != nil {
							if !errors.Is(err, journal.ErrUnavailable) {
								t.Errorf("append: %v, want ErrUnavailable", err)
							}
							continue
						}
						mu.Lock()
						acked[e.ID] = ack.Seq
						mu.Unlock()
					}
				})
			}
			time.Sleep(200 * time.Millisecond)
			stop()
			time.Sleep(100 * time.Millisecond)

			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			start := time.Now()
			_, err := j.Append(ctx, event(t, "after", 0))
			cancel()
			if !errors.Is(err, journal.ErrUnavailable) {
				t.Errorf("append after shutdown: %v, want ErrUnavailable", err)
			}
			if d := time.Since(start); d > timeout+time.Second {
				t.Errorf("append after shutdown took %v", d)
			}
			close(done)
			wg.Wait()

			mu.Lock()
			defer mu.Unlock()
			if len(acked) == 0 {
				t.Fatal("no append succeeded before the shutdown")
			}
			if reopen == nil {
				return
			}
			j = reopen()
			stored := map[string]uint64{}
			for env, err := range j.Scan(testContext(t), "") {
				if err != nil {
					t.Fatal(err)
				}
				stored[env.ID] = env.Seq
			}
			for id, seq := range acked {
				if stored[id] != seq {
					t.Errorf("acknowledged %s at seq %d, stored at %d", id, seq, stored[id])
				}
			}
			t.Logf("%d acknowledged, %d stored", len(acked), len(stored))
		})
	}
}

func TestOpenBadConfig(t *testing.T) {
	ctx := testContext(t)
	if _, err := journal.Open(ctx, journal.Config{}); err == nil {
		t.Error("Open without URL or DataDir succeeded")
	}
	_, err := journal.Open(ctx, journal.Config{URL: "nats://127.0.0.1:1", Timeout: 200 * time.Millisecond})
	if !errors.Is(err, journal.ErrUnavailable) {
		t.Errorf("Open of an unreachable URL: %v, want ErrUnavailable", err)
	}
}

func TestOpenInUse(t *testing.T) {
	dir := t.TempDir()
	j := journaltest.OpenConfig(t, journal.Config{DataDir: dir})
	if _, err := journal.Open(testContext(t), journal.Config{DataDir: dir}); !errors.Is(err, journal.ErrInUse) {
		t.Fatalf("second Open on %s: %v, want ErrInUse", dir, err)
	}
	j.Close()
	journaltest.OpenConfig(t, journal.Config{DataDir: dir})
}

func TestClientURL(t *testing.T) {
	if u := journaltest.Open(t).ClientURL(); u != "" {
		t.Errorf("embedded without Listen: ClientURL = %q", u)
	}
	j := journaltest.OpenConfig(t, journal.Config{Listen: "127.0.0.1:0",
		ListenUsers: []journal.ListenUser{{Name: "importer", Password: "importer-password"}}})
	url := j.ClientURL()
	if !strings.HasPrefix(url, "nats://127.0.0.1:") || strings.HasSuffix(url, ":0") || strings.HasSuffix(url, ":-1") {
		t.Fatalf("ClientURL = %q", url)
	}
	ack := mustAppend(t, j, event(t, "t1", 0))
	// An importer (see TestListenImporters) reads the stream's state there.
	nc, err := nats.Connect(url, nats.UserInfo("importer", "importer-password"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(testContext(t), journal.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().State.LastSeq; got != ack.Seq {
		t.Errorf("LastSeq over %s = %d, want %d", url, got, ack.Seq)
	}
}

// readAll reads r in batches of at most max until nothing is pending.
func readAll(t *testing.T, r *journal.Reader, max int) []journal.Envelope {
	t.Helper()
	var all []journal.Envelope
	for r.Pending() > 0 {
		batch, err := r.Next(testContext(t), max)
		if err != nil {
			t.Fatal(err)
		}
		if len(batch) == 0 || len(batch) > max {
			t.Fatalf("batch of %d with max %d", len(batch), max)
		}
		all = append(all, batch...)
	}
	return all
}

func assertEnvelope(t *testing.T, env journal.Envelope, want *engine.Event) {
	t.Helper()
	if env.ID != want.ID || env.Source != want.Source || env.Kind != want.Kind ||
		env.TransferID != want.TransferID || env.Issuer != want.Issuer ||
		!env.ReceivedAt.Equal(want.ReceivedAt) || string(env.Payload) != string(want.Payload) {
		t.Errorf("envelope %+v\ndoes not match event %+v", env, want)
	}
	ev, err := env.Event()
	if err != nil {
		t.Fatal(err)
	}
	if ev.ID != want.ID || ev.Kind != want.Kind || ev.Seq != env.Seq || ev.Issuer != want.Issuer {
		t.Errorf("Event() = %+v, want %+v with seq %d", ev, want, env.Seq)
	}
}

func mustAppend(tb testing.TB, j *journal.Journal, e *engine.Event) journal.Ack {
	tb.Helper()
	ack, err := j.Append(testContext(tb), e)
	if err != nil {
		tb.Fatalf("Append %s: %v", e.ID, err)
	}
	return ack
}

func mustLastSeq(t *testing.T, j *journal.Journal) uint64 {
	t.Helper()
	seq, err := j.LastSeq(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

func testContext(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(tb.Context(), 10*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

var epoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// event returns the n-th Connect event of transfer id: kinds cycle, the
// messageId is unique per (id, n), and the payload is about 700 bytes.
func event(tb testing.TB, id string, n int) *engine.Event {
	tb.Helper()
	types := []string{"listener-triggered", "app-data-uploaded", "listener-errored", "some-future-event"}
	payload := fmt.Sprintf(`{"eventType":%q,"transferId":%q,"messageId":"%s-%d",`+
		`"migrationDetails":{"migrationId":"m-1","migrationScopeId":"scope-1","name":"Move <A&B> to cloud",`+
		`"createdAt":1772366400000,"cloudUrl":"https://example.atlassian.net","jiraClientKey":"jira-key"},`+
		`"s3Key":"uploads/%s/%d","label":"attachments","note":"élan, 日本語, \u00e9 \"quoted\"",`+
		`"padding":%q}`,
		types[n%len(types)], id, id, n, id, n, strings.Repeat("x", 300))
	e, err := engine.Parse(engine.SourceConnect, []byte(payload))
	if err != nil {
		tb.Fatalf("engine.Parse: %v", err)
	}
	e.Issuer = "client-key-1"
	e.ReceivedAt = epoch.Add(time.Duration(n) * time.Millisecond).In(time.FixedZone("x", 3600))
	return e
}
