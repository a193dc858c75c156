package projections_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/engine/journal"
	"github.com/transferd/transferd/engine/journal/journaltest"
	"github.com/transferd/transferd/projections"
)

// Environment of the helper process.
const (
	helperEnv = "PROJECTIONS_TEST_HELPER"
	helperURL = "PROJECTIONS_TEST_NATS_URL"
	helperDB  = "PROJECTIONS_TEST_DB"
	helperMax = "PROJECTIONS_TEST_MAX_BATCH"
)

// TestHelperProcess is not a test: TestCrashRecovery runs the test binary
// again with helperEnv set, to project in a process it can SIGKILL, and
// BenchmarkCatchUp to run the NATS server in a process of its own.
func TestHelperProcess(t *testing.T) {
	var err error
	switch os.Getenv(helperEnv) {
	case "catch-up":
		err = helperCatchUp()
	case "nats-server":
		err = helperServer()
	default:
		t.Skip("helper process for TestCrashRecovery and BenchmarkCatchUp")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func helperCatchUp() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	j, err := journal.Open(ctx, journal.Config{URL: os.Getenv(helperURL)})
	if err != nil {
		return err
	}
	defer j.Close()
	s, err := projections.Open(os.Getenv(helperDB), projections.Options{Timeout: 10 * time.Second})
	if err != nil {
		return err
	}
	defer s.Close()
	maxBatch, _ := strconv.Atoi(os.Getenv(helperMax))
	// A line per commit that changed something, for TestCrashRecovery to
	// time its kills by.
	notify := func(cs []projections.Change) { fmt.Printf("committed %d\n", cs[0].Seq) }
	return projections.CatchUp(ctx, j, s, projections.ProjectorOptions{MaxBatch: maxBatch, Notify: notify})
}

func helperCommand(url, path string, maxBatch int) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"=catch-up", helperURL+"="+url, helperDB+"="+path,
		helperMax+"="+strconv.Itoa(maxBatch))
	cmd.Stderr = os.Stderr
	return cmd
}

// TestCrashRecovery projects in a child process that is SIGKILLed at
// random moments while catching up, restarts it until it finishes, and
// compares the result with a projection made in one clean run: the same
// transfers byte for byte, the same applied identities, indexes, lineage,
// counters and checkpoint. Nothing skipped, nothing applied twice.
func TestCrashRecovery(t *testing.T) {
	url := journaltest.Server(t)
	j := journaltest.OpenConfig(t, journal.Config{URL: url})
	events := generate(16, 3000)
	appendFast(t, j, events)
	// Re-deliveries beyond the duplicate window, scattered through the stream.
	appendFastIDs(t, j, events[1000:1300], func(e *engine.Event) string { return "dup-" + e.ID })
	appendFast(t, j, generate(17, 1000))
	last, err := j.LastSeq(testContext(t))
	if err != nil {
		t.Fatal(err)
	}

	path := filepath.Join(t.TempDir(), "p.db")
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	var midway []uint64
	for attempt := 0; len(midway) < 4 && attempt < 20; attempt++ {
		cmd := helperCommand(url, path, 10) // many commits to be killed in the middle of
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Killed after a random number of its commits and a random
		// moment more: by then it is reading, folding or committing the
		// next batches (how fast it commits is the machine's, not ours).
		sc := bufio.NewScanner(out)
		for n := 1 + rng.IntN(100); n > 0 && sc.Scan(); n-- {
		}
		time.Sleep(time.Duration(rng.IntN(3000)) * time.Microsecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
			t.Fatal(err)
		}
		io.Copy(io.Discard, out)
		err = cmd.Wait()
		cp := checkpointOf(t, path)
		if _, serr := os.Stat(path + ".unsynced"); serr != nil && thisBoot(t) != "" && cp < last {
			// Killed, not closed: the file is whole (same boot), its mark
			// says it was written without syncs.
			t.Errorf("no unsynced mark after a kill: %v", serr)
		}
		t.Logf("killed at checkpoint %d of %d (%v)", cp, last, err)
		if cp > 0 && cp < last {
			midway = append(midway, cp)
		}
		if cp == last {
			break // done before it could be killed again
		}
	}
	if len(midway) < 2 {
		t.Fatalf("only %d kills landed in the middle of catching up", len(midway))
	}
	if err := helperCommand(url, path, 1000).Run(); err != nil {
		t.Fatalf("final run: %v", err)
	}

	crashed := mustOpen(t, path)
	clean := newStore(t)
	mustCatchUp(t, j, clean, projections.ProjectorOptions{NoPublish: true})
	if crashed.Checkpoint() != last || clean.Checkpoint() != last {
		t.Fatalf("checkpoints %d and %d, want %d", crashed.Checkpoint(), clean.Checkpoint(), last)
	}
	diffs, err := projections.CompareStores(crashed, clean)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffs {
		t.Error(d)
	}
	assertMatchesFold(t, j, crashed)
	st, _ := crashed.Stats()
	if st.Events != 4000 || st.Duplicates != 300 {
		t.Errorf("events %d duplicates %d, want 4000 and 300", st.Events, st.Duplicates)
	}

	// The feed: every transfer's latest state is published, none twice
	// (all within JetStream's duplicate window), and nothing is left over.
	published := map[string]int{}
	for _, m := range readFeed(t, j, "") {
		published[m.MsgID]++
	}
	for id, n := range published {
		if n > 1 {
			t.Errorf("state %s published %d times", id, n)
		}
	}
	for id, tr := range folded(t, j) {
		if _, msgID, _ := projections.FeedMessage(tr); published[msgID] == 0 {
			t.Errorf("transfer %s: latest state %s never published", id, msgID)
		}
	}
	if st.FeedPending != 0 {
		t.Errorf("outbox has %d entries after the final run", st.FeedPending)
	}
}

// checkpointOf reads the checkpoint of the store at path (0 before it
// exists).
func checkpointOf(t *testing.T, path string) uint64 {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		return 0
	}
	s, err := projections.Open(path, projections.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Check(); err != nil {
		t.Fatalf("store after SIGKILL: %v", err)
	}
	return s.Checkpoint()
}
