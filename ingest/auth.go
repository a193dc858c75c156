package ingest

// Authentication error codes: the Code of every AuthError. All of them are
// answered with 401.
const (
	CodeMissingToken     = "missing_token"     // no token in the request
	CodeMalformedToken   = "malformed_token"   // not a JWT, too long, a claim of the wrong type or missing
	CodeInvalidAlgorithm = "invalid_algorithm" // alg is not the one pinned for the endpoint
	CodeInvalidSignature = "invalid_signature" // signature does not verify, or its key is unknown or unavailable
	CodeTokenExpired     = "token_expired"     // exp passed (beyond the leeway), exp missing, nbf or iat not reached, or exp more than MaxTokenLifetime after iat
	CodeInvalidQSH       = "invalid_qsh"       // qsh missing or not the hash of this request
	CodeContextQSH       = "context_qsh"       // qsh is the literal "context-qsh", refused on server-to-server calls
	CodeUnknownTenant    = "unknown_tenant"    // no installation is registered for the token's issuer
	CodeInvalidAudience  = "invalid_audience"  // aud missing or not this app
	CodeInvalidIssuer    = "invalid_issuer"    // iss missing or not the expected issuer
)

// AuthError is a request that failed authentication. Every AuthError is
// answered with 401; Code is one of the Code… constants above and Message is
// written for the partner reading the reply. Neither ever contains the token
// or a secret. Err, when set, is the underlying cause, for logs only.
type AuthError struct {
	Code    string
	Message string
	Err     error
}

// Error returns the code, the message and, when set, the cause.
func (e *AuthError) Error() string {
	s := "ingest: " + e.Code + ": " + e.Message
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the underlying cause, if any.
func (e *AuthError) Unwrap() error { return e.Err }

// authErr returns an *AuthError with the given code, message and cause.
func authErr(code, msg string, err error) error {
	return &AuthError{Code: code, Message: msg, Err: err}
}
