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
// published. It keeps the latest state of each transfer per phase.
func TestTransfersFeedIsBounded(t *testing.T) {
	j := journaltest.Open(t)
	s := newStore(t)
	for i, id := range []string{"u1", "u2", "u3"} {
		mustAppend(t, j, event(t, engine.SourceConnect,
			`{"eventType":"app-data-uploaded","transferId":"t-1","messageId":"`+id+`","s3Key":"k`+id+`","label":"l"}`, genEpoch.Add(time.Duration(i)*time.Second)))
		mustCatchUp(t, j, s, projections.ProjectorOptions{}) // publishes each version
	}
	msgs := readFeed(t, j, journal.TransferSubject("t-1", engine.PhaseDataUploaded))
	if len(msgs) != 1 || msgs[0].MsgID != "t-1:3" {
		t.Fatalf("feed for t-1 data_uploaded: %d messages %+v, want only the latest (t-1:3)", len(msgs), msgs)
	}
}
