package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/transferd/transferd/engine/journal"
)

// Error codes of the query API. Every error reply has the body ErrorBody,
// the same shape as the ingest routes' replies.
const (
	CodeInvalidRequest   = "invalid_request"    // 400: a parameter is missing, malformed or unknown
	CodeUnauthorized     = "unauthorized"       // 401: no API token, or not a configured one
	CodeNotFound         = "not_found"          // 404: no such transfer, migration or route
	CodeMethodNotAllowed = "method_not_allowed" // 405: the query API is read-only (GET)
	CodeInternal         = "internal"           // 500: a bug or a corrupt store; detail only in the log
	CodeUnavailable      = "unavailable"        // 503: the journal or the projection cannot answer now
)

// statusOf maps every code to its HTTP status, in this one place.
var statusOf = map[string]int{
	CodeInvalidRequest:   http.StatusBadRequest,
	CodeUnauthorized:     http.StatusUnauthorized,
	CodeNotFound:         http.StatusNotFound,
	CodeMethodNotAllowed: http.StatusMethodNotAllowed,
	CodeInternal:         http.StatusInternalServerError,
	CodeUnavailable:      http.StatusServiceUnavailable,
}

// Error is a failure a client can act on: its Code and Message are sent,
// Err only logged.
type Error struct {
	Code    string
	Param   string // the query parameter or header at fault (invalid_request)
	Message string
	Err     error
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }
func (e *Error) Unwrap() error { return e.Err }

// ErrorBody is the JSON of every error reply:
// {"error":{"code":"…","message":"…","param":"…"}}, param only for
// invalid_request.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the inside of ErrorBody.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Param   string `json:"param,omitempty"`
}

func invalidParam(param, reason string) *Error {
	return &Error{Code: CodeInvalidRequest, Param: param, Message: param + ": " + reason}
}

func notFound(msg string) *Error { return &Error{Code: CodeNotFound, Message: msg} }

// classify maps any error of a request to its code, message and status.
func classify(err error) (body ErrorDetail, status int) {
	var e *Error
	switch {
	case errors.As(err, &e):
		if s, ok := statusOf[e.Code]; ok {
			return ErrorDetail{Code: e.Code, Message: e.Message, Param: e.Param}, s
		}
	case errors.Is(err, journal.ErrUnavailable):
		return ErrorDetail{Code: CodeUnavailable, Message: "the event journal is unavailable; retry later"}, http.StatusServiceUnavailable
	case errors.Is(err, errStoreUnavailable):
		return ErrorDetail{Code: CodeUnavailable, Message: "the projection is unavailable; retry later"}, http.StatusServiceUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		return ErrorDetail{Code: CodeUnavailable, Message: "the query took too long; retry later"}, http.StatusServiceUnavailable
	}
	return ErrorDetail{Code: CodeInternal, Message: "internal error"}, http.StatusInternalServerError
}

// writeError writes err's reply and returns its status; internal errors are
// logged with their detail, which the client never sees.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) int {
	detail, status := classify(err)
	h := w.Header()
	switch status {
	case http.StatusServiceUnavailable:
		h.Set("Retry-After", "1")
	case http.StatusUnauthorized:
		h.Set("WWW-Authenticate", wwwAuthenticate(err))
	case http.StatusMethodNotAllowed:
		h.Set("Allow", "GET, HEAD")
	}
	switch {
	case r.Context().Err() != nil:
		// The client went away: nobody reads the reply, nothing to report.
	case status >= 500:
		log.Error("query failed", "method", r.Method, "path", r.URL.Path, "code", detail.Code, "err", err)
	default:
		log.Debug("query refused", "method", r.Method, "path", r.URL.Path, "code", detail.Code, "err", err)
	}
	writeJSON(w, status, ErrorBody{Error: detail})
	return status
}

var (
	jsonContentType = []string{"application/json"}
	noStore         = []string{"no-store"}
)

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"code":"internal","message":"internal error"}}`)
	}
	writeBody(w, status, append(b, '\n'))
}

// writeBody sends an encoded JSON reply. The header values are shared,
// pre-built slices: net/http only reads them.
func writeBody(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Cache-Control"] = noStore
	w.WriteHeader(status)
	w.Write(b)
}
