package engine

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
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
		if ref := appendCanonicalRef(nil, b); !bytes.Equal(c, ref) {
			t.Fatalf("canonical of %q is %q, the reference's %q", b, c, ref)
		}
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

// appendCanonicalRef is the canonicaliser before it was fused into one
// pass (the reference FuzzCanonical holds appendCanonical to): it appends the canonical form of the valid JSON value v:
// no insignificant space, object members sorted by decoded key (the last of
// duplicate keys wins, as when decoding), strings re-escaped minimally, and
// numbers and literals exactly as written.
func appendCanonicalRef(dst, v []byte) []byte {
	v = bytes.TrimSpace(v)
	switch v[0] {
	case '{':
		// Keys without escapes (nearly all) are compared and written as
		// they stand; only the others are decoded.
		type member struct {
			key []byte // decoded
			val []byte
		}
		var buf [16]member
		ms := buf[:0]
		ScanObject(v, func(k, val []byte) bool {
			key := k[1 : len(k)-1]
			if !plain(key) {
				key = []byte(unquote(k))
			}
			ms = append(ms, member{key, val})
			return true
		})
		slices.SortStableFunc(ms, func(a, b member) int { return bytes.Compare(a.key, b.key) })
		dst = append(dst, '{')
		first := true
		for i, m := range ms {
			if i+1 < len(ms) && bytes.Equal(ms[i+1].key, m.key) {
				continue // a later duplicate wins
			}
			if !first {
				dst = append(dst, ',')
			}
			first = false
			dst = appendQuotedBytes(dst, m.key)
			dst = append(dst, ':')
			dst = appendCanonicalRef(dst, m.val)
		}
		return append(dst, '}')
	case '[':
		dst = append(dst, '[')
		first := true
		eachElement(v, func(e []byte) {
			if !first {
				dst = append(dst, ',')
			}
			first = false
			dst = appendCanonicalRef(dst, e)
		})
		return append(dst, ']')
	case '"':
		if plain(v[1 : len(v)-1]) { // its minimal escaping is itself
			return append(dst, v...)
		}
		return appendQuoted(dst, unquote(v))
	}
	return append(dst, v...)
}

// eachElement calls fn with every raw element of the valid JSON array b.
func eachElement(b []byte, fn func(val []byte)) {
	i := skipSpace(b, 0) + 1 // past '['
	for {
		i = skipSpace(b, i)
		if i >= len(b) || b[i] == ']' {
			return
		}
		if b[i] == ',' {
			i = skipSpace(b, i+1)
		}
		vEnd := valueEnd(b, i)
		if vEnd < 0 {
			return
		}
		fn(b[i:vEnd])
		i = vEnd
	}
}

// FuzzValid holds validJSON, which parse uses, to json.Valid.
func FuzzValid(f *testing.F) {
	for _, s := range []string{
		`{}`, `[]`, ` {"a" : [1, -0.5e+3, "x\u00e9\n", true, false, null, {}]} `, `{"a":1,}`, `[1,]`, `01`, `-`, `1.`,
		`1e`, `"\x"`, `"\u12"`, "\"\x01\"", "\"\xff\"", `nul`, `truex`, `1 2`, `{"a"}`, `{1:2}`, `"a`, `[`, `-01`, `1.5E-2`,
	} {
		f.Add([]byte(s))
	}
	for _, n := range []int{10000, 10001} { // encoding/json's nesting limit
		b := []byte(strings.Repeat(`{"a":[`, n/2) + strings.Repeat("[", n%2) + strings.Repeat("]", n%2) + strings.Repeat("]}", n/2))
		if got, want := validJSON(b), json.Valid(b); got != want {
			f.Fatalf("validJSON at depth %d = %t, json.Valid %t", n, got, want)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := validJSON(b), json.Valid(b); got != want {
			t.Fatalf("validJSON(%q) = %t, json.Valid %t", b, got, want)
		}
	})
}
