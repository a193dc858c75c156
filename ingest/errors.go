package ingest

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/engine/journal"
)

// Error codes of the ingest routes, besides the authentication codes of
// AuthError (all 401). Every error body is {"error":{"code","message"}}.
const (
	CodeInvalidPayload     = "invalid_payload"        // 400
	CodeTenantMismatch     = "tenant_mismatch"        // 403
	CodeNotFound           = "not_found"              // 404
	CodeMethodNotAllowed   = "method_not_allowed"     // 405
	CodePayloadTooLarge    = "payload_too_large"      // 413
	CodeUnsupportedMedia   = "unsupported_media_type" // 415
	CodeJournalUnavailable = "journal_unavailable"    // 503
	CodeInternal           = "internal"               // 500
)

var statusOf = map[string]int{
	CodeInvalidPayload:     http.StatusBadRequest,
	CodeTenantMismatch:     http.StatusForbidden,
	CodeNotFound:           http.StatusNotFound,
	CodeMethodNotAllowed:   http.StatusMethodNotAllowed,
	CodePayloadTooLarge:    http.StatusRequestEntityTooLarge,
	CodeUnsupportedMedia:   http.StatusUnsupportedMediaType,
	CodeJournalUnavailable: http.StatusServiceUnavailable,
	CodeInternal:           http.StatusInternalServerError,
}

// Error is an ingest failure a client can act on.
type Error struct {
	Code    string
	Message string
	Err     error // detail for the log, never sent
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }
func (e *Error) Unwrap() error { return e.Err }

func fail(code, msg string, err error) *Error { return &Error{Code: code, Message: msg, Err: err} }

// ErrorBody is the JSON of every error reply.
type ErrorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// classify maps any error of the request path to its code, message and
// status, in this one place.
func classify(err error) (code, msg string, status int) {
	var ae *AuthError
	var ie *Error
	var ve *engine.ValidationError
	switch {
	case errors.As(err, &ae):
		return ae.Code, ae.Message, http.StatusUnauthorized
	case errors.As(err, &ve):
		return CodeInvalidPayload, ve.Error(), http.StatusBadRequest
	case errors.As(err, &ie):
		if s, ok := statusOf[ie.Code]; ok {
			return ie.Code, ie.Message, s
		}
	case errors.Is(err, journal.ErrUnavailable):
		return CodeJournalUnavailable, "the event journal did not acknowledge in time; retry later", http.StatusServiceUnavailable
	case errors.Is(err, journal.ErrTooLarge):
		return CodePayloadTooLarge, "event too large for the journal", http.StatusRequestEntityTooLarge
	}
	return CodeInternal, "internal error", http.StatusInternalServerError
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
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	if status >= 500 {
		log.Error("ingest failed", "code", code, "err", err)
	} else {
		log.Debug("ingest refused: detail", "code", code, "err", err)
	}
	var body ErrorBody
	body.Error.Code, body.Error.Message = code, msg
	writeJSON(w, status, body)
	return status, code, msg
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"code":"internal","message":"internal error"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
