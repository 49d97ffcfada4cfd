package schema

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
)

// Outcome is what a write does to the key it targets (see CheckWrite).
type Outcome int

const (
	// OutcomeRefused comes with an error: the write must not happen.
	OutcomeRefused Outcome = iota
	// OutcomeCreate: nothing is stored at the key yet.
	OutcomeCreate
	// OutcomeReplace: the record replaces a different one.
	OutcomeReplace
	// OutcomeNoOp: the identical record is already stored; write nothing
	// (a retry, or a bundle accepted twice).
	OutcomeNoOp
)

func (o Outcome) String() string {
	switch o {
	case OutcomeCreate:
		return "create"
	case OutcomeReplace:
		return "replace"
	case OutcomeNoOp:
		return "no-op"
	}
	return "refused"
}

// CheckWrite decides whether next may be written where prev (nil if
// nothing) is stored. It validates next; "identical" means equal canonical
// encodings. The rules:
//   - an identical record is OutcomeNoOp, for every kind;
//   - an append-only kind (Kind.AppendOnly) is never replaced by a
//     different record: ErrAppendOnly;
//   - a finished or terminated execution never returns to active or paused
//     in place: ErrReactivateInPlace, naming the version ID to write
//     instead; and an execution's delivery, test-taker, start, version and
//     previous never change (a *ValidationError, rule "immutable");
//   - anything else is OutcomeReplace.
//
// prev and next must be at the same key in the same organisation.
func CheckWrite(prev *Record, next Record) (Outcome, error) {
	nrec, nbody, nenc, err := canonicalize(next)
	if err != nil {
		return OutcomeRefused, err
	}
	if prev == nil {
		return OutcomeCreate, nil
	}
	if prev.Kind != next.Kind || prev.ID != next.ID || prev.Org != next.Org {
		return OutcomeRefused, fmt.Errorf("%w: CheckWrite compares records at one key, got %s in %s and %s in %s",
			ErrBadKey, prev.Key(), prev.Org, next.Key(), next.Org)
	}
	_, pbody, penc, err := canonicalize(*prev)
	if err != nil {
		return OutcomeRefused, fmt.Errorf("stored record %s in %s is invalid: %w", prev.Key(), prev.Org, err)
	}
	if bytes.Equal(penc, nenc) {
		return OutcomeNoOp, nil
	}
	if nrec.Kind.AppendOnly() {
		return OutcomeRefused, fmt.Errorf("%w: %s in %s already holds a different record and %s are never overwritten; a retry must send the identical record",
			ErrAppendOnly, nrec.Key(), nrec.Org, nrec.Kind)
	}
	if nrec.Kind == KindExecutions {
		if err := checkExecutionUpdate(nrec.ID, pbody.(Execution), nbody.(Execution)); err != nil {
			return OutcomeRefused, err
		}
	}
	return OutcomeReplace, nil
}

func checkExecutionUpdate(id string, prev, next Execution) error {
	if prev.State.Final() && !next.State.Final() {
		v := prev.Version + 1
		return fmt.Errorf("%w: execution %s is %s and cannot return to %s; reactivation opens a new version: write %s with version %d and previous %q",
			ErrReactivateInPlace, id, prev.State, next.State, Key(KindExecutions, ExecutionVersionID(id, v)), v, id)
	}
	immutable := func(field, was, now string) error {
		if was == now {
			return nil
		}
		return invalid(field, "immutable", fmt.Sprintf("cannot change from %q to %q on an existing execution; start a new execution instead", was, now))
	}
	return firstErr(
		immutable("body.delivery", prev.Delivery, next.Delivery),
		immutable("body.test_taker", prev.TestTaker, next.TestTaker),
		immutable("body.started", prev.Started.Format(timeLayout), next.Started.Format(timeLayout)),
		immutable("body.version", fmt.Sprint(prev.Version), fmt.Sprint(next.Version)),
		immutable("body.previous", prev.Previous, next.Previous),
	)
}

const timeLayout = "2006-01-02T15:04:05.999999999Z07:00"

// CheckResult checks that result may be stored for exec: both valid, in one
// organisation, result.execution naming exec (ErrExecutionMismatch), and
// exec finished (ErrNotFinished; a terminated execution gets no result).
func CheckResult(exec Record, result Record) error {
	if exec.Kind != KindExecutions || result.Kind != KindResults {
		return fmt.Errorf("%w: CheckResult takes an executions record and a results record, got %s and %s",
			ErrInvalid, exec.Kind, result.Kind)
	}
	eb, err := exec.DecodeBody()
	if err != nil {
		return err
	}
	rb, err := result.DecodeBody()
	if err != nil {
		return err
	}
	e, r := eb.(Execution), rb.(Result)
	switch {
	case exec.Org != result.Org:
		return fmt.Errorf("%w: result %s is in organisation %s but execution %s is in %s; a result is stored with its execution",
			ErrExecutionMismatch, result.ID, result.Org, exec.ID, exec.Org)
	case r.Execution != exec.ID:
		return fmt.Errorf("%w: result %s names execution %q, not %q; write the result at %s",
			ErrExecutionMismatch, result.ID, r.Execution, exec.ID, Key(KindResults, exec.ID))
	case e.State != ExecutionFinished:
		return fmt.Errorf("%w: execution %s is %s; only a finished execution gets a result: finish it first",
			ErrNotFinished, exec.ID, e.State)
	}
	return nil
}

// CheckEligible returns nil if one of eligibilities (records of kind
// eligibilities; others, and those of other organisations, are ignored)
// in org names testTaker for delivery, else an error wrapping
// ErrNotEligible. Invalid eligibility records are skipped and their errors
// joined to the refusal. It says nothing about ByProctor: the caller
// enforces proctor authorisation.
func CheckEligible(org, testTaker, delivery string, eligibilities []Record) error {
	var bad []error
	for _, rec := range eligibilities {
		if rec.Kind != KindEligibilities || rec.Org != org {
			continue
		}
		b, err := rec.DecodeBody()
		if err != nil {
			bad = append(bad, fmt.Errorf("eligibility %s: %w", rec.ID, err))
			continue
		}
		el := b.(Eligibility)
		if el.Delivery == delivery && slices.Contains(el.TestTakers, testTaker) {
			return nil
		}
	}
	err := fmt.Errorf("%w: test-taker %q has no eligibility for delivery %q in organisation %q; ask the central operator to add one",
		ErrNotEligible, testTaker, delivery, org)
	return errors.Join(append([]error{err}, bad...)...)
}
