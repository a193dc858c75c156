package engine

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"unicode/utf8"
)

// This file is transferd's one JSON byte scanner (FuzzCanonical checks it
// against encoding/json): it walks JSON without reflection, because the
// ingest path and every replay parse each payload, the journal decodes
// every envelope and the API splices every stored transfer, so walking
// must cost microseconds. The scanning functions are safe on any input:
// they check structure (strings, brackets, separators) and report broken
// structure, but do not validate literals or numbers; on JSON that
// json.Valid accepts they delimit exactly what encoding/json would.
// Functions documented as taking valid JSON assume it.

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index just past the JSON string starting at b[i],
// or -1 if b[i] does not start a terminated string.
func stringEnd(b []byte, i int) int {
	if i >= len(b) || b[i] != '"' {
		return -1
	}
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return -1
}

// valueEnd returns the index just past the JSON value starting at b[i], or
// -1 if there is none or its strings or brackets do not end.
func valueEnd(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end := stringEnd(b, j)
				if end < 0 {
					return -1
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	}
	j := i
	for j < len(b) && !strings.ContainsRune(",:{}[]\" \t\r\n", rune(b[j])) {
		j++
	}
	if j == i {
		return -1
	}
	return j
}

// ScanObject calls fn with the raw key (quotes included) and the raw value
// of each member of the JSON object b (space around it allowed), in order,
// until fn returns false. It reports whether b is an object and fn
// returned true for every member; on false, fn may have seen some
// members. ScanObject is safe on any input; it checks the object's
// structure but not every literal in it, so on input that is not valid
// JSON a true result does not make it valid.
func ScanObject(b []byte, fn func(key, val []byte) bool) bool {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return skipSpace(b, i+1) == len(b)
	}
	for {
		kEnd := stringEnd(b, i)
		if kEnd < 0 {
			return false
		}
		key := b[i:kEnd]
		i = skipSpace(b, kEnd)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		i = skipSpace(b, i+1)
		vEnd := valueEnd(b, i)
		if vEnd < 0 || !fn(key, b[i:vEnd]) {
			return false
		}
		i = skipSpace(b, vEnd)
		if i >= len(b) {
			return false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return skipSpace(b, i+1) == len(b)
		default:
			return false
		}
	}
}

// eachMember calls fn with the raw key (quotes included) and raw value of
// every member of the valid JSON object b, in order.
func eachMember(b []byte, fn func(key, val []byte)) {
	ScanObject(b, func(key, val []byte) bool {
		fn(key, val)
		return true
	})
}

// CutString decodes the JSON string at the start of b and returns it with
// the bytes after it; ok is false if b does not start with a valid JSON
// string. A string without escapes is sliced, not decoded. Invalid UTF-8
// becomes U+FFFD, as with encoding/json.
func CutString(b []byte) (s string, rest []byte, ok bool) {
	end := stringEnd(b, 0)
	if end < 0 {
		return "", b, false
	}
	if inner := b[1 : end-1]; plain(inner) {
		return string(inner), b[end:], true
	}
	return decodeString(b, end)
}

// decodeString is CutString's slow path, apart so that its result, whose
// address encoding/json takes, is allocated only when it runs.
func decodeString(b []byte, end int) (string, []byte, bool) {
	var s string
	if json.Unmarshal(b[:end], &s) != nil {
		return "", b, false
	}
	return s, b[end:], true
}

// plain reports whether the inside of a JSON string is its value as is:
// no escapes, no control characters, valid UTF-8.
func plain(inner []byte) bool {
	ascii := true
	for _, c := range inner {
		if c < 0x20 || c == '\\' {
			return false
		}
		ascii = ascii && c < utf8.RuneSelf
	}
	return ascii || utf8.Valid(inner)
}

// unquote decodes a valid raw JSON string.
func unquote(raw []byte) string {
	s, _, _ := CutString(raw)
	return s
}

// appendCanonical appends the canonical form of the valid JSON value v:
// no insignificant space, object members sorted by decoded key (the last of
// duplicate keys wins, as when decoding), strings re-escaped minimally, and
// numbers and literals exactly as written. It walks v once: each member
// is written canonically as it is read, and an object whose keys were not
// in order already is sorted by moving its members' bytes.
func appendCanonical(dst, v []byte) []byte {
	dst, _ = canonValue(dst, v, skipSpace(v, 0))
	return dst
}

// canonValue appends the canonical form of the valid JSON value at b[i]
// and returns the index just past it.
func canonValue(dst, b []byte, i int) ([]byte, int) {
	switch b[i] {
	case '{':
		return canonObject(dst, b, i)
	case '[':
		dst = append(dst, '[')
		if i = skipSpace(b, i+1); b[i] == ']' {
			return append(dst, ']'), i + 1
		}
		for {
			dst, i = canonValue(dst, b, i)
			if i = skipSpace(b, i); b[i] == ']' {
				return append(dst, ']'), i + 1
			}
			dst = append(dst, ',')
			i = skipSpace(b, i+1) // past ','
		}
	case '"':
		end, plain := scanString(b, i)
		if plain { // its minimal escaping is itself
			return append(dst, b[i:end]...), end
		}
		return appendQuoted(dst, unquote(b[i:end])), end
	}
	j := i
	for j < len(b) && !isDelim(b[j]) {
		j++
	}
	return append(dst, b[i:j]...), j
}

// isDelim reports whether c ends a number or literal.
func isDelim(c byte) bool {
	switch c {
	case ',', ':', '{', '}', '[', ']', '"', ' ', '\t', '\r', '\n':
		return true
	}
	return false
}

// scanString returns the index just past the valid JSON string at b[i]
// and whether its inside is plain (see plain), in one pass.
func scanString(b []byte, i int) (end int, isPlain bool) {
	ascii := true
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return j + 1, ascii || utf8.Valid(b[i+1:j])
		case c == '\\' || c < 0x20:
			return stringEnd(b, i), false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return len(b), false
}

// canonMember is an object member being canonicalised: its decoded key and
// where "key":value was written.
type canonMember struct {
	key    []byte
	lo, hi int
}

func canonObject(dst, b []byte, i int) ([]byte, int) {
	start := len(dst)
	dst = append(dst, '{')
	if i = skipSpace(b, i+1); b[i] == '}' {
		return append(dst, '}'), i + 1
	}
	var buf [16]canonMember
	ms := buf[:0]
	inOrder := true
	for {
		kEnd, plain := scanString(b, i)
		key := b[i+1 : kEnd-1]
		if !plain {
			key = []byte(unquote(b[i:kEnd]))
		}
		if n := len(ms); n > 0 {
			inOrder = inOrder && bytes.Compare(ms[n-1].key, key) < 0
			dst = append(dst, ',')
		}
		lo := len(dst)
		if plain { // as written, quotes included
			dst = append(append(dst, b[i:kEnd]...), ':')
		} else {
			dst = append(appendQuotedBytes(dst, key), ':')
		}
		dst, i = canonValue(dst, b, skipSpace(b, skipSpace(b, kEnd)+1))
		ms = append(ms, canonMember{key, lo, len(dst)})
		if i = skipSpace(b, i); b[i] == '}' {
			i++
			break
		}
		i = skipSpace(b, i+1) // past ','
	}
	if inOrder { // sorted, no duplicates: written canonically already
		return append(dst, '}'), i
	}
	sortMembers(ms)
	sorted := len(dst)
	dst = append(dst, '{')
	first := true
	for k, m := range ms {
		if k+1 < len(ms) && bytes.Equal(ms[k+1].key, m.key) {
			continue // a later duplicate wins
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, dst[m.lo:m.hi]...)
	}
	dst = append(dst, '}')
	n := copy(dst[start:], dst[sorted:])
	return dst[:start+n], i
}

// sortMembers sorts ms stably by key: by insertion when there are few
// (payloads have a handful), else with slices.SortStableFunc.
func sortMembers(ms []canonMember) {
	if len(ms) > 12 {
		slices.SortStableFunc(ms, func(a, b canonMember) int { return bytes.Compare(a.key, b.key) })
		return
	}
	for k := 1; k < len(ms); k++ {
		for j := k; j > 0 && bytes.Compare(ms[j-1].key, ms[j].key) > 0; j-- {
			ms[j-1], ms[j] = ms[j], ms[j-1]
		}
	}
}

// appendQuotedBytes is appendQuoted of a []byte, without copying one that
// needs no escapes.
func appendQuotedBytes(dst, s []byte) []byte {
	if plain(s) && bytes.IndexByte(s, '"') < 0 {
		dst = append(dst, '"')
		dst = append(dst, s...)
		return append(dst, '"')
	}
	return appendQuoted(dst, string(s))
}

// appendQuoted writes s as a JSON string escaping only what JSON requires.
func appendQuoted(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}
