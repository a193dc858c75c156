package ingest

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/transferd/transferd/api/httperr"
	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/engine/journal"
)

// Error is an ingest failure a client can act on.
type Error struct {
	Code    string
	Message string
	Err     error // detail for the log, never sent
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }
func (e *Error) Unwrap() error { return e.Err }

func fail(code, msg string, err error) *Error { return &Error{Code: code, Message: msg, Err: err} }

// classify maps any error of the request path to its code, message and
// status, in this one place.
func classify(err error) (code, msg string, status int) {
	var ae *AuthError
	var ie *Error
	var ve *engine.ValidationError
	switch {
	case errors.As(err, &ae):
		if s, ok := httperr.Status(ae.Code); ok && s == http.StatusUnauthorized {
			return ae.Code, ae.Message, s
		}
	case errors.As(err, &ve):
		return httperr.CodeInvalidPayload, ve.Error(), http.StatusBadRequest
	case errors.As(err, &ie):
		if s, ok := httperr.Status(ie.Code); ok {
			return ie.Code, ie.Message, s
		}
	case errors.Is(err, journal.ErrUnavailable):
		return httperr.CodeUnavailable, "the event journal did not acknowledge in time; retry later", http.StatusServiceUnavailable
	case errors.Is(err, journal.ErrTooLarge):
		return httperr.CodePayloadTooLarge, "event too large for the journal", http.StatusRequestEntityTooLarge
	}
	return httperr.CodeInternal, "internal error", http.StatusInternalServerError
}

// writeError writes err's reply; internal errors are logged with detail.
func writeError(w http.ResponseWriter, log *slog.Logger, err error) (status int, code string) {
	status, code, _ = writeErrorMsg(w, log, err)
	return status, code
}

// writeErrorMsg is writeError, also returning the message sent. Refusals
// (4xx) are logged by the caller, which knows the request (refusalLog);
// their detail (the wrapped error) goes to debug.
func writeErrorMsg(w http.ResponseWriter, log *slog.Logger, err error) (status int, code, msg string) {
	code, msg, status = classify(err)
	if status >= 500 {
		log.Error("ingest failed", "code", code, "err", err)
	} else {
		log.Debug("ingest refused: detail", "code", code, "err", err)
	}
	httperr.Write(w, httperr.Detail{Code: code, Message: msg})
	return status, code, msg
}
