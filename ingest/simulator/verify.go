package simulator

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/transferd/transferd/engine"
)

// CheckStored checks the identities of the messages of stream MIGRATIONS
// (stored, in stream order) against r, for a stream that held nothing
// before the run: every acknowledged event is stored exactly once, no
// refused request is stored, and nothing else is.
func (r *Result) CheckStored(stored []string) error {
	count := make(map[string]int, len(stored))
	for _, id := range stored {
		count[id]++
	}
	var errs []error
	for _, a := range r.Acked {
		if n := count[a.ID]; n != 1 {
			errs = append(errs, fmt.Errorf("acknowledged event %s (%s of %s) stored %d times", a.ID, a.Kind, a.TransferID, n))
		}
	}
	for _, b := range r.Refused {
		if b.ID != "" && count[b.ID] > 0 {
			errs = append(errs, fmt.Errorf("refused %s request %s (%d) stored", b.Kind, b.ID, b.Status))
		}
	}
	if len(stored) != len(r.Acked) {
		errs = append(errs, fmt.Errorf("%d messages stored, %d distinct events acknowledged", len(stored), len(r.Acked)))
	}
	return errors.Join(errs...)
}

// Match reports how t, a transfer folded from the stored events, differs
// from x; nil when it has every fact x expects. Times the server stamps
// (receipt, cancellation, settlement) are not compared.
func (x TransferExpect) Match(t *engine.Transfer) error {
	var diffs []string
	check := func(field string, got, want any) {
		if !reflect.DeepEqual(got, want) {
			diffs = append(diffs, fmt.Sprintf("%s = %v, want %v", field, show(got), show(want)))
		}
	}
	check("transferId", t.TransferID, x.TransferID)
	check("source", t.Source, x.Source)
	check("issuer", t.Issuer, x.Issuer)
	check("phase", t.Phase, x.Phase)
	check("version", t.Version, x.Version)
	check("originalTransferId", t.OriginalTransferID, x.OriginalTransferID)
	check("migration", t.Migration, x.Migration)
	// Uploads are compared by key, label and kind: their messageIds,
	// receipt and import work are not the platform's facts expected here.
	uploads := []engine.Upload{}
	for _, u := range t.Uploads {
		uploads = append(uploads, engine.Upload{Key: u.Key, Label: u.Label, Kind: u.Kind})
	}
	check("uploads", uploads, x.Uploads)
	check("exportCompleted", t.ExportCompleted, x.ExportCompleted)
	check("error", t.Error, x.Error)
	check("cancellationRequested", t.CancellationRequested, x.CancellationRequested)
	var settled *SettledExpect
	if t.Settled != nil {
		settled = &SettledExpect{Status: t.Settled.Status}
	}
	check("settled", settled, x.Settled)
	check("needsAction", t.NeedsAction(), x.NeedsAction)
	if len(diffs) == 0 {
		return nil
	}
	return fmt.Errorf("transfer %s: %s", x.TransferID, strings.Join(diffs, "; "))
}

// show dereferences pointers so that a difference reads as values.
func show(v any) any {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return "nil"
		}
		return fmt.Sprintf("%+v", rv.Elem().Interface())
	}
	return v
}
