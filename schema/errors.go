package schema

import (
	"errors"
	"strings"
)

// Sentinel errors. Every error this package returns wraps one of them, so
// callers branch with errors.Is, never on the text.
var (
	// ErrUnknownRole: a role other than central, vm or archive.
	ErrUnknownRole = errors.New("schema: unknown role")
	// ErrUnknownKind: a kind this node does not know.
	ErrUnknownKind = errors.New("schema: unknown kind")
	// ErrBadKey: a datastore key that is not /<kind>/<id>.
	ErrBadKey = errors.New("schema: bad key")
	// ErrInvalid: a record, ID or field breaks a validation rule. The error
	// is a *ValidationError naming the field and the rule.
	ErrInvalid = errors.New("schema: invalid")
	// ErrMalformed: bytes that are not one JSON value (syntax error,
	// trailing data, not UTF-8).
	ErrMalformed = errors.New("schema: malformed record")
	// ErrTooLarge: an encoded record larger than MaxRecordSize, or a
	// manifest larger than MaxManifestSize.
	ErrTooLarge = errors.New("schema: too large")
	// ErrUnsupportedVersion: a record whose schema version this node does
	// not read.
	ErrUnsupportedVersion = errors.New("schema: unsupported schema version")
	// ErrForbiddenProperty: a property that must never be stored (a
	// password, secret or key), at any depth. Comes inside a
	// *ValidationError, so ErrInvalid matches too.
	ErrForbiddenProperty = errors.New("schema: forbidden property")
	// ErrAppendOnly: a different record written over an append-only one.
	ErrAppendOnly = errors.New("schema: append-only")
	// ErrReactivateInPlace: a finished or terminated execution written back
	// to active or paused instead of as a new version.
	ErrReactivateInPlace = errors.New("schema: reactivation in place")
	// ErrNotFinished: a result for an execution that is not finished.
	ErrNotFinished = errors.New("schema: execution not finished")
	// ErrExecutionMismatch: a result that belongs to another execution or
	// organisation.
	ErrExecutionMismatch = errors.New("schema: result does not match its execution")
	// ErrNotEligible: a test-taker without an eligibility for the delivery
	// in the organisation.
	ErrNotEligible = errors.New("schema: not eligible")
	// ErrRoleMayNotWrite: a role writing (or deleting) a kind it does not own.
	ErrRoleMayNotWrite = errors.New("schema: write refused")
	// ErrNotDeletable: a delete of a kind that is never deleted.
	ErrNotDeletable = errors.New("schema: not deletable")
	// ErrBadManifest: a bundle manifest that is not in canonical
	// `sha256sum -c` form.
	ErrBadManifest = errors.New("schema: bad manifest")
)

// ValidationError says which field broke which rule. It wraps ErrInvalid
// and, for some rules, a more specific sentinel (ErrForbiddenProperty,
// ErrUnknownKind).
type ValidationError struct {
	// Field is the path of the offending value: "kind", "id", "org",
	// "body.state", "body.test_takers[2]", "body.data.secret".
	Field string
	// Rule is a short stable name of the rule: required, length, charset,
	// reserved, format, oneof, range, order, unique, convention, match,
	// immutable, type, unknown, forbidden, depth.
	Rule string
	// Msg says what is wrong and what to write instead.
	Msg string

	sentinel error
}

func (e *ValidationError) Error() string {
	field := e.Field
	if field == "" {
		field = "record"
	}
	return "schema: invalid " + field + ": " + e.Msg
}

// Unwrap returns ErrInvalid and, where there is one, the specific sentinel.
func (e *ValidationError) Unwrap() []error {
	if e.sentinel != nil {
		return []error{ErrInvalid, e.sentinel}
	}
	return []error{ErrInvalid}
}

func invalid(field, rule, msg string) error {
	return &ValidationError{Field: field, Rule: rule, Msg: msg}
}

// firstErr returns the first non-nil error.
func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// joinPath appends a property name to a field path.
func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func quoteList(items []string) string { return strings.Join(items, ", ") }
