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

// keyIs reports whether the raw key names want, decoding escapes if any.
func keyIs(raw []byte, want string) bool {
	if bytes.IndexByte(raw, '\\') < 0 {
		return len(raw) == len(want)+2 && string(raw[1:len(raw)-1]) == want
	}
	return unquote(raw) == want
}

// appendCanonical appends the canonical form of the valid JSON value v:
// no insignificant space, object members sorted by decoded key (the last of
// duplicate keys wins, as when decoding), strings re-escaped minimally, and
// numbers and literals exactly as written.
func appendCanonical(dst, v []byte) []byte {
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
			dst = appendCanonical(dst, m.val)
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
			dst = appendCanonical(dst, e)
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
