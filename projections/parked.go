package projections

import (
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/transferd/transferd/engine"
)

// An event the projector cannot fold is parked rather than allowed to stop
// the projection: it stays in the journal (which is never trimmed), is not
// applied to its transfer, and is recorded in the parked bucket, keyed by
// its stream sequence, with the reason. Everything else goes on.
//
// An event is parked when engine.Foldable rejects it (a time that JSON
// cannot represent, as a createdAt of 9999-12-31 whose 14-day deadline is
// past year 9999): a function of the event alone, so the parked set does
// not depend on the order of events or on batch boundaries, and Rebuild
// and Verify arrive at the same set as the live projector. As defence in
// depth, a batch whose folding panics, or whose transfer would not encode,
// is rolled back and folded again one event at a time; the event that
// fails on its own is parked with the failure as the reason. That retry is
// deterministic too: the same stream gives the same states, event by
// event, whatever the batches.

// ParkedEvent is an event the projector could not fold.
type ParkedEvent struct {
	Seq        uint64      `json:"seq"`
	ID         string      `json:"id"`
	TransferID string      `json:"transferId"`
	Kind       engine.Kind `json:"kind"`
	Source     string      `json:"source"`
	Issuer     string      `json:"issuer"`
	// ReceivedAt is as stored, RFC 3339 (possibly beyond year 9999, which
	// is why it is a string).
	ReceivedAt string `json:"receivedAt"`
	Reason     string `json:"reason"`
}

func newParked(e *engine.Event, reason string) ParkedEvent {
	return ParkedEvent{
		Seq: e.Seq, ID: e.ID, TransferID: e.TransferID, Kind: e.Kind,
		Source: string(e.Source), Issuer: e.Issuer,
		ReceivedAt: e.ReceivedAt.UTC().Format(time.RFC3339Nano),
		Reason:     reason,
	}
}

func (pe ParkedEvent) encode() []byte {
	b, err := json.Marshal(pe)
	if err != nil { // strings and integers only
		return []byte(`{"seq":` + fmt.Sprint(pe.Seq) + `}`)
	}
	return b
}

// MaxParked bounds the parked events one Parked call returns.
const MaxParked = 1000

// Parked returns the parked events in stream order, after sequence after,
// at most limit (MaxParked when zero or more), and the total parked.
func (s *Store) Parked(after uint64, limit int) ([]ParkedEvent, uint64, error) {
	if limit <= 0 || limit > MaxParked {
		limit = MaxParked
	}
	out := []ParkedEvent{}
	var total uint64
	if after == 1<<64-1 {
		return out, 0, nil
	}
	err := s.view(func(tx *bolt.Tx) error {
		total = getU64(tx.Bucket(bucketMeta).Get(metaParked))
		b := tx.Bucket(bucketParked)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Seek(u64(after + 1)); k != nil && len(out) < limit; k, v = c.Next() {
			var pe ParkedEvent
			if err := json.Unmarshal(v, &pe); err != nil {
				return fmt.Errorf("projections: parked event %d: %w", getU64(k), err)
			}
			out = append(out, pe)
		}
		return nil
	})
	return out, total, err
}
