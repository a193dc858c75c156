// Package httperr is transferd's one vocabulary of HTTP errors, shared by
// every surface that answers or reads them: the ingest routes (package
// ingest), the query API (package api) and its client (package
// api/client).
//
// Every error reply has the same body, Body:
//
//	{"error":{"code":"…","message":"…"}}
//
// with "param" added (query API, invalid_request only) when one parameter
// is at fault. The code is one of the Code… constants, a contract: clients
// branch on it, never on the message, which is written for the person
// reading it and never carries a token, a secret or internal detail. Each
// code has exactly one HTTP status (Status), so a code means the same on
// every route. docs/design.md §9.5 lists them with the routes that send
// them.
//
// The package imports only the standard library, so that any package,
// server or client, can use it without pulling in the others.
package httperr

import (
	"encoding/json"
	"net/http"
)

// Codes shared by the ingest routes and the query API.
const (
	CodeNotFound         = "not_found"          // 404: no such route, transfer or migration
	CodeMethodNotAllowed = "method_not_allowed" // 405: the route does not take this method
	CodeInternal         = "internal"           // 500: a bug or a corrupt store; detail only in the log
	CodeUnavailable      = "unavailable"        // 503 (with Retry-After): the journal or the projection cannot answer now; retry
)

// Codes of the query API.
const (
	CodeInvalidRequest = "invalid_request" // 400: a parameter is missing, malformed or unknown (param names it)
	CodeUnauthorized   = "unauthorized"    // 401: no API token, or not a configured one
	CodeConflict       = "conflict"        // 409: the upload's work is not in a state that allows the request (requeue of a live upload)
	CodeForbidden      = "forbidden"       // 403: a dashboard session's write without X-Requested-With, or from another origin (CSRF)
)

// Codes of the ingest routes, besides the authentication codes below.
const (
	CodeInvalidPayload       = "invalid_payload"        // 400: not a valid event
	CodeTenantMismatch       = "tenant_mismatch"        // 403: the transfer is bound to another tenant
	CodePayloadTooLarge      = "payload_too_large"      // 413: body (or event) over the limit
	CodeUnsupportedMediaType = "unsupported_media_type" // 415: body is not JSON
)

// Authentication codes of the ingest routes: why the platform's token was
// refused. All are 401.
const (
	CodeMissingToken     = "missing_token"     // no token in the request
	CodeMalformedToken   = "malformed_token"   // not a JWT, too long, a claim of the wrong type or missing
	CodeInvalidAlgorithm = "invalid_algorithm" // alg is not the one pinned for the endpoint
	CodeInvalidSignature = "invalid_signature" // signature does not verify, or its key is unknown or unavailable
	CodeTokenExpired     = "token_expired"     // exp passed (beyond the leeway) or missing, nbf or iat not reached, or valid for too long
	CodeInvalidQSH       = "invalid_qsh"       // qsh missing or not the hash of this request
	CodeContextQSH       = "context_qsh"       // qsh is the literal "context-qsh", refused on server-to-server calls
	CodeUnknownTenant    = "unknown_tenant"    // no installation is registered for the token's issuer
	CodeInvalidAudience  = "invalid_audience"  // aud missing or not this app
	CodeInvalidIssuer    = "invalid_issuer"    // iss missing or not the expected issuer
)

// statusOf is the status of every code, in this one place.
var statusOf = map[string]int{
	CodeInvalidRequest:       http.StatusBadRequest,
	CodeInvalidPayload:       http.StatusBadRequest,
	CodeUnauthorized:         http.StatusUnauthorized,
	CodeMissingToken:         http.StatusUnauthorized,
	CodeMalformedToken:       http.StatusUnauthorized,
	CodeInvalidAlgorithm:     http.StatusUnauthorized,
	CodeInvalidSignature:     http.StatusUnauthorized,
	CodeTokenExpired:         http.StatusUnauthorized,
	CodeInvalidQSH:           http.StatusUnauthorized,
	CodeContextQSH:           http.StatusUnauthorized,
	CodeUnknownTenant:        http.StatusUnauthorized,
	CodeInvalidAudience:      http.StatusUnauthorized,
	CodeInvalidIssuer:        http.StatusUnauthorized,
	CodeTenantMismatch:       http.StatusForbidden,
	CodeConflict:             http.StatusConflict,
	CodeForbidden:            http.StatusForbidden,
	CodeNotFound:             http.StatusNotFound,
	CodeMethodNotAllowed:     http.StatusMethodNotAllowed,
	CodePayloadTooLarge:      http.StatusRequestEntityTooLarge,
	CodeUnsupportedMediaType: http.StatusUnsupportedMediaType,
	CodeInternal:             http.StatusInternalServerError,
	CodeUnavailable:          http.StatusServiceUnavailable,
}

// Status returns the HTTP status of code, and false when code is not one of
// the Code… constants.
func Status(code string) (int, bool) {
	s, ok := statusOf[code]
	return s, ok
}

// Codes returns every code, in no particular order.
func Codes() []string {
	out := make([]string, 0, len(statusOf))
	for c := range statusOf {
		out = append(out, c)
	}
	return out
}

// Body is the JSON of every error reply.
type Body struct {
	Error Detail `json:"error"`
}

// Detail is the inside of Body.
type Detail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Param is the query parameter or header at fault, for
	// invalid_request only.
	Param string `json:"param,omitempty"`
}

// Write sends d as an error reply with its code's status (500 for a code
// that is not one of the constants, which is a bug) and returns the status.
// A 503 gets "Retry-After: 1". Headers particular to a surface
// (WWW-Authenticate, Allow) are the caller's, set before Write.
func Write(w http.ResponseWriter, d Detail) int {
	status, ok := statusOf[d.Code]
	if !ok {
		status, d = http.StatusInternalServerError, Detail{Code: CodeInternal, Message: "internal error"}
	}
	if status == http.StatusServiceUnavailable {
		w.Header()["Retry-After"] = retryAfter
	}
	WriteJSON(w, status, Body{Error: d})
	return status
}

// internalBody is the reply when a value cannot be encoded.
var internalBody = []byte(`{"error":{"code":"` + CodeInternal + `","message":"internal error"}}` + "\n")

// WriteJSON sends v as JSON, followed by a newline, with status; a v that
// cannot be encoded is a bug, answered 500 internal.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		WriteBody(w, http.StatusInternalServerError, internalBody)
		return
	}
	WriteBody(w, status, append(b, '\n'))
}

// The header values WriteBody and Write set: shared, pre-built slices, which
// net/http only reads.
var (
	jsonContentType = []string{"application/json"}
	noStore         = []string{"no-store"}
	retryAfter      = []string{"1"}
)

// WriteBody sends b, already encoded JSON, with status, as
// application/json that no cache keeps.
func WriteBody(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Cache-Control"] = noStore
	w.WriteHeader(status)
	w.Write(b)
}
