package engine

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

func decodeNumbers(tb testing.TB, b []byte) any {
	tb.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		tb.Fatalf("decode %q: %v", b, err)
	}
	return v
}

// FuzzCanonical checks the scanner against encoding/json. On any input,
// ScanObject and CutString do not panic, a string CutString returns is the
// one encoding/json decodes from the bytes it consumed, and the values
// ScanObject reports of valid JSON are valid JSON. For any valid JSON, the
// canonical form is valid JSON with the same meaning (numbers compared as
// written), canonicalising it again changes nothing, ScanObject accepts an
// object and reports the members encoding/json decodes, and CutString
// decodes a string as encoding/json does.
func FuzzCanonical(f *testing.F) {
	for _, s := range []string{
		`{}`, `[]`, `{"b":1,"a":[1,2,{"d":null,"c":true}]}`, `{"a":1,"a":2}`,
		`{"k\u0065y":"v\n\"\\<>&\u2028","x":-1.5e3}`, " {\"a\" : [ ] , \"b\" : { } } ", `"str"`, `12`,
		`{"eventType":"listener-triggered","transferId":"t","migrationDetails":{"createdAt":1597211035}}`,
		`{"v":1,"id":"m\u00e9","source":"connect","payload":{"a":[1,"}"]}}`, `"a\u0000b"` + "\x01", `{"a":1,}`,
		`{"a" 1}`, `{"a":"b`, "\"\xff\"", `{"phase":"settled","migration":{"createdAt":"2026-03-01T12:00:00Z"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		valid := json.Valid(b)
		if s, rest, ok := CutString(b); ok {
			var want string
			if err := json.Unmarshal(b[:len(b)-len(rest)], &want); err != nil || s != want {
				t.Fatalf("CutString(%q) = %q, %q; encoding/json: %q, %v", b, s, rest, want, err)
			}
		}
		objOK := ScanObject(b, func(k, v []byte) bool {
			if valid && (!json.Valid(k) || !json.Valid(v)) {
				t.Fatalf("ScanObject(%q) reported member %q: %q", b, k, v)
			}
			return true
		})
		if !valid {
			return
		}
		switch bytes.TrimSpace(b)[0] {
		case '{':
			if !objOK {
				t.Fatalf("ScanObject rejects the object %q", b)
			}
		case '"':
			var want string
			_ = json.Unmarshal(b, &want)
			if s, rest, ok := CutString(bytes.TrimSpace(b)); !ok || s != want || len(rest) != 0 {
				t.Fatalf("CutString(%q) = %q, %q, %v; want %q", b, s, rest, ok, want)
			}
		default:
			if objOK {
				t.Fatalf("ScanObject accepts %q, not an object", b)
			}
		}
		c := appendCanonical(nil, b)
		if !json.Valid(c) {
			t.Fatalf("canonical %q of %q is not valid JSON", c, b)
		}
		if !reflect.DeepEqual(decodeNumbers(t, b), decodeNumbers(t, c)) {
			t.Fatalf("canonical %q changes the meaning of %q", c, b)
		}
		if again := appendCanonical(nil, c); !bytes.Equal(again, c) {
			t.Fatalf("not idempotent: %q then %q", c, again)
		}
		trimmed := bytes.TrimSpace(b)
		if len(trimmed) == 0 || trimmed[0] != '{' {
			return
		}
		got := map[string]any{}
		ScanObject(b, func(k, v []byte) bool { got[unquote(k)] = decodeNumbers(t, v); return true })
		want := map[string]any{}
		for k, v := range decodeNumbers(t, b).(map[string]any) {
			want[k] = v
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("members of %q: got %v, want %v", b, got, want)
		}
	})
}

// TestCanonicalForms pins the canonical form, on which every stored
// event's Digest (and the identity of events without messageId) rests:
// appendCanonical writes keys and strings without escapes as they stand
// and decodes only the others, and must write the same bytes either way.
func TestCanonicalForms(t *testing.T) {
	for in, want := range map[string]string{
		`{ "b" : 1, "a" : "x" }`:                `{"a":"x","b":1}`,
		`{"a\"b":1,"a":2}`:                      `{"a":2,"a\"b":1}`,
		`{"\u0061":1,"a":2}`:                    `{"a":2}`,
		`{"a":2,"\u0061":1}`:                    `{"a":1}`,
		`{"k":"\u00e9\n\/"}`:                    `{"k":"é\u000a/"}`,
		`{"k\\":"q\"","é":["x",{"z":1,"y":2}]}`: `{"k\\":"q\"","é":["x",{"y":2,"z":1}]}`,
		`{"k":"caf\u00e9","l":"café"}`:          `{"k":"café","l":"café"}`,
	} {
		if got := string(appendCanonical(nil, []byte(in))); got != want {
			t.Errorf("canonical of %s = %s, want %s", in, got, want)
		}
	}
}
