package api

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/transferd/transferd/api/httperr"
)

// checkQuery refuses query parameters other than allowed, and any given
// more than once: a misspelt filter must not silently widen a query.
func checkQuery(r *http.Request, allowed ...string) error {
	if r.URL.RawQuery == "" {
		return nil
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return &Error{Code: httperr.CodeInvalidRequest, Message: "malformed query string", Err: err}
	}
	return checkValues(q, allowed)
}

func checkValues(q url.Values, allowed []string) error {
	names := make([]string, 0, len(q))
	for name := range q {
		names = append(names, name)
	}
	slices.Sort(names) // report the same parameter every time
	for _, name := range names {
		switch {
		case !slices.Contains(allowed, name):
			if len(allowed) == 0 {
				return invalidParam(name, "unknown parameter: this route takes none")
			}
			return invalidParam(name, "unknown parameter: want one of "+strings.Join(allowed, ", "))
		case len(q[name]) > 1:
			return invalidParam(name, "given more than once")
		}
	}
	return nil
}

// values parses the query string and checks it against allowed.
func values(r *http.Request, allowed ...string) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, &Error{Code: httperr.CodeInvalidRequest, Message: "malformed query string", Err: err}
	}
	return q, checkValues(q, allowed)
}

// parseSeq parses a stream sequence.
func parseSeq(param, s string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, invalidParam(param, "want a stream sequence (an unsigned integer)")
	}
	return n, nil
}

// parseTime parses an RFC 3339 time. A "+" of the offset left unescaped in
// a query string arrives as a space; it is taken back.
func parseTime(s string) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil && strings.Contains(s, " ") {
		t, err = time.Parse(time.RFC3339Nano, strings.ReplaceAll(s, " ", "+"))
	}
	return t, err == nil
}
