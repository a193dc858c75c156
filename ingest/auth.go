package ingest

// AuthError is a request that failed authentication. Every AuthError is
// answered with 401; Code is one of the authentication codes of package
// httperr (httperr.CodeMissingToken … httperr.CodeInvalidIssuer) and Message is
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
