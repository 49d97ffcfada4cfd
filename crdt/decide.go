package crdt

// The verified view decides each key with policy.Decide, the one rule
// engine that senders run too (Replica.Check). What is kept here is the
// crdt side's names for the reserved keys and reason codes, which are
// policy's.

import (
	"github.com/examnode/examnode/policy"
)

// Reserved keys of a gated replica (policy.MembershipsPrefix, …).
const (
	MembershipsPrefix = policy.MembershipsPrefix
	RevocationsPrefix = policy.RevocationsPrefix
	DeletionsPrefix   = policy.DeletionsPrefix
)

// DeletionKey is where the signed deletion of the record at key is kept.
func DeletionKey(key string) string { return policy.DeletionKey(key) }

// MembershipKey is where membership m is kept in a gated replica.
func MembershipKey(s policy.Serial) string { return policy.MembershipKey(s) }

// RevocationKey is where revocation r is kept.
func RevocationKey(r policy.Revocation) string { return policy.RevocationKey(r) }

// IsReserved reports whether key is one of the replica's own (not a
// record of the schema).
func IsReserved(key string) bool { return policy.IsReserved(key) }

// Reasons a verified view refuses or parks an element: policy.Decide's
// codes.
const (
	ReasonBadSignature      = policy.ReasonBadSignature
	ReasonMalformed         = policy.ReasonMalformed
	ReasonUnknownMembership = policy.ReasonUnknownMembership // parked
	ReasonUnknownExecution  = policy.ReasonUnknownExecution  // parked
	ReasonNotFinished       = policy.ReasonNotFinished       // parked
	ReasonRevoked           = policy.ReasonRevoked
	ReasonExpired           = policy.ReasonExpired
	ReasonNotMember         = policy.ReasonNotMember
	ReasonRoleMayNotWrite   = policy.ReasonRoleMayNotWrite
	ReasonNotOwner          = policy.ReasonNotOwner
	ReasonReplay            = policy.ReasonReplay
	ReasonAppendOnly        = policy.ReasonAppendOnly
	ReasonReactivateInPlace = policy.ReasonReactivateInPlace
	ReasonMisplaced         = policy.ReasonMisplaced
	ReasonFuture            = policy.ReasonFuture
	ReasonWrongNetwork      = policy.ReasonWrongNetwork
	ReasonReservedKey       = policy.ReasonReservedKey
	ReasonInvalid           = policy.ReasonInvalid
)
