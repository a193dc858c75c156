package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/transferd/transferd/engine"
)

// The projection stores a transfer's canonical JSON (engine.Transfer's
// encoding); the API shows its View, which adds the derived fields after
// the transfer's own. Decoding the whole transfer and encoding it again
// would be most of the cost of GET /v1/transfers/{id}, so appendView reads
// only the facts the derived fields depend on, derives them with the
// engine's own methods, and splices their encoding in before the closing
// brace. The result is byte for byte json.Marshal(t.View())
// (TestAppendViewMatchesEngine).

// viewFacts are the facts engine.Transfer.View derives from, for the
// encoding/json fallback.
type viewFacts struct {
	Phase     engine.Phase `json:"phase"`
	Migration *struct {
		CreatedAt time.Time `json:"createdAt"`
	} `json:"migration"`
	Error                   *struct{}  `json:"error"`
	CancellationRequested   bool       `json:"cancellationRequested"`
	CancellationRequestedAt *time.Time `json:"cancellationRequestedAt"`
	TriggeredAt             *time.Time `json:"triggeredAt"`
	Settled                 *struct{}  `json:"settled"`
	AppSettled              *struct{}  `json:"appSettled"`
}

var errNotObject = errors.New("api: stored transfer is not a JSON object")

// appendView appends the view of the transfer whose canonical JSON is
// canonical to dst.
func appendView(dst, canonical []byte) ([]byte, error) {
	t, ok := scanFacts(canonical)
	if !ok {
		var f viewFacts
		if err := json.Unmarshal(canonical, &f); err != nil {
			return dst, fmt.Errorf("api: stored transfer: %w", err)
		}
		t = f.transfer()
	}
	n := len(canonical)
	if n < 2 || canonical[0] != '{' || canonical[n-1] != '}' {
		return dst, errNotObject
	}
	dst = append(dst, canonical[:n-1]...)
	if n > 2 {
		dst = append(dst, ',')
	}
	return appendDerived(dst, t)
}

func (f *viewFacts) transfer() *engine.Transfer {
	t := &engine.Transfer{
		Phase:                   f.Phase,
		CancellationRequested:   f.CancellationRequested,
		CancellationRequestedAt: f.CancellationRequestedAt,
		TriggeredAt:             f.TriggeredAt,
	}
	if f.Migration != nil {
		t.Migration = &engine.Migration{CreatedAt: f.Migration.CreatedAt}
	}
	if f.Error != nil {
		t.Error = &engine.TransferError{}
	}
	if f.Settled != nil {
		t.Settled = &engine.Settlement{}
	}
	if f.AppSettled != nil {
		t.AppSettled = &engine.AppSettlement{}
	}
	return t
}

// appendDerived appends `"needsAction":…,"deadlines":{…}}` for t, as
// encoding/json writes engine.View's own fields.
func appendDerived(dst []byte, t *engine.Transfer) ([]byte, error) {
	v := t.View()
	dst = append(dst, `"needsAction":`...)
	if v.NeedsAction == nil {
		dst = append(dst, "null"...)
	} else {
		dst = appendString(dst, *v.NeedsAction)
	}
	dst = append(dst, `,"deadlines":{`...)
	var err error
	if v.Deadlines.SettleBy != nil {
		dst = append(dst, `"settleBy":`...)
		if dst, err = appendTime(dst, *v.Deadlines.SettleBy); err != nil {
			return dst, err
		}
	}
	if v.Deadlines.TimesOutAt != nil {
		if v.Deadlines.SettleBy != nil {
			dst = append(dst, ',')
		}
		dst = append(dst, `"timesOutAt":`...)
		if dst, err = appendTime(dst, *v.Deadlines.TimesOutAt); err != nil {
			return dst, err
		}
	}
	return append(dst, "}}"...), nil
}

// appendTime appends t as encoding/json does (time.Time.MarshalJSON).
func appendTime(dst []byte, t time.Time) ([]byte, error) {
	dst = append(dst, '"')
	dst, err := t.AppendText(dst)
	if err != nil {
		return dst, fmt.Errorf("api: deadline: %w", err)
	}
	return append(dst, '"'), nil
}

// scanFacts reads the derived fields' inputs from a canonical transfer by
// walking its top-level members (and the migration's) with the engine's
// JSON scanner, without decoding the rest. ok is false for anything
// unexpected; the caller then decodes with encoding/json. Keys are
// compared as written, quotes included: the canonical encoding escapes no
// letter.
func scanFacts(b []byte) (t *engine.Transfer, ok bool) {
	t = &engine.Transfer{}
	ok = engine.ScanObject(b, func(key, value []byte) bool {
		switch string(key) {
		case `"phase"`:
			p, known := phaseOf(value)
			t.Phase = p
			return known
		case `"migration"`:
			if isNull(value) {
				return true
			}
			t.Migration = &engine.Migration{}
			return engine.ScanObject(value, func(key, value []byte) bool {
				if string(key) != `"createdAt"` {
					return true
				}
				return parseTimeValue(value, &t.Migration.CreatedAt)
			})
		case `"error"`:
			if !isNull(value) {
				t.Error = &engine.TransferError{}
			}
		case `"cancellationRequested"`:
			t.CancellationRequested = string(value) == "true"
		case `"cancellationRequestedAt"`:
			if !isNull(value) {
				t.CancellationRequestedAt = new(time.Time)
				return parseTimeValue(value, t.CancellationRequestedAt)
			}
		case `"triggeredAt"`:
			if !isNull(value) {
				t.TriggeredAt = new(time.Time)
				return parseTimeValue(value, t.TriggeredAt)
			}
		case `"settled"`:
			if !isNull(value) {
				t.Settled = &engine.Settlement{}
			}
		case `"appSettled"`:
			if !isNull(value) {
				t.AppSettled = &engine.AppSettlement{}
			}
		}
		return true
	})
	return t, ok
}

func isNull(v []byte) bool { return string(v) == "null" }

// phaseOf returns the known phase the JSON string v names, without
// allocating.
func phaseOf(v []byte) (engine.Phase, bool) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return "", false
	}
	for _, p := range engine.Phases {
		if string(v[1:len(v)-1]) == string(p) {
			return p, true
		}
	}
	return "", false
}

func parseTimeValue(v []byte, into *time.Time) bool {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return false
	}
	return into.UnmarshalText(v[1:len(v)-1]) == nil
}

// marshalView encodes t's view, for transfers folded here (?at=).
func marshalView(t *engine.Transfer) ([]byte, error) {
	return json.Marshal(t.View())
}
