package projections_test

import (
	"testing"
	"time"

	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/engine/journal"
	"github.com/transferd/transferd/engine/journal/journaltest"
	"github.com/transferd/transferd/projections"
)

// Finding 10.E: TRANSFERS grew without bound, one message per state
// published. It keeps every state for Config.TransfersMaxAge (30 days by
// default), so it is bounded in time; the states of a transfer are all
// there until they age out (issue 11: keeping only the latest per subject
// made nats-server load old blocks to delete them).
func TestTransfersFeedIsBounded(t *testing.T) {
	const age = time.Second
	j := journaltest.OpenConfig(t, journal.Config{TransfersMaxAge: age})
	s := newStore(t)
	for i, id := range []string{"u1", "u2", "u3"} {
		mustAppend(t, j, event(t, engine.SourceConnect,
			`{"eventType":"app-data-uploaded","transferId":"t-1","messageId":"`+id+`","s3Key":"k`+id+`","label":"l"}`, genEpoch.Add(time.Duration(i)*time.Second)))
		mustCatchUp(t, j, s, projections.ProjectorOptions{}) // publishes each version
	}
	msgs := readFeed(t, j, journal.TransferSubject("t-1", engine.PhaseDataUploaded))
	if len(msgs) != 3 || msgs[0].MsgID != "t-1:1" || msgs[2].MsgID != "t-1:3" {
		t.Fatalf("feed for t-1 data_uploaded: %d messages %+v, want every version (t-1:1 to t-1:3)", len(msgs), msgs)
	}
	deadline := time.Now().Add(10 * age)
	for feedCount(t, j) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("TRANSFERS still holds %d states %v after they were published, with a max age of %v", feedCount(t, j), 10*age, age)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The projection is not the feed: the transfer is still there.
	if tr, err := s.Transfer("t-1"); err != nil || tr.Version != 3 {
		t.Fatalf("transfer after its states aged out of TRANSFERS: %+v, %v; want version 3", tr, err)
	}
}
