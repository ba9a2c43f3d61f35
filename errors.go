// Package trellis holds the few domain-wide types every layer shares: the error
// kinds that the API translates, once, into problem+json responses.
package trellis

import (
	"errors"
	"fmt"
)

// Sentinel errors. Wrap them with %w and context; the API maps them to statuses.
var (
	// ErrNotFound: the object does not exist or is not the caller's to see (404).
	ErrNotFound = errors.New("not found")
	// ErrConflict: the request conflicts with current state (409).
	ErrConflict = errors.New("conflict")
	// ErrUnavailable: the engine or a store cannot answer now (503); checks fail closed.
	ErrUnavailable = errors.New("service unavailable")
	// ErrForbidden: authenticated but not allowed (403).
	ErrForbidden = errors.New("forbidden")
	// ErrUnauthenticated: no or invalid credentials (401).
	ErrUnauthenticated = errors.New("unauthenticated")
)

// ValidationError is bad input (400). Field names the offending request field
// in the client's own terms (e.g. "items[3].resource").
type ValidationError struct {
	Field   string
	Message string
}

func (e *ValidationError) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

// Invalid builds a *ValidationError for field.
func Invalid(field, format string, args ...any) error {
	return &ValidationError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// RuleError is well-formed input that breaks a rule (422), e.g. a schema change
// that would orphan stored relationships. Code is a stable machine-readable reason;
// Field, when set, names the request field that breaks it.
type RuleError struct {
	Code    string
	Message string
	Field   string
}

func (e *RuleError) Error() string { return e.Message }

// WithField prefixes the field of a *ValidationError (e.g. "items[2]" + ".resource");
// other errors are returned unchanged.
func WithField(prefix string, err error) error {
	var ve *ValidationError
	if errors.As(err, &ve) {
		f := prefix
		if ve.Field != "" {
			f = prefix + "." + ve.Field
		}
		return &ValidationError{Field: f, Message: ve.Message}
	}
	return err
}

// Rule builds a *RuleError (422).
func Rule(code, format string, args ...any) error {
	return &RuleError{Code: code, Message: fmt.Sprintf(format, args...)}
}

// RuleAt builds a *RuleError (422) that names the request field breaking the rule.
func RuleAt(field, code, format string, args ...any) error {
	return &RuleError{Code: code, Field: field, Message: fmt.Sprintf(format, args...)}
}

// ConflictError is a conflict (409) with a stable machine-readable code, e.g.
// "has_children" or "invitation_expired". errors.Is(err, ErrConflict) holds.
type ConflictError struct {
	Code    string
	Message string
}

func (e *ConflictError) Error() string { return e.Message }

// Is makes a *ConflictError match ErrConflict.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// Conflict builds a *ConflictError (409).
func Conflict(code, format string, args ...any) error {
	return &ConflictError{Code: code, Message: fmt.Sprintf(format, args...)}
}

// UnavailableError is a bound on work that was reached (503): the server
// cannot answer this request now, and says why and what to do in Message.
// Code is a stable machine-readable reason. errors.Is(err, ErrUnavailable) holds.
type UnavailableError struct {
	Code    string
	Message string
}

func (e *UnavailableError) Error() string { return e.Message }

// Is makes an *UnavailableError match ErrUnavailable.
func (e *UnavailableError) Is(target error) bool { return target == ErrUnavailable }

// Unavailable builds an *UnavailableError (503).
func Unavailable(code, format string, args ...any) error {
	return &UnavailableError{Code: code, Message: fmt.Sprintf(format, args...)}
}
