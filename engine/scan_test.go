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

// FuzzCanonical checks the scanner against encoding/json: for any valid
// JSON, the canonical form is valid JSON with the same meaning (numbers
// compared as written), canonicalising it again changes nothing, and the
// members eachMember reports are those encoding/json decodes.
func FuzzCanonical(f *testing.F) {
	for _, s := range []string{
		`{}`, `[]`, `{"b":1,"a":[1,2,{"d":null,"c":true}]}`, `{"a":1,"a":2}`,
		`{"k\u0065y":"v\n\"\\<>&\u2028","x":-1.5e3}`, " {\"a\" : [ ] , \"b\" : { } } ", `"str"`, `12`,
		`{"eventType":"listener-triggered","transferId":"t","migrationDetails":{"createdAt":1597211035}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !json.Valid(b) {
			return
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
		eachMember(trimmed, func(k, v []byte) { got[unquote(k)] = decodeNumbers(t, v) })
		want := map[string]any{}
		for k, v := range decodeNumbers(t, b).(map[string]any) {
			want[k] = v
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("members of %q: got %v, want %v", b, got, want)
		}
	})
}
