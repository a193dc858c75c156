package atlassian

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"
)

// CanonicalRequest returns the canonical form of a request that Atlassian's
// query string hash (the qsh claim) covers: METHOD&URI&QUERY.
//
// path is the request path as sent, still percent-encoded (what
// url.URL.EscapedPath returns); rawQuery is the query as sent, without the
// '?'; basePath is the path of the app's baseUrl, percent-encoded too, ""
// when the baseUrl has none.
//
//   - METHOD is method in upper case.
//   - URI is path with basePath removed when path starts with it (a plain
//     string prefix, as atlassian-jwt does), "/" when nothing is left, every
//     '&' written %26, a leading '/' added when missing and one trailing '/'
//     removed unless it is the only character.
//   - QUERY has every parameter but jwt, decoded as a form (a '+' is a space,
//     an invalid %-escape stays literal, invalid UTF-8 becomes U+FFFD) and
//     re-encoded with every byte but the RFC 3986 unreserved characters
//     (A-Z a-z 0-9 - . _ ~) written %XX, so a space is %20, '*' is %2A and
//     '~' stays. Parameters are ordered by encoded name and joined with '&';
//     a repeated parameter is written once, its values sorted (by UTF-16
//     code units, as Java and JavaScript compare strings) and joined with ','.
//     An empty query gives "", so a plain POST is "POST&/path&".
//
// The result agrees with the npm package atlassian-jwt (testdata/qsh) except
// for the order of parameters whose names sort differently decoded and
// encoded (e.g. "a/" and "a."): atlassian-jwt sorts decoded names, while the
// reference and Atlassian's Java library, which signs the platform's
// requests, sort encoded names, as here.
func CanonicalRequest(method, path, rawQuery, basePath string) string {
	uri := canonicalURI(path, basePath)
	var b strings.Builder
	b.Grow(len(method) + len(uri) + 2 + len(rawQuery) + len(rawQuery)/2)
	b.WriteString(strings.ToUpper(method))
	b.WriteByte('&')
	b.WriteString(uri)
	b.WriteByte('&')
	writeCanonicalQuery(&b, rawQuery)
	return b.String()
}

// QSH returns the query string hash of a request: the lower-case hex SHA-256
// of CanonicalRequest(method, path, rawQuery, basePath).
func QSH(method, path, rawQuery, basePath string) string {
	return hashCanonical(CanonicalRequest(method, path, rawQuery, basePath))
}

// RequestQSH returns the query string hash of the received request r for a
// baseUrl whose path is basePath: what the qsh claim of r's token must be.
func RequestQSH(r *http.Request, basePath string) string {
	return QSH(r.Method, r.URL.EscapedPath(), r.URL.RawQuery, basePath)
}

// QueryToken returns the first jwt parameter of rawQuery, decoded as the
// query is for the qsh (see CanonicalRequest), and whether there is one:
// where a Connect request may carry its token instead of the Authorization
// header.
func QueryToken(rawQuery string) (string, bool) {
	if rawQuery == "" {
		return "", false
	}
	for field := range strings.SplitSeq(rawQuery, "&") {
		k, v, _ := strings.Cut(field, "=")
		if decodeQueryComponent(k) == "jwt" {
			return decodeQueryComponent(v), true
		}
	}
	return "", false
}

func hashCanonical(canonical string) string {
	sum := sha256.Sum256([]byte(canonical))
	return hex.EncodeToString(sum[:])
}

func canonicalURI(path, basePath string) string {
	path = strings.TrimPrefix(path, basePath)
	if path == "" {
		return "/"
	}
	path = strings.ReplaceAll(path, "&", "%26")
	if path[0] != '/' {
		path = "/" + path
	}
	if len(path) > 1 && path[len(path)-1] == '/' {
		path = path[:len(path)-1]
	}
	return path
}

// queryPair is one name=value of a query: the name percent-encoded (the
// sort key), the value decoded (sorted decoded, encoded when written).
type queryPair struct {
	name  string
	value string
}

func writeCanonicalQuery(b *strings.Builder, rawQuery string) {
	if rawQuery == "" {
		return
	}
	var pairs []queryPair
	for field := range strings.SplitSeq(rawQuery, "&") {
		if field == "" {
			continue
		}
		k, v, _ := strings.Cut(field, "=")
		name := decodeQueryComponent(k)
		if name == "jwt" {
			continue
		}
		pairs = append(pairs, queryPair{name: percentEncode(name), value: decodeQueryComponent(v)})
	}
	// Percent-encoding is injective, so equal encoded names are the same
	// parameter: after sorting, a repeated parameter's values are adjacent
	// and already in order.
	slices.SortFunc(pairs, func(x, y queryPair) int {
		if c := strings.Compare(x.name, y.name); c != 0 {
			return c
		}
		return compareUTF16(x.value, y.value)
	})
	for i, p := range pairs {
		switch {
		case i == 0:
		case p.name == pairs[i-1].name:
			b.WriteByte(',')
			writePercentEncoded(b, p.value)
			continue
		default:
			b.WriteByte('&')
		}
		b.WriteString(p.name)
		b.WriteByte('=')
		writePercentEncoded(b, p.value)
	}
}

// decodeQueryComponent decodes a name or value of a query the way Node's
// querystring (and so atlassian-jwt) does: '+' is a space, %XX is the byte
// XX, a '%' not followed by two hex digits is kept, and the bytes are read
// as UTF-8 with every maximal ill-formed subsequence replaced by U+FFFD.
func decodeQueryComponent(s string) string {
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
		if utf8.ValidString(s) {
			return s
		}
		return string(appendValidUTF8(nil, []byte(s)))
	}
	buf := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '+':
			buf = append(buf, ' ')
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			buf = append(buf, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
		default:
			buf = append(buf, c)
		}
	}
	if utf8.Valid(buf) {
		return string(buf)
	}
	return string(appendValidUTF8(nil, buf))
}

// appendValidUTF8 appends b to dst with every maximal subpart of an
// ill-formed UTF-8 sequence replaced by U+FFFD (the WHATWG decoder's rule,
// which Node follows; Go's own decoders replace byte by byte instead).
func appendValidUTF8(dst, b []byte) []byte {
	for i := 0; i < len(b); {
		if b[i] < utf8.RuneSelf {
			dst = append(dst, b[i])
			i++
			continue
		}
		if r, size := utf8.DecodeRune(b[i:]); r != utf8.RuneError || size > 1 {
			dst = append(dst, b[i:i+size]...)
			i += size
			continue
		}
		dst = utf8.AppendRune(dst, utf8.RuneError)
		i += maximalSubpart(b[i:])
	}
	return dst
}

// maximalSubpart returns the length of the longest prefix of b, which starts
// with an ill-formed sequence, that could begin a well-formed one (at least 1).
func maximalSubpart(b []byte) int {
	need, lo, hi := 0, byte(0x80), byte(0xBF)
	switch c := b[0]; {
	case c >= 0xC2 && c <= 0xDF:
		need = 1
	case c == 0xE0:
		need, lo = 2, 0xA0
	case c == 0xED:
		need, hi = 2, 0x9F
	case c >= 0xE1 && c <= 0xEF:
		need = 2
	case c == 0xF0:
		need, lo = 3, 0x90
	case c == 0xF4:
		need, hi = 3, 0x8F
	case c >= 0xF1 && c <= 0xF3:
		need = 3
	default:
		return 1
	}
	n := 1
	for n <= need && n < len(b) && b[n] >= lo && b[n] <= hi {
		n++
		lo, hi = 0x80, 0xBF
	}
	return n
}

// compareUTF16 compares two valid UTF-8 strings by their UTF-16 code units,
// the order of Java's String.compareTo and JavaScript's default sort. It
// differs from byte order only between U+E000–U+FFFF and supplementary
// characters.
func compareUTF16(a, b string) int {
	for a != "" && b != "" {
		ra, na := utf8.DecodeRuneInString(a)
		rb, nb := utf8.DecodeRuneInString(b)
		if ra != rb {
			if ka, kb := utf16Lead(ra), utf16Lead(rb); ka != kb {
				return cmp.Compare(ka, kb)
			}
			return cmp.Compare(ra, rb)
		}
		a, b = a[na:], b[nb:]
	}
	return cmp.Compare(len(a), len(b))
}

// utf16Lead returns r's first UTF-16 code unit.
func utf16Lead(r rune) rune {
	if r >= 0x10000 {
		return 0xD800 + (r-0x10000)>>10
	}
	return r
}

func percentEncode(s string) string {
	for i := 0; i < len(s); i++ {
		if !isUnreserved(s[i]) {
			var b strings.Builder
			b.Grow(len(s) + 2*(len(s)-i))
			writePercentEncoded(&b, s)
			return b.String()
		}
	}
	return s
}

func writePercentEncoded(b *strings.Builder, s string) {
	const upperHex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isUnreserved(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(upperHex[c>>4])
		b.WriteByte(upperHex[c&0x0F])
	}
}

func isUnreserved(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
