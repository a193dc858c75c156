package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/transferd/transferd/api/httperr"
	"github.com/transferd/transferd/engine/journal"
)

// Error is a failure a client can act on: its Code (one of httperr's),
// Message and Param are sent, Err only logged.
type Error struct {
	Code    string
	Param   string // the query parameter or header at fault (invalid_request)
	Message string
	Err     error
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }
func (e *Error) Unwrap() error { return e.Err }

func invalidParam(param, reason string) *Error {
	return &Error{Code: httperr.CodeInvalidRequest, Param: param, Message: param + ": " + reason}
}

func notFound(msg string) *Error { return &Error{Code: httperr.CodeNotFound, Message: msg} }

// classify maps any error of a request to the detail of its reply.
func classify(err error) httperr.Detail {
	var e *Error
	switch {
	case errors.As(err, &e):
		if _, ok := httperr.Status(e.Code); ok {
			return httperr.Detail{Code: e.Code, Message: e.Message, Param: e.Param}
		}
	case errors.Is(err, journal.ErrUnavailable):
		return httperr.Detail{Code: httperr.CodeUnavailable, Message: "the event journal is unavailable; retry later"}
	case errors.Is(err, errStoreUnavailable):
		return httperr.Detail{Code: httperr.CodeUnavailable, Message: "the projection is unavailable; retry later"}
	case errors.Is(err, context.DeadlineExceeded):
		return httperr.Detail{Code: httperr.CodeUnavailable, Message: "the query took too long; retry later"}
	}
	return httperr.Detail{Code: httperr.CodeInternal, Message: "internal error"}
}

// writeError writes err's reply and returns its status; internal errors are
// logged with their detail, which the client never sees.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) int {
	detail := classify(err)
	status, _ := httperr.Status(detail.Code)
	h := w.Header()
	switch status {
	case http.StatusUnauthorized:
		h.Set("WWW-Authenticate", wwwAuthenticate(err))
	case http.StatusMethodNotAllowed:
		if h.Get("Allow") == "" {
			h.Set("Allow", "GET, HEAD")
		}
	}
	switch {
	case r.Context().Err() != nil:
		// The client went away: nobody reads the reply, nothing to report.
	case status >= 500:
		log.Error("query failed", "method", r.Method, "path", r.URL.Path, "code", detail.Code, "err", err)
	default:
		log.Debug("query refused", "method", r.Method, "path", r.URL.Path, "code", detail.Code, "err", err)
	}
	return httperr.Write(w, detail)
}

// writeJSON and writeBody send a JSON reply (httperr.WriteJSON and
// httperr.WriteBody: one writer for every surface).
func writeJSON(w http.ResponseWriter, status int, v any) { httperr.WriteJSON(w, status, v) }

func writeBody(w http.ResponseWriter, status int, b []byte) { httperr.WriteBody(w, status, b) }

// Header values the api's other replies set: shared, pre-built slices,
// which net/http only reads.
var (
	jsonContentType = []string{"application/json"}
	noStore         = []string{"no-store"}
)
