package policy

// The write rules of a gated replica, in one place (issue 15).
//
// Decide is the rule engine: for one key, which of the elements merged
// there count, and which value shows. Every receiver's verified view runs
// it on what go-ds-crdt merged (crdt/view.go), and every sender runs it on
// the element it is about to write, signed as it will be sent, beside the
// elements its own view holds at that key (crdt.Replica.Check): a sender
// refuses exactly what a receiver would refuse or park.

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

// MembershipKey is where membership s is kept in a gated replica.
func MembershipKey(s Serial) string { return MembershipsPrefix + "/" + s.String() }

// RevocationKey is where revocation r is kept: its content's hash, so
// that writing the same revocation twice lands on one key.
func RevocationKey(r Revocation) string {
	sum := sha256.Sum256(r.Encode())
	return RevocationsPrefix + "/" + hex.EncodeToString(sum[:16])
}

// IsReserved reports whether key is one of the replica's own (not a
// record of the schema).
func IsReserved(key string) bool { return strings.HasPrefix(key, "/_") }

// Reasons Decide refuses or parks an element: stable codes for counters,
// the API and the CLI.
const (
	ReasonBadSignature      = "bad_signature"
	ReasonMalformed         = "malformed"
	ReasonUnknownMembership = "unknown_membership" // parked
	ReasonUnknownExecution  = "unknown_execution"  // parked
	ReasonNotFinished       = "not_finished"       // parked
	ReasonRevoked           = "revoked"
	ReasonExpired           = "membership_expired"
	ReasonNotMember         = "not_member"
	ReasonRoleMayNotWrite   = "role_may_not_write"
	ReasonNotOwner          = "not_owner"
	ReasonReplay            = "replay"
	ReasonAppendOnly        = "append_only"
	ReasonReactivateInPlace = "reactivate_in_place"
	ReasonMisplaced         = "misplaced"
	ReasonFuture            = "signed_in_future"
	ReasonWrongNetwork      = "wrong_network"
	ReasonReservedKey       = "reserved_key"
	ReasonInvalid           = "invalid"
)

// reasons maps sentinels to reason codes, first match wins.
var reasons = []struct {
	err    error
	reason string
}{
	{ErrBadSignature, ReasonBadSignature},
	{ErrRevoked, ReasonRevoked},
	{ErrExpired, ReasonExpired},
	{ErrNotYetValid, ReasonExpired},
	{ErrUnknownExecution, ReasonUnknownExecution},
	{ErrReplay, ReasonReplay},
	{ErrNotOwner, ReasonNotOwner},
	{ErrRoleMayNotWrite, ReasonRoleMayNotWrite},
	{ErrNotMember, ReasonNotMember},
	{ErrMisplaced, ReasonMisplaced},
	{ErrFuture, ReasonFuture},
	{ErrWrongNetwork, ReasonWrongNetwork},
	{ErrMembershipMismatch, ReasonBadSignature},
	{ErrReservedKey, ReasonReservedKey},
	{schema.ErrAppendOnly, ReasonAppendOnly},
	{schema.ErrReactivateInPlace, ReasonReactivateInPlace},
	{schema.ErrNotFinished, ReasonNotFinished},
	{ErrMalformed, ReasonMalformed},
	{ErrUnsupportedVersion, ReasonMalformed},
	{schema.ErrMalformed, ReasonMalformed},
}

// ReasonOf maps a policy or schema error to its reason code
// (ReasonInvalid if none matches).
func ReasonOf(err error) string {
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return r.reason
		}
	}
	return ReasonInvalid
}

// Element is one value go-ds-crdt merged at a key: from delta block
// Block, at the delta's Priority.
type Element struct {
	Block    string
	Priority uint64
	Value    []byte
	Tomb     bool // a tombstone for this element has been merged
}

// Verdict is the decision on one element that is not accepted.
type Verdict struct {
	Parked bool
	Reason string
	Err    error
	Dep    string // parked: the key whose arrival decides again
	Writer string
	Serial Serial
	Seq    uint64
}

// Error makes a verdict the error of a refused write: its Err, which
// wraps the sentinel its Reason is named after.
func (v *Verdict) Error() string {
	if v.Err == nil {
		return v.Reason
	}
	return v.Err.Error()
}

// Unwrap is v.Err, so that errors.Is finds the sentinels.
func (v *Verdict) Unwrap() error { return v.Err }

// Lookups are what a decision reads besides the key's own elements.
type Lookups struct {
	Org   string
	Trust Trust
	Now   time.Time
	Revs  RevocationSet
	// Members returns memberships that verified (Verify) when they were
	// stored.
	Members func(Serial) (Membership, bool)
	// Execution returns the view's record at /executions/<id>, if any.
	Execution func(id string) (*schema.Record, bool)
	// DeletedAt returns the signing time of the view's deletion of key
	// (nil: none).
	DeletedAt func(key string) (time.Time, bool)
}

// Decision is the outcome for one key.
type Decision struct {
	Value    []byte              // the view's value; nil: absent
	Verdicts map[string]*Verdict // by block, elements not accepted
	Serials  []Serial            // memberships that signed elements here (for revocations)
}

// Decide is the rule for one key: which of the elements go-ds-crdt merged
// there count, and which value the view shows. It is a pure function of
// the elements and the lookups, so every node that holds the same deltas
// (and the same memberships and revocations) shows the same value,
// whatever order the deltas arrived in:
//
//   - reserved keys hold authority-signed memberships and revocations,
//     accepted only if they verify (Verify, VerifyRevocation), and
//     signed deletions; anything else there is ErrReservedKey;
//   - a record must be a signed record (DecodeSigned) whose writer holds a
//     membership known here (else parked until it arrives), valid and not
//     revoked when it signed (CheckSignedVerified: the membership was
//     verified when it was stored), and that may write it (MayWrite; a
//     result, log or bundle waiting for its execution is parked until the
//     execution arrives);
//   - a result needs its execution finished (CheckRecordRules; parked
//     until the execution changes);
//   - a replay: an element whose writer's sequence number is not above one
//     the same writer wrote at this key in an earlier delta (lower
//     priority) is refused (CheckReplay with lastSeen per writer and
//     key). An honest writer's later writes always come in later deltas;
//   - the versions of a key, in go-ds-crdt's order (priority, then bytes),
//     follow schema.CheckWrite against the earliest valid one: an
//     append-only record keeps its earliest valid version
//     (schema.ErrAppendOnly); an execution belongs to the VM of its
//     earliest valid version (ErrNotOwner) and keeps its immutable fields,
//     and once a version is final no later one returns to active or paused
//     (schema.ErrReactivateInPlace);
//   - deletions are signed too: go-ds-crdt's tombstones carry no
//     signature, so they are ignored; a record is deleted by a valid
//     signed deletion at DeletionKey(key) (MayWrite with Delete: only
//     central, only deletable kinds), which hides every version signed at
//     or before the deletion's time (a record written again later shows
//     again);
//   - of the accepted, undeleted elements the value is go-ds-crdt's
//     choice among them: highest priority, then greatest bytes.
func Decide(key string, elems []Element, l Lookups) Decision {
	d := Decision{Verdicts: map[string]*Verdict{}}
	if IsReserved(key) {
		decideReserved(key, elems, l, &d)
		return d
	}
	type cand struct {
		e   Element
		sr  SignedRecord
		rec schema.Record
	}
	var ok []cand
	for _, e := range elems {
		sr, m, rec, v, valid := signedElement(key, "record", e, l, &d)
		if !valid {
			continue
		}
		wc := WriteContext{Writer: m, Org: l.Org, Key: key, Record: rec}
		execID, isExec := ExecutionOf(rec)
		if isExec && rec.Kind != schema.KindExecutions {
			if x, found := l.Execution(execID); found {
				wc.Execution = x
			}
		}
		err := MayWrite(wc)
		if err == nil && wc.Execution != nil {
			err = CheckRecordRules(rec, wc.Execution)
		}
		if err != nil {
			v.Reason, v.Err = ReasonOf(err), err
			if errors.Is(err, ErrUnknownExecution) || errors.Is(err, schema.ErrNotFinished) {
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
		if err := CheckReplay(c.sr, last); err != nil {
			d.Verdicts[c.e.Block] = &Verdict{Reason: ReasonReplay, Err: fmt.Errorf("%s: %w", key, err),
				Writer: c.sr.Writer, Serial: c.sr.Membership, Seq: c.sr.Seq}
			continue
		}
		valid = append(valid, c)
	}
	// The versions, in go-ds-crdt's order: the earliest valid one fixes an
	// execution's VM and immutable fields and an append-only record's
	// content; a final execution stays final.
	if len(valid) > 1 && (valid[0].rec.Kind == schema.KindExecutions || valid[0].rec.Kind.AppendOnly()) {
		slices.SortFunc(valid, func(a, b cand) int {
			return cmp.Or(cmp.Compare(a.e.Priority, b.e.Priority), bytes.Compare(a.e.Value, b.e.Value))
		})
		earliest := valid[0]
		var final *schema.Record // the latest final execution kept
		kept := valid[:1:1]
		if isFinal(earliest.rec) {
			final = &earliest.rec
		}
		for _, c := range valid[1:] {
			var err error
			if c.rec.Kind == schema.KindExecutions {
				err = sameVM(key, earliest.rec, c.rec, c.sr.Writer)
			}
			if err == nil {
				_, err = schema.CheckWrite(&earliest.rec, c.rec)
			}
			if err == nil && final != nil {
				_, err = schema.CheckWrite(final, c.rec)
			}
			if err != nil {
				d.Verdicts[c.e.Block] = &Verdict{Reason: ReasonOf(err), Err: err, Writer: c.sr.Writer, Serial: c.sr.Membership, Seq: c.sr.Seq}
				continue
			}
			if isFinal(c.rec) {
				final = &c.rec
			}
			kept = append(kept, c)
		}
		valid = kept
	}
	delAt, deleted := time.Time{}, false
	if l.DeletedAt != nil {
		delAt, deleted = l.DeletedAt(key)
	}
	var best *Element
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

// CheckRecordRules applies the rules of rec that read another record,
// after MayWrite: a result needs its execution (exec, the stored record
// its body names; nil: none stored, ErrUnknownExecution) finished
// (schema.CheckResult: schema.ErrNotFinished). Other kinds pass. Decide
// runs it on every receiver; an open node's sender runs it alone.
func CheckRecordRules(rec schema.Record, exec *schema.Record) error {
	if rec.Kind != schema.KindResults {
		return nil
	}
	if exec == nil {
		id, _ := ExecutionOf(rec)
		return fmt.Errorf("%w: result %s in %s belongs to execution %q, which is not stored in %s: write the execution first, then its result",
			ErrUnknownExecution, rec.ID, rec.Org, id, rec.Org)
	}
	return schema.CheckResult(*exec, rec)
}

func isFinal(rec schema.Record) bool {
	if rec.Kind != schema.KindExecutions {
		return false
	}
	b, err := rec.DecodeBody()
	if err != nil {
		return false
	}
	e, ok := b.(schema.Execution)
	return ok && e.State.Final()
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
			ErrNotOwner, writer, key, ea.VM)
	}
	return nil
}

// decideReserved accepts authority-signed memberships and revocations at
// their reserved keys, and refuses anything else there.
func decideReserved(key string, elems []Element, l Lookups, d *Decision) {
	if strings.HasPrefix(key, DeletionsPrefix+"/") {
		decideDeletion(key, elems, l, d)
		return
	}
	var best *Element
	for i := range elems {
		e := &elems[i]
		if err := checkReserved(key, e.Value, l); err != nil {
			d.Verdicts[e.Block] = &Verdict{Reason: ReasonOf(err), Err: err}
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

func checkReserved(key string, value []byte, l Lookups) error {
	switch {
	case strings.HasPrefix(key, MembershipsPrefix+"/"):
		m, err := DecodeMembership(value)
		if err != nil {
			return err
		}
		// The signature is what counts here; validity at a record's
		// signing time is CheckSigned's.
		if err := Verify(m, l.Trust, m.NotBefore); err != nil {
			return err
		}
		if key != MembershipKey(m.Serial) {
			return fmt.Errorf("%w: membership %s stored at %s, not at %s", ErrMisplaced, m.Serial, key, MembershipKey(m.Serial))
		}
		if !m.Covers(l.Org) {
			return fmt.Errorf("%w: membership %s (%s) does not cover organisation %s", ErrNotMember, m.Serial, m.Peer, l.Org)
		}
		return nil
	case strings.HasPrefix(key, RevocationsPrefix+"/"):
		r, err := DecodeRevocation(value)
		if err != nil {
			return err
		}
		if err := VerifyRevocation(r, l.Trust); err != nil {
			return err
		}
		if key != RevocationKey(r) {
			return fmt.Errorf("%w: revocation of %s stored at %s, not at %s", ErrMisplaced, r.Peer, key, RevocationKey(r))
		}
		return nil
	}
	return fmt.Errorf("%w: %s is a reserved key; records live at /<kind>/<id>", ErrReservedKey, key)
}

// decideDeletion accepts signed deletions of the record at key minus
// DeletionsPrefix: a signed record of that record, by a writer whose
// membership may delete it (MayWrite with Delete). The view's value is
// the valid deletion signed last.
func decideDeletion(key string, elems []Element, l Lookups, d *Decision) {
	target := strings.TrimPrefix(key, DeletionsPrefix)
	var best *Element
	var bestAt time.Time
	for i := range elems {
		e := &elems[i]
		sr, m, rec, v, valid := signedElement(key, "deletion", *e, l, d)
		if !valid {
			continue
		}
		if rec.Key() != target || rec.Org != l.Org {
			v.Reason = ReasonMisplaced
			v.Err = fmt.Errorf("%w: a deletion of %s in %s stored at %s", ErrMisplaced, rec.Key(), rec.Org, key)
			d.Verdicts[e.Block] = v
			continue
		}
		if err := MayWrite(WriteContext{Writer: m, Org: l.Org, Key: target, Delete: true}); err != nil {
			v.Reason, v.Err = ReasonOf(err), err
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

// signedElement is what Decide and decideDeletion check first of every
// element: it is a signed record (what names it in the error); its
// writer's membership is known here (else it is parked until it arrives,
// unless its signature is already false: a forgery is refused now); it is
// valid and not revoked when it signed (CheckSignedVerified: memberships
// in l.Members were verified when they were stored); and it holds a
// record. It notes the membership in d.Serials. If the element fails, its
// verdict is set in d and valid is false; otherwise v is the element's
// verdict, filled with its writer, for the caller's later checks.
func signedElement(key, what string, e Element, l Lookups, d *Decision) (sr SignedRecord, m Membership, rec schema.Record, v *Verdict, valid bool) {
	v = &Verdict{}
	sr, err := DecodeSigned(e.Value)
	if err != nil {
		v.Reason, v.Err = ReasonOf(err), fmt.Errorf("%s: not a signed %s: %w", key, what, err)
		d.Verdicts[e.Block] = v
		return sr, m, rec, v, false
	}
	v.Writer, v.Serial, v.Seq = sr.Writer, sr.Membership, sr.Seq
	if !slices.Contains(d.Serials, sr.Membership) {
		d.Serials = append(d.Serials, sr.Membership)
	}
	m, known := l.Members(sr.Membership)
	if !known {
		if err := VerifySigned(sr); err != nil {
			v.Reason, v.Err = ReasonOf(err), err
		} else {
			v.Parked, v.Reason, v.Dep = true, ReasonUnknownMembership, MembershipKey(sr.Membership)
			v.Err = fmt.Errorf("membership %s of writer %s has not arrived here yet; decided again when it does", sr.Membership, sr.Writer)
		}
		d.Verdicts[e.Block] = v
		return sr, m, rec, v, false
	}
	if err := CheckSignedVerified(sr, m, l.Revs, l.Trust, l.Now); err != nil {
		v.Reason, v.Err = ReasonOf(err), err
		d.Verdicts[e.Block] = v
		return sr, m, rec, v, false
	}
	if rec, err = schema.Decode(sr.Record); err != nil {
		v.Reason, v.Err = ReasonOf(err), err
		d.Verdicts[e.Block] = v
		return sr, m, rec, v, false
	}
	return sr, m, rec, v, true
}
