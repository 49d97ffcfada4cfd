package crdt

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/examnode/examnode/policy"
	"github.com/examnode/examnode/schema"
)

// Reserved keys of a gated replica. They hold authority-signed statements
// that verify themselves, so any member may replicate them: every node
// writes its own membership into every organisation it holds, and the
// central operator writes revocations into every organisation. Records
// of the schema never start with "/_".
const (
	MembershipsPrefix = "/_memberships"
	RevocationsPrefix = "/_revocations"
	// DeletionsPrefix holds signed deletions: at DeletionKey(key), a
	// signed record of the record deleted, by a writer that may delete it.
	DeletionsPrefix = "/_deletions"
)

// DeletionKey is where the signed deletion of the record at key is kept.
func DeletionKey(key string) string { return DeletionsPrefix + key }

// MembershipKey is where membership m is kept in a gated replica.
func MembershipKey(s policy.Serial) string { return MembershipsPrefix + "/" + s.String() }

// RevocationKey is where revocation r is kept: its content's hash, so
// that writing the same revocation twice lands on one key.
func RevocationKey(r policy.Revocation) string {
	sum := sha256.Sum256(r.Encode())
	return RevocationsPrefix + "/" + hex.EncodeToString(sum[:16])
}

// IsReserved reports whether key is one of the replica's own (not a
// record of the schema).
func IsReserved(key string) bool { return strings.HasPrefix(key, "/_") }

// Reasons a verified view refuses or parks an element: stable codes for
// counters, the API and the CLI.
const (
	ReasonBadSignature      = "bad_signature"
	ReasonMalformed         = "malformed"
	ReasonUnknownMembership = "unknown_membership" // parked
	ReasonUnknownExecution  = "unknown_execution"  // parked
	ReasonRevoked           = "revoked"
	ReasonExpired           = "membership_expired"
	ReasonNotMember         = "not_member"
	ReasonRoleMayNotWrite   = "role_may_not_write"
	ReasonNotOwner          = "not_owner"
	ReasonReplay            = "replay"
	ReasonAppendOnly        = "append_only"
	ReasonMisplaced         = "misplaced"
	ReasonFuture            = "signed_in_future"
	ReasonWrongNetwork      = "wrong_network"
	ReasonReservedKey       = "reserved_key"
	ReasonInvalid           = "invalid"
)

// reasonOf maps a policy or schema error to its reason code.
func reasonOf(err error) string {
	for _, r := range []struct {
		err    error
		reason string
	}{
		{policy.ErrBadSignature, ReasonBadSignature},
		{policy.ErrRevoked, ReasonRevoked},
		{policy.ErrExpired, ReasonExpired},
		{policy.ErrNotYetValid, ReasonExpired},
		{policy.ErrUnknownExecution, ReasonUnknownExecution},
		{policy.ErrReplay, ReasonReplay},
		{policy.ErrNotOwner, ReasonNotOwner},
		{policy.ErrRoleMayNotWrite, ReasonRoleMayNotWrite},
		{policy.ErrNotMember, ReasonNotMember},
		{policy.ErrMisplaced, ReasonMisplaced},
		{policy.ErrFuture, ReasonFuture},
		{policy.ErrWrongNetwork, ReasonWrongNetwork},
		{policy.ErrMembershipMismatch, ReasonBadSignature},
		{schema.ErrAppendOnly, ReasonAppendOnly},
		{policy.ErrMalformed, ReasonMalformed},
		{policy.ErrUnsupportedVersion, ReasonMalformed},
		{schema.ErrMalformed, ReasonMalformed},
	} {
		if errors.Is(err, r.err) {
			return r.reason
		}
	}
	return ReasonInvalid
}

// element is one value go-ds-crdt merged at a key: from delta block
// Block, at the delta's Priority.
type element struct {
	Block    string
	Priority uint64
	Value    []byte
	Tomb     bool // a tombstone for this element has been merged
}

// verdict is the decision on one element that is not accepted.
type verdict struct {
	Parked bool
	Reason string
	Err    error
	Dep    string // parked: the key whose arrival decides again
	Writer string
	Serial policy.Serial
	Seq    uint64
}

// lookups are what a decision reads besides the key's own elements.
type lookups struct {
	org     string
	trust   policy.Trust
	now     time.Time
	revs    policy.RevocationSet
	members func(policy.Serial) (policy.Membership, bool)
	// members returns memberships that verified (policy.Verify) when
	// they were stored. execution returns the view's record at
	// /executions/<id>, if any.
	execution func(id string) (*schema.Record, bool)
	// deletedAt returns the signing time of the view's deletion of key.
	deletedAt func(key string) (time.Time, bool)
}

// decision is the outcome for one key.
type decision struct {
	Value    []byte              // the view's value; nil: absent
	Verdicts map[string]*verdict // by block, elements not accepted
	Serials  []policy.Serial     // memberships that signed elements here (for revocations)
}

// decide is the verified view's rule for one key: which of the elements
// go-ds-crdt merged there count, and which value the view shows. It is a
// pure function of the elements and the lookups, so every node that holds
// the same deltas (and the same memberships and revocations) shows the
// same value, whatever order the deltas arrived in:
//
//   - reserved keys hold authority-signed memberships and revocations,
//     accepted only if they verify (policy.Verify, VerifyRevocation);
//   - a record must be a signed record (policy.DecodeSigned) whose writer
//     holds a membership known here (else parked until it arrives), valid
//     and not revoked when it signed (policy.CheckSignedVerified: the
//     membership was verified when it was stored), and that may
//     write it (policy.MayWrite; a result waiting for its execution is
//     parked until the execution arrives);
//   - a replay: an element whose writer's sequence number is not above one
//     the same writer wrote at this key in an earlier delta (lower
//     priority) is refused (policy.CheckReplay with lastSeen per writer and
//     key). An honest writer's later writes always come in later deltas;
//   - an execution belongs to the VM of its earliest valid version; later
//     versions naming another VM are refused (ErrNotOwner);
//   - an append-only record keeps its earliest valid version; others are
//     refused (schema.CheckWrite);
//   - deletions are signed too: go-ds-crdt's tombstones carry no
//     signature, so the view ignores them; a record is deleted by a valid
//     signed deletion at DeletionKey(key) (policy.MayWrite with Delete:
//     only central, only deletable kinds), which hides every version
//     signed at or before the deletion's time (a record written again
//     later shows again);
//   - of the accepted, undeleted elements the value is go-ds-crdt's
//     choice among them: highest priority, then greatest bytes.
func decide(key string, elems []element, l lookups) decision {
	d := decision{Verdicts: map[string]*verdict{}}
	if IsReserved(key) {
		decideReserved(key, elems, l, &d)
		return d
	}
	type cand struct {
		e   element
		sr  policy.SignedRecord
		rec schema.Record
	}
	var ok []cand
	for _, e := range elems {
		sr, m, rec, v, valid := signedElement(key, "record", e, l, &d)
		if !valid {
			continue
		}
		wc := policy.WriteContext{Writer: m, Org: l.org, Key: key, Record: rec}
		execID, isExec := policy.ExecutionOf(rec)
		if isExec && rec.Kind != schema.KindExecutions {
			if x, found := l.execution(execID); found {
				wc.Execution = x
			}
		}
		if err := policy.MayWrite(wc); err != nil {
			v.Reason, v.Err = reasonOf(err), err
			if errors.Is(err, policy.ErrUnknownExecution) {
				v.Parked, v.Dep = true, schema.Key(schema.KindExecutions, execID)
			}
			d.Verdicts[e.Block] = v
			continue
		}
		ok = append(ok, cand{e, sr, rec})
	}
	// Replays: lastSeen per writer at this key, over earlier deltas.
	var valid []cand
	for _, c := range ok {
		var last uint64
		for _, o := range ok {
			if o.sr.Writer == c.sr.Writer && o.e.Priority < c.e.Priority {
				last = max(last, o.sr.Seq)
			}
		}
		if err := policy.CheckReplay(c.sr, last); err != nil {
			d.Verdicts[c.e.Block] = &verdict{Reason: ReasonReplay, Err: fmt.Errorf("%s: %w", key, err),
				Writer: c.sr.Writer, Serial: c.sr.Membership, Seq: c.sr.Seq}
			continue
		}
		valid = append(valid, c)
	}
	// The earliest valid version fixes an execution's VM and an
	// append-only record's content.
	if len(valid) > 1 {
		earliest := slices.MinFunc(valid, func(a, b cand) int {
			return cmp.Or(cmp.Compare(a.e.Priority, b.e.Priority), bytes.Compare(a.e.Value, b.e.Value))
		})
		kept := valid[:0:0]
		for _, c := range valid {
			if c.e.Block == earliest.e.Block {
				kept = append(kept, c)
				continue
			}
			var err error
			switch {
			case c.rec.Kind == schema.KindExecutions:
				err = sameVM(key, earliest.rec, c.rec, c.sr.Writer)
			case c.rec.Kind.AppendOnly():
				_, err = schema.CheckWrite(&earliest.rec, c.rec)
			}
			if err != nil {
				d.Verdicts[c.e.Block] = &verdict{Reason: reasonOf(err), Err: err, Writer: c.sr.Writer, Serial: c.sr.Membership, Seq: c.sr.Seq}
				continue
			}
			kept = append(kept, c)
		}
		valid = kept
	}
	delAt, deleted := time.Time{}, false
	if l.deletedAt != nil {
		delAt, deleted = l.deletedAt(key)
	}
	var best *element
	for i := range valid {
		e := &valid[i].e
		if deleted && !valid[i].sr.At.After(delAt) {
			continue
		}
		if best == nil || e.Priority > best.Priority || (e.Priority == best.Priority && bytes.Compare(e.Value, best.Value) > 0) {
			best = e
		}
	}
	if best != nil {
		d.Value = best.Value
	}
	return d
}

func sameVM(key string, first, next schema.Record, writer string) error {
	a, err1 := first.DecodeBody()
	b, err2 := next.DecodeBody()
	if err := errors.Join(err1, err2); err != nil {
		return err
	}
	ea, ok1 := a.(schema.Execution)
	eb, ok2 := b.(schema.Execution)
	if ok1 && ok2 && ea.VM != eb.VM {
		return fmt.Errorf("%w: peer %s may not write %s: the execution runs on VM %s (its first version); a proctor reactivates it as a new version to continue elsewhere",
			policy.ErrNotOwner, writer, key, ea.VM)
	}
	return nil
}

// decideReserved accepts authority-signed memberships and revocations at
// their reserved keys, and refuses anything else there.
func decideReserved(key string, elems []element, l lookups, d *decision) {
	if strings.HasPrefix(key, DeletionsPrefix+"/") {
		decideDeletion(key, elems, l, d)
		return
	}
	var best *element
	for i := range elems {
		e := &elems[i]
		if err := checkReserved(key, e.Value, l); err != nil {
			d.Verdicts[e.Block] = &verdict{Reason: reasonOf(err), Err: err}
			if strings.Contains(err.Error(), "reserved key") {
				d.Verdicts[e.Block].Reason = ReasonReservedKey
			}
			continue
		}
		// Statements are never deleted: a tombstone does not hide one.
		if best == nil || e.Priority > best.Priority || (e.Priority == best.Priority && bytes.Compare(e.Value, best.Value) > 0) {
			best = e
		}
	}
	if best != nil {
		d.Value = best.Value
	}
}

func checkReserved(key string, value []byte, l lookups) error {
	switch {
	case strings.HasPrefix(key, MembershipsPrefix+"/"):
		m, err := policy.DecodeMembership(value)
		if err != nil {
			return err
		}
		// The signature is what counts here; validity at a record's
		// signing time is CheckSigned's.
		if err := policy.Verify(m, l.trust, m.NotBefore); err != nil {
			return err
		}
		if key != MembershipKey(m.Serial) {
			return fmt.Errorf("%w: membership %s stored at %s, not at %s", policy.ErrMisplaced, m.Serial, key, MembershipKey(m.Serial))
		}
		if !m.Covers(l.org) {
			return fmt.Errorf("%w: membership %s (%s) does not cover organisation %s", policy.ErrNotMember, m.Serial, m.Peer, l.org)
		}
		return nil
	case strings.HasPrefix(key, RevocationsPrefix+"/"):
		r, err := policy.DecodeRevocation(value)
		if err != nil {
			return err
		}
		if err := policy.VerifyRevocation(r, l.trust); err != nil {
			return err
		}
		if key != RevocationKey(r) {
			return fmt.Errorf("%w: revocation of %s stored at %s, not at %s", policy.ErrMisplaced, r.Peer, key, RevocationKey(r))
		}
		return nil
	}
	return fmt.Errorf("%w: %s is a reserved key; records live at /<kind>/<id>", policy.ErrInvalid, key)
}

// decideDeletion accepts signed deletions of the record at key minus
// DeletionsPrefix: a signed record of that record, by a writer whose
// membership may delete it (policy.MayWrite with Delete). The view's
// value is the valid deletion signed last.
func decideDeletion(key string, elems []element, l lookups, d *decision) {
	target := strings.TrimPrefix(key, DeletionsPrefix)
	var best *element
	var bestAt time.Time
	for i := range elems {
		e := &elems[i]
		sr, m, rec, v, valid := signedElement(key, "deletion", *e, l, d)
		if !valid {
			continue
		}
		if rec.Key() != target || rec.Org != l.org {
			v.Reason = ReasonMisplaced
			v.Err = fmt.Errorf("%w: a deletion of %s in %s stored at %s", policy.ErrMisplaced, rec.Key(), rec.Org, key)
			d.Verdicts[e.Block] = v
			continue
		}
		if err := policy.MayWrite(policy.WriteContext{Writer: m, Org: l.org, Key: target, Delete: true}); err != nil {
			v.Reason, v.Err = reasonOf(err), err
			d.Verdicts[e.Block] = v
			continue
		}
		if best == nil || sr.At.After(bestAt) || (sr.At.Equal(bestAt) && bytes.Compare(e.Value, best.Value) > 0) {
			best, bestAt = e, sr.At
		}
	}
	if best != nil {
		d.Value = best.Value
	}
}

// signedElement is what decide and decideDeletion check first of every
// element: it is a signed record (what names it in the error); its
// writer's membership is known here (else it is parked until it arrives,
// unless its signature is already false: a forgery is refused now); it is
// valid and not revoked when it signed (policy.CheckSignedVerified:
// memberships in l.members were verified when they were stored); and it
// holds a record. It notes the membership in d.Serials. If the element
// fails, its verdict is set in d and valid is false; otherwise v is the
// element's verdict, filled with its writer, for the caller's later
// checks.
func signedElement(key, what string, e element, l lookups, d *decision) (sr policy.SignedRecord, m policy.Membership, rec schema.Record, v *verdict, valid bool) {
	v = &verdict{}
	sr, err := policy.DecodeSigned(e.Value)
	if err != nil {
		v.Reason, v.Err = reasonOf(err), fmt.Errorf("%s: not a signed %s: %w", key, what, err)
		d.Verdicts[e.Block] = v
		return sr, m, rec, v, false
	}
	v.Writer, v.Serial, v.Seq = sr.Writer, sr.Membership, sr.Seq
	if !slices.Contains(d.Serials, sr.Membership) {
		d.Serials = append(d.Serials, sr.Membership)
	}
	m, known := l.members(sr.Membership)
	if !known {
		if err := policy.VerifySigned(sr); err != nil {
			v.Reason, v.Err = reasonOf(err), err
		} else {
			v.Parked, v.Reason, v.Dep = true, ReasonUnknownMembership, MembershipKey(sr.Membership)
			v.Err = fmt.Errorf("membership %s of writer %s has not arrived here yet; decided again when it does", sr.Membership, sr.Writer)
		}
		d.Verdicts[e.Block] = v
		return sr, m, rec, v, false
	}
	if err := policy.CheckSignedVerified(sr, m, l.revs, l.trust, l.now); err != nil {
		v.Reason, v.Err = reasonOf(err), err
		d.Verdicts[e.Block] = v
		return sr, m, rec, v, false
	}
	if rec, err = schema.Decode(sr.Record); err != nil {
		v.Reason, v.Err = reasonOf(err), err
		d.Verdicts[e.Block] = v
		return sr, m, rec, v, false
	}
	return sr, m, rec, v, true
}
