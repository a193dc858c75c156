package journal

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/transferd/transferd/engine"
)

// Version is the envelope format version written by Encode.
const Version = 1

// Envelope is a stored event as the journal sees it: the routing fields,
// the payload exactly as received, and where it sits in the stream. Its JSON
// form is the envelope of DESIGN §5 plus "seq"; note that json.Marshal
// compacts and re-escapes the payload, while Encode keeps it verbatim.
type Envelope struct {
	V          int           `json:"v"`
	ID         string        `json:"id"`
	Source     engine.Source `json:"source"`
	Kind       engine.Kind   `json:"kind"`
	TransferID string        `json:"transferId"`
	Issuer     string        `json:"issuer"`
	ReceivedAt time.Time     `json:"receivedAt"`
	// Payload holds the bytes the event was received with, byte for byte.
	Payload json.RawMessage `json:"payload"`
	// Seq is the stream sequence; zero unless the envelope was read from
	// the stream.
	Seq uint64 `json:"seq,omitempty"`
	// Key is the event's key (engine.Event.Key) as its Nats-Msg-Id
	// recorded it when it was appended; empty unless the envelope was
	// read from the stream with such a header (engine.KeyInDedupeKey). Not
	// encoded.
	Key string `json:"-"`
}

// header is the part of the envelope Encode marshals; the payload is
// appended by hand so that its bytes stay verbatim (encoding/json compacts
// and re-escapes a RawMessage).
type header struct {
	V          int           `json:"v"`
	ID         string        `json:"id"`
	Source     engine.Source `json:"source"`
	Kind       engine.Kind   `json:"kind"`
	TransferID string        `json:"transferId"`
	Issuer     string        `json:"issuer"`
	ReceivedAt string        `json:"receivedAt"`
}

// payloadKey precedes the payload, last in an encoded envelope.
var payloadKey = []byte(`,"payload":`)

// Encode returns the envelope of e as stored in the stream:
// {"v":1,"id",…,"receivedAt":<RFC 3339, UTC>,"payload":<e.Payload verbatim>}.
// e.Payload must be valid JSON (ingest validates it); an empty payload is
// written as null.
func Encode(e *engine.Event) []byte {
	h, err := json.Marshal(header{
		V:          Version,
		ID:         e.ID,
		Source:     e.Source,
		Kind:       e.Kind,
		TransferID: e.TransferID,
		Issuer:     e.Issuer,
		ReceivedAt: e.ReceivedAt.UTC().Format(time.RFC3339Nano),
	})
	if err != nil {
		panic("journal: marshal envelope header: " + err.Error()) // strings only: cannot fail
	}
	payload := []byte(e.Payload)
	if len(payload) == 0 {
		payload = []byte("null")
	}
	b := make([]byte, 0, len(h)+len(payloadKey)+len(payload))
	b = append(b, h[:len(h)-1]...) // drop the closing brace
	b = append(b, payloadKey...)
	b = append(b, payload...)
	return append(b, '}')
}

// Decode parses an envelope. For one written by Encode the returned Payload
// is the exact payload bytes, aliasing data, and the payload is not scanned
// (the projector's catch-up reads millions of envelopes, and
// Envelope.Event parses the payload anyway). Envelopes laid out otherwise
// (another writer, reformatted JSON) are parsed with encoding/json, the
// payload as it delimits it. Errors wrap ErrMalformed.
func Decode(data []byte) (Envelope, error) {
	if env, ok := decodeEncoded(data); ok {
		return env, env.check()
	}
	var env Envelope
	if err := json.Unmarshal(data, &env); err != nil {
		return Envelope{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return env, env.check()
}

// decodeEncoded parses exactly the layout Encode writes, without
// reflection: the fixed keys in order, each value a JSON string (read by
// engine.CutString), the payload whatever lies between the last key and
// the closing brace. ok is false for anything else.
func decodeEncoded(data []byte) (env Envelope, ok bool) {
	d := decoder{b: data}
	var src, kind, at string
	ok = d.lit(`{"v":1,"id":`) && d.str(&env.ID) &&
		d.lit(`,"source":`) && d.known(&src, sources) &&
		d.lit(`,"kind":`) && d.known(&kind, kinds) &&
		d.lit(`,"transferId":`) && d.str(&env.TransferID) &&
		d.lit(`,"issuer":`) && d.str(&env.Issuer) &&
		d.lit(`,"receivedAt":`) && d.str(&at) &&
		d.lit(string(payloadKey)) && len(d.b) > 1 && d.b[len(d.b)-1] == '}'
	if !ok {
		return Envelope{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, at)
	if err != nil {
		return Envelope{}, false
	}
	env.V, env.Source, env.Kind, env.ReceivedAt = Version, engine.Source(src), engine.Kind(kind), t
	env.Payload = d.b[:len(d.b)-1]
	return env, true
}

// decoder consumes an encoded envelope from the front.
type decoder struct{ b []byte }

func (d *decoder) lit(s string) bool {
	if len(d.b) < len(s) || string(d.b[:len(s)]) != s {
		return false
	}
	d.b = d.b[len(s):]
	return true
}

// str consumes a JSON string into *s with the engine's JSON scanner,
// which slices a string without escapes and decodes one with them.
func (d *decoder) str(s *string) bool {
	v, rest, ok := engine.CutString(d.b)
	if ok {
		*s, d.b = v, rest
	}
	return ok
}

// known is str, sharing the bytes of the string in set that the JSON
// string is when it is one of them spelt plainly: sources and kinds are a
// few constants, not worth a copy per envelope.
func (d *decoder) known(s *string, set []string) bool {
	if len(d.b) > 0 && d.b[0] == '"' {
		for _, k := range set {
			if len(d.b) > len(k)+1 && d.b[len(k)+1] == '"' && string(d.b[1:len(k)+1]) == k {
				*s, d.b = k, d.b[len(k)+2:]
				return true
			}
		}
	}
	return d.str(s)
}

// The sources and kinds known shares.
var (
	sources = []string{string(engine.SourceConnect), string(engine.SourceForge), string(engine.SourceApp)}
	kinds   = func() []string {
		ks := make([]string, len(engine.Kinds))
		for i, k := range engine.Kinds {
			ks[i] = string(k)
		}
		return ks
	}()
)

func (e *Envelope) check() error {
	switch {
	case e.V != Version:
		return fmt.Errorf("%w: version %d", ErrMalformed, e.V)
	case e.ID == "":
		return fmt.Errorf("%w: no id", ErrMalformed)
	case !e.Source.Valid():
		return fmt.Errorf("%w: source %q", ErrMalformed, e.Source)
	case e.TransferID == "":
		return fmt.Errorf("%w: no transferId", ErrMalformed)
	case len(e.Payload) == 0:
		return fmt.Errorf("%w: no payload", ErrMalformed)
	}
	return nil
}

// Event rebuilds the canonical event by parsing the payload with the
// engine's current rules, then sets Issuer, ReceivedAt and Seq from the
// envelope. ID, Source and TransferID always come from the envelope: they
// fixed the event's identity and subject when it was appended.
//
// Event always returns a non-nil event. If the payload no longer parses
// (the rules changed since the append), the error wraps ErrUnparsable and
// the event has Kind unknown, the envelope's identity and the payload, so
// that callers can keep it (it is stored and shown, never folded) rather
// than lose it; like mime.ParseMediaType, the result is usable with the
// error.
func (e Envelope) Event() (*engine.Event, error) {
	// With the key recorded at append time, the payload's digest is not
	// computed again (engine.ReparseKeyed): a sixth of a rebuild's CPU.
	ev, err := engine.ReparseKeyed(e.Source, e.Payload, e.ID, e.TransferID, e.Key)
	if err != nil {
		ev = &engine.Event{Kind: engine.KindUnknown, Payload: e.Payload, Unparsable: err.Error()}
		err = fmt.Errorf("%w: event %s (seq %d): %w", ErrUnparsable, e.ID, e.Seq, err)
	}
	ev.ID = e.ID
	ev.Source = e.Source
	ev.TransferID = e.TransferID
	ev.Issuer = e.Issuer
	ev.ReceivedAt = e.ReceivedAt
	ev.Seq = e.Seq
	return ev, err
}
