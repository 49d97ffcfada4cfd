package schema

import (
	"fmt"
	"strconv"
	"strings"
)

// Limits on identifiers.
const (
	MaxIDLength    = 128 // record IDs
	MaxOrgIDLength = 64  // organisation IDs
	logSeqDigits   = 20  // decimal digits of the largest uint64
)

// Key is the datastore key of a record inside its organisation's
// namespace: /<kind>/<id>. It does not validate; see ParseKey.
func Key(kind Kind, id string) string { return "/" + string(kind) + "/" + id }

// ParseKey splits a key made by Key. It refuses anything but exactly
// /<kind>/<id> with a known kind and a valid ID, with an error wrapping
// ErrBadKey (and ErrUnknownKind or ErrInvalid for the part at fault).
func ParseKey(key string) (Kind, string, error) {
	rest, ok := strings.CutPrefix(key, "/")
	if !ok {
		return "", "", fmt.Errorf("%w %q: a key is /<kind>/<id>, starting with /", ErrBadKey, key)
	}
	kind, id, ok := strings.Cut(rest, "/")
	if !ok {
		return "", "", fmt.Errorf("%w %q: a key is /<kind>/<id>; this one has no ID", ErrBadKey, key)
	}
	k, err := ParseKind(kind)
	if err != nil {
		return "", "", fmt.Errorf("%w %q: %w", ErrBadKey, key, err)
	}
	if err := checkID("id", id, MaxIDLength); err != nil {
		return "", "", fmt.Errorf("%w %q: %w", ErrBadKey, key, err)
	}
	return k, id, nil
}

// ValidateID checks a record ID: 1 to 128 characters of A-Z a-z 0-9 . _ -,
// and not "." or "..". The error is a *ValidationError on field "id".
func ValidateID(id string) error { return checkID("id", id, MaxIDLength) }

// ValidateOrgID checks an organisation ID: 1 to 64 characters of
// A-Z a-z 0-9 . _ -, and not "." or "..". The error is a *ValidationError on
// field "org".
func ValidateOrgID(org string) error { return checkID("org", org, MaxOrgIDLength) }

func checkID(field, id string, max int) error {
	rule := fmt.Sprintf("1 to %d characters of A-Z a-z 0-9 . _ -", max)
	switch {
	case id == "":
		return invalid(field, "required", "is required: "+rule)
	case len(id) > max:
		return invalid(field, "length", fmt.Sprintf("is %d characters long; use %s", len(id), rule))
	case id == "." || id == "..":
		return invalid(field, "reserved", fmt.Sprintf("must not be %q; use %s", id, rule))
	}
	for _, c := range []byte(id) {
		if !idChar(c) {
			return invalid(field, "charset", fmt.Sprintf("contains %q; use %s", rune(c), rule))
		}
	}
	return nil
}

func idChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '.' || c == '_' || c == '-'
}

// LogID is the ID of an execution's result-log entry number seq:
// "<execID>.<seq as 20 zero-padded digits>", so keys sort in sequence order
// and two log writers never share a key. A writer that has no sequence may
// use "<execID>.<any unique suffix with a non-digit>" instead.
func LogID(execID string, seq uint64) string {
	return fmt.Sprintf("%s.%0*d", execID, logSeqDigits, seq)
}

// ExecutionVersionID is the ID of version `version` of an execution:
// version 1 is the execution's own ID, version N ≥ 2 is "<execID>.v<N>".
// A proctor's reactivation of a finished execution writes the next version
// as a new record (so the finished one is never overwritten, and two VMs
// reactivating concurrently do not race on one key). execID may itself be a
// version ID; its suffix is replaced.
func ExecutionVersionID(execID string, version int) string {
	base, _ := SplitExecutionVersionID(execID)
	if version <= 1 {
		return base
	}
	return base + ".v" + strconv.Itoa(version)
}

// SplitExecutionVersionID undoes ExecutionVersionID: "e1.v3" gives ("e1", 3)
// and "e1" gives ("e1", 1). A suffix that is not a canonical version ≥ 2
// (".v1", ".v02") is not a suffix; Validate refuses such execution IDs.
func SplitExecutionVersionID(id string) (base string, version int) {
	i := strings.LastIndex(id, ".v")
	if i <= 0 {
		return id, 1
	}
	digits := id[i+2:]
	if len(digits) == 0 || len(digits) > 9 || digits[0] == '0' || !allDigits(digits) {
		return id, 1
	}
	n, _ := strconv.Atoi(digits)
	if n < 2 {
		return id, 1
	}
	return id[:i], n
}

// hasVersionSuffix reports whether id ends in ".v<digits>", canonical or not.
func hasVersionSuffix(id string) bool {
	i := strings.LastIndex(id, ".v")
	return i > 0 && i+2 < len(id) && allDigits(id[i+2:])
}

// CustodyID is the ID of the custody record saying peer holder holds
// bundle: "<bundle>.<holder>". Each VM writes its own key, so concurrent
// custody claims for one bundle never collide.
func CustodyID(bundle, holder string) string { return bundle + "." + holder }

// ReceiptID is the ID of archive peer archive's receipt for bundle:
// "<bundle>.<archive>", so two archives never share a key.
func ReceiptID(bundle, archive string) string { return bundle + "." + archive }

func allDigits(s string) bool {
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}
