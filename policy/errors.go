package policy

import "errors"

// Sentinel errors. Every error this package returns wraps one of them (and
// sometimes a schema sentinel too), so callers branch with errors.Is, never
// on the text. The text says what the operator should do.
var (
	// ErrMalformed: bytes or text that are not a well-formed membership,
	// revocation, signed record, authority key or serial.
	ErrMalformed = errors.New("policy: malformed")
	// ErrUnsupportedVersion: an encoding format version, or a peer's
	// protocol or record schema version, that this node does not speak. The
	// message names both versions.
	ErrUnsupportedVersion = errors.New("policy: unsupported version")
	// ErrInvalid: a request or value that breaks a rule (a grant for a VM
	// in two organisations, a negative retention period, a record that does
	// not validate, a record in non-canonical encoding).
	ErrInvalid = errors.New("policy: invalid")
	// ErrBadAuthorityKey: an authority key that is missing, or private key
	// material that is not an examnode authority key.
	ErrBadAuthorityKey = errors.New("policy: bad authority key")
	// ErrBadSignature: a membership or revocation not signed by this
	// network's authority, or a record not signed by its writer: forged, or
	// altered after signing.
	ErrBadSignature = errors.New("policy: bad signature")
	// ErrWrongNetwork: a membership or revocation issued for another
	// network.
	ErrWrongNetwork = errors.New("policy: wrong network")
	// ErrNotYetValid: a membership used before its NotBefore.
	ErrNotYetValid = errors.New("policy: membership not yet valid")
	// ErrExpired: a membership used at or after its Expires.
	ErrExpired = errors.New("policy: membership expired")
	// ErrRevoked: a membership the authority revoked.
	ErrRevoked = errors.New("policy: membership revoked")
	// ErrNoMembership: a peer that presented no membership.
	ErrNoMembership = errors.New("policy: no membership")
	// ErrNotMember: a peer announcing, reading or writing an organisation
	// its membership does not cover.
	ErrNotMember = errors.New("policy: not a member of the organisation")
	// ErrRoleMayNotWrite: a role writing (or deleting) a kind it does not
	// own. The error also wraps schema.ErrRoleMayNotWrite (or
	// schema.ErrNotDeletable).
	ErrRoleMayNotWrite = errors.New("policy: role may not write")
	// ErrNotOwner: a writer of the right role writing a record that belongs
	// to another peer: another VM's execution, result, log or bundle,
	// another holder's custody, another archive's receipt.
	ErrNotOwner = errors.New("policy: not the owner")
	// ErrUnknownExecution: a result, result log or bundle whose execution
	// has not arrived yet, so its owner cannot be decided. Park the record
	// and decide again when the execution arrives.
	ErrUnknownExecution = errors.New("policy: execution not known yet")
	// ErrMembershipMismatch: a signed record whose writer or membership
	// serial does not match the membership it is checked against, or a key
	// signing for another peer's membership.
	ErrMembershipMismatch = errors.New("policy: record does not match its membership")
	// ErrMisplaced: a signed record arriving at another key or organisation
	// than its own.
	ErrMisplaced = errors.New("policy: record at the wrong key")
	// ErrFuture: a record signed after this node's time (beyond the clock
	// skew allowed).
	ErrFuture = errors.New("policy: signed in the future")
	// ErrReplay: a signed record that is not newer than the last one the
	// caller accepted from the same writer at the same key.
	ErrReplay = errors.New("policy: replayed record")
	// ErrRetentionLocked: a node's retention rule shorter than the locked
	// rule central set for the organisation.
	ErrRetentionLocked = errors.New("policy: retention rule locked")
	// ErrReservedKey: a value at a reserved key ("/_…") that is neither a
	// membership, a revocation nor a signed deletion: records of the
	// schema never start with "/_".
	ErrReservedKey = errors.New("policy: reserved key")
	// ErrForbiddenProperty: a property name that must never be stored. The
	// error also wraps schema.ErrForbiddenProperty.
	ErrForbiddenProperty = errors.New("policy: forbidden property")
)
