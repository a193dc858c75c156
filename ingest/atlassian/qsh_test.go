package atlassian

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// qshVector is one entry of testdata/qsh/vectors.json, written by gen.js
// from the npm package atlassian-jwt (see testdata/qsh/README.md).
type qshVector struct {
	Name      string `json:"name"`
	Method    string `json:"method"`
	URL       string `json:"url"`
	BaseURL   string `json:"baseUrl"`
	Path      string `json:"path"`
	RawQuery  string `json:"rawQuery"`
	BasePath  string `json:"basePath"`
	Canonical string `json:"canonical"`
	QSH       string `json:"qsh"`
	// Transferd, when set, is where transferd deliberately differs from
	// atlassian-jwt (parameter order by encoded name, as the reference and
	// Atlassian's Java library have it).
	Transferd *struct {
		Canonical string `json:"canonical"`
		QSH       string `json:"qsh"`
	} `json:"transferd"`
}

func loadQSHVectors(t testing.TB) []qshVector {
	t.Helper()
	b, err := os.ReadFile("testdata/qsh/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Generator string      `json:"generator"`
		Vectors   []qshVector `json:"vectors"`
	}
	if err := json.Unmarshal(b, &file); err != nil {
		t.Fatal(err)
	}
	if len(file.Vectors) < 25 {
		t.Fatalf("only %d qsh vectors", len(file.Vectors))
	}
	return file.Vectors
}

func TestQSHVectors(t *testing.T) {
	for _, v := range loadQSHVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			wantCanonical, wantQSH := v.Canonical, v.QSH
			if v.Transferd != nil {
				wantCanonical, wantQSH = v.Transferd.Canonical, v.Transferd.QSH
				if wantCanonical == v.Canonical {
					t.Fatalf("vector marks a divergence from atlassian-jwt but both give %q", v.Canonical)
				}
			}
			if got := CanonicalRequest(v.Method, v.Path, v.RawQuery, v.BasePath); got != wantCanonical {
				t.Errorf("CanonicalRequest(%q, %q, %q, %q)\n got %q\nwant %q", v.Method, v.Path, v.RawQuery, v.BasePath, got, wantCanonical)
			}
			if got := QSH(v.Method, v.Path, v.RawQuery, v.BasePath); got != wantQSH {
				t.Errorf("QSH = %s, want %s", got, wantQSH)
			}
		})
	}
}

// TestRequestQSHVectors runs the vectors through RequestQSH on real
// requests, for those whose URL net/http reads with the same path and query.
func TestRequestQSHVectors(t *testing.T) {
	ran := 0
	for _, v := range loadQSHVectors(t) {
		target := v.Path
		if v.RawQuery != "" {
			target += "?" + v.RawQuery
		}
		if strings.ContainsAny(target, " \x7f") || !isASCII(target) {
			continue
		}
		r := httptest.NewRequest(v.Method, target, nil)
		if r.URL.EscapedPath() != v.Path || r.URL.RawQuery != v.RawQuery {
			continue
		}
		ran++
		want := v.QSH
		if v.Transferd != nil {
			want = v.Transferd.QSH
		}
		if got := RequestQSH(r, v.BasePath); got != want {
			t.Errorf("%s: RequestQSH = %s, want %s", v.Name, got, want)
		}
	}
	if ran < 20 {
		t.Fatalf("only %d vectors ran through net/http", ran)
	}
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// TestQSHReferenceExample is the worked example of the reference, with the
// raw spaces it is written with.
func TestQSHReferenceExample(t *testing.T) {
	got := CanonicalRequest("GET", "/path/to/service", "zee_last=param&repeated=parameter 1&first=param&repeated=parameter 2", "")
	const want = "GET&/path/to/service&first=param&repeated=parameter%201,parameter%202&zee_last=param"
	if got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
	if q := QSH("POST", "/connect/migration-events", "", ""); q != hashCanonical("POST&/connect/migration-events&") {
		t.Fatalf("plain POST qsh = %s", q)
	}
}

func TestCompareUTF16(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"a", "", 1},
		{"a", "b", -1},
		{"ab", "a", 1},
		{"\uFF41", "\U0001F600", 1}, // U+FF41 > high surrogate D83D
		{"\U0001F600", "\U0001F601", -1},
		{"\u00e9", "z", 1},
	}
	for _, tc := range tests {
		if got := compareUTF16(tc.a, tc.b); got != tc.want {
			t.Errorf("compareUTF16(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

// TestQSHParameterOrderIrrelevant: the canonical request does not depend on
// the order of the query's parameters, nor on how each byte is escaped.
func TestQSHParameterOrderIrrelevant(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(0, 8).Draw(t, "n")
		fields := make([]string, n)
		for i := range fields {
			name := rapid.StringMatching(`[a-c%/. ~*+é]{0,3}`).Draw(t, "name")
			value := rapid.StringMatching(`[a-c%/. ~*+é,=]{0,4}`).Draw(t, "value")
			fields[i] = escapeAll(name) + "=" + escapeAll(value)
		}
		query := strings.Join(fields, "&")
		perm := rand.New(rand.NewPCG(rapid.Uint64().Draw(t, "seed"), 1)).Perm(n)
		shuffled := make([]string, n)
		for i, j := range perm {
			shuffled[i] = fields[j]
		}
		a := CanonicalRequest("GET", "/p", query, "")
		b := CanonicalRequest("GET", "/p", strings.Join(shuffled, "&"), "")
		if a != b {
			t.Fatalf("order changes the canonical request:\n%q -> %q\n%q -> %q", query, a, strings.Join(shuffled, "&"), b)
		}
		// Decoding what was written and writing it again is the identity.
		if c := CanonicalRequest("GET", "/p", a[len("GET&/p&"):], ""); c != a && !strings.Contains(a, ",") {
			t.Fatalf("canonical query is not a fixed point: %q -> %q", a, c)
		}
	})
}

// escapeAll writes every byte of s as %XX, a form the decoder must read
// back as s.
func escapeAll(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		fmt.Fprintf(&b, "%%%02X", s[i])
	}
	return b.String()
}

var canonicalQueryRe = regexp.MustCompile(`^([A-Za-z0-9\-._~%]*=[A-Za-z0-9\-._~%,]*(&[A-Za-z0-9\-._~%]*=[A-Za-z0-9\-._~%,]*)*)?$`)

func FuzzQSH(f *testing.F) {
	for _, v := range loadQSHVectors(f) {
		f.Add(v.Method, v.Path, v.RawQuery, v.BasePath)
	}
	f.Add("GET", "", "%", "/")
	f.Add("POST", "&&", "a=%E2%82&jwt&=&&+", "&")
	f.Fuzz(func(t *testing.T, method, path, rawQuery, basePath string) {
		canonical := CanonicalRequest(method, path, rawQuery, basePath)
		rest, ok := strings.CutPrefix(canonical, strings.ToUpper(method)+"&")
		if !ok {
			t.Fatalf("canonical request %q does not start with the method", canonical)
		}
		uri, query, ok := strings.Cut(rest, "&")
		if !ok || uri == "" || uri[0] != '/' {
			t.Fatalf("bad canonical URI in %q", canonical)
		}
		if !canonicalQueryRe.MatchString(query) {
			t.Fatalf("canonical query %q has an unencoded character", query)
		}
		if q := QSH(method, path, rawQuery, basePath); len(q) != 64 || q != hashCanonical(canonical) {
			t.Fatalf("QSH = %q", q)
		}
	})
}

func ExampleQSH() {
	// A webhook to https://app.example.com/base/connect/migration-events
	// for an app whose baseUrl is https://app.example.com/base.
	fmt.Println(CanonicalRequest("post", "/base/connect/migration-events", "jwt=x.y.z", "/base"))
	fmt.Println(QSH("GET", "/path/to/service", "zee_last=param&repeated=parameter%201&first=param&repeated=parameter%202", ""))
	// Output:
	// POST&/connect/migration-events&
	// e52bb281606c3bd9ca16cfe96fe2df78f5d9ffa126f06befd750dfa10fa1a897
}
