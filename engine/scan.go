package engine

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"unicode/utf8"
)

// This file walks JSON that json.Valid has accepted, without reflection: the
// ingest path and every replay parse each payload, so parsing must cost
// microseconds. Every function here assumes valid input.

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index just past the string starting at b[i] == '"'.
func stringEnd(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(b)
}

// valueEnd returns the index just past the value starting at b[i].
func valueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				j = stringEnd(b, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return len(b)
	}
	j := i
	for j < len(b) && !strings.ContainsRune(",}] \t\r\n", rune(b[j])) {
		j++
	}
	return j
}

// eachMember calls fn with the raw key (quotes included) and raw value of
// every member of the object at the start of b, in order.
func eachMember(b []byte, fn func(key, val []byte)) {
	i := skipSpace(b, 0) + 1 // past '{'
	for {
		i = skipSpace(b, i)
		if i >= len(b) || b[i] == '}' {
			return
		}
		if b[i] == ',' {
			i = skipSpace(b, i+1)
		}
		kEnd := stringEnd(b, i)
		key := b[i:kEnd]
		i = skipSpace(b, skipSpace(b, kEnd)+1) // past ':'
		vEnd := valueEnd(b, i)
		fn(key, b[i:vEnd])
		i = vEnd
	}
}

// eachElement calls fn with every raw element of the array at the start of b.
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
		fn(b[i:vEnd])
		i = vEnd
	}
}

// unquote decodes a raw JSON string; the fast path slices it when it has no
// escapes. Invalid UTF-8 becomes U+FFFD, as with encoding/json.
func unquote(raw []byte) string {
	inner := raw[1 : len(raw)-1]
	if bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
		return string(inner)
	}
	var s string
	_ = json.Unmarshal(raw, &s) // valid by contract
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
		type member struct {
			key string
			val []byte
		}
		var ms []member
		eachMember(v, func(k, val []byte) { ms = append(ms, member{unquote(k), val}) })
		slices.SortStableFunc(ms, func(a, b member) int { return strings.Compare(a.key, b.key) })
		dst = append(dst, '{')
		first := true
		for i, m := range ms {
			if i+1 < len(ms) && ms[i+1].key == m.key {
				continue // a later duplicate wins
			}
			if !first {
				dst = append(dst, ',')
			}
			first = false
			dst = appendQuoted(dst, m.key)
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
		return appendQuoted(dst, unquote(v))
	}
	return append(dst, v...)
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
