package policy

import (
	"fmt"
	"time"

	"github.com/examnode/examnode/schema"
)

// RetentionRule says how long the payloads of an organisation's result
// bundles are kept before retention deletes them (their metadata is kept
// for ever, with a retention record).
type RetentionRule struct {
	Org string
	// Period is how long after its creation a bundle's payload is kept;
	// 0 keeps it for ever.
	Period time.Duration
	// Locked, on central's rule, forbids nodes to shorten it.
	Locked bool
	// SetBy is the role of the node whose operator set the rule.
	SetBy schema.Role
}

// String names the rule for people and for RetentionRecord.Rule:
// "C1 keep 43800h0m0s locked by central".
func (r RetentionRule) String() string {
	keep := "keep forever"
	if r.Period > 0 {
		keep = "keep " + r.Period.String()
	}
	lock := ""
	if r.Locked {
		lock = " locked"
	}
	return fmt.Sprintf("%s %s%s by %s", r.Org, keep, lock, r.SetBy)
}

// Validate checks the organisation ID, that Period is not negative and
// that SetBy is a role (ErrInvalid).
func (r RetentionRule) Validate() error {
	if err := schema.ValidateOrgID(r.Org); err != nil {
		return fmt.Errorf("%w retention rule: %w", ErrInvalid, err)
	}
	if r.Period < 0 {
		return fmt.Errorf("%w retention rule for %s: period %s is negative; use 0 to keep for ever", ErrInvalid, r.Org, r.Period)
	}
	if _, err := schema.ParseRole(string(r.SetBy)); err != nil {
		return fmt.Errorf("%w retention rule for %s: %w", ErrInvalid, r.Org, err)
	}
	return nil
}

// shorter reports whether period a keeps data for less time than b (0 is
// for ever).
func shorter(a, b time.Duration) bool {
	switch {
	case a == 0:
		return false
	case b == 0:
		return true
	}
	return a < b
}

// EffectiveRetention is the rule a node applies to an organisation: the
// node's own rule (local) if it has one, else central's. central must be
// set by central (ErrInvalid). If central's rule is locked, a local rule
// that keeps payloads for less time is refused (ErrRetentionLocked); one
// that keeps them longer applies. The result keeps central's Locked.
func EffectiveRetention(central RetentionRule, local *RetentionRule) (RetentionRule, error) {
	if err := central.Validate(); err != nil {
		return RetentionRule{}, err
	}
	if central.SetBy != schema.RoleCentral {
		return RetentionRule{}, fmt.Errorf("%w: the organisation's retention rule for %s is set by %s; it must come from the central host",
			ErrInvalid, central.Org, central.SetBy)
	}
	if local == nil {
		return central, nil
	}
	if err := local.Validate(); err != nil {
		return RetentionRule{}, err
	}
	if local.Org != central.Org {
		return RetentionRule{}, fmt.Errorf("%w: the node's retention rule is for %s, central's for %s; compare rules of one organisation",
			ErrInvalid, local.Org, central.Org)
	}
	if central.Locked && shorter(local.Period, central.Period) {
		return RetentionRule{}, fmt.Errorf("%w: organisation %s keeps bundles %s, locked by the central host; this node's rule (%s) may not shorten it: remove it, or ask the central operator to change the rule",
			ErrRetentionLocked, central.Org, periodText(central.Period), periodText(local.Period))
	}
	eff := *local
	eff.Locked = central.Locked
	return eff, nil
}

func periodText(d time.Duration) string {
	if d == 0 {
		return "for ever"
	}
	return "for " + d.String()
}

// Expired reports whether a bundle created at bundleCreated is past rule's
// period at now, so its payload may be deleted. A rule of period 0 never
// expires anything.
func Expired(bundleCreated time.Time, rule RetentionRule, now time.Time) bool {
	return rule.Period > 0 && !now.Before(bundleCreated.Add(rule.Period))
}
