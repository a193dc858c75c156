package ingest

import (
	"encoding/json"
	"math"
	"testing"
)

// Accepted's reply is byte for byte what encoding/json (httperr.WriteJSON)
// writes for it.
func TestAcceptedJSON(t *testing.T) {
	for _, a := range []Accepted{
		{}, {Accepted: true, Seq: 1}, {Accepted: true, Seq: 12345678901, Duplicate: true},
		{Seq: math.MaxUint64, Duplicate: true},
	} {
		want, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(a.appendJSON(nil)); got != string(want)+"\n" {
			t.Errorf("%+v: %q, want %q", a, got, want)
		}
	}
}
