package engine

import "errors"

// ValidationError says which field of a payload is invalid and why. Every
// error Parse returns is a *ValidationError, so the HTTP layer can answer
// 400 with this message without string matching.
type ValidationError struct {
	Field  string // dotted path, e.g. "migrationDetails.cloudUrl"; empty for the body itself
	Reason string
}

func (e *ValidationError) Error() string {
	if e.Field == "" {
		return e.Reason
	}
	return e.Field + ": " + e.Reason
}

func invalid(field, reason string) error { return &ValidationError{Field: field, Reason: reason} }

// IsValidation reports whether err is, or wraps, a *ValidationError.
func IsValidation(err error) bool {
	var v *ValidationError
	return errors.As(err, &v)
}
