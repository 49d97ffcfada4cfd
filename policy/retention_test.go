package policy_test

import (
	"testing"
	"time"

	"github.com/examnode/examnode/policy"
	"github.com/examnode/examnode/schema"
)

func TestEffectiveRetention(t *testing.T) {
	fiveYears := 5 * year
	central := func(period time.Duration, locked bool) policy.RetentionRule {
		return policy.RetentionRule{Org: orgA, Period: period, Locked: locked, SetBy: schema.RoleCentral}
	}
	local := func(period time.Duration) *policy.RetentionRule {
		return &policy.RetentionRule{Org: orgA, Period: period, SetBy: schema.RoleArchive}
	}
	tests := []struct {
		name    string
		central policy.RetentionRule
		local   *policy.RetentionRule
		want    policy.RetentionRule
		wantErr []error
		says    string
	}{
		{name: "no local rule", central: central(fiveYears, true), want: central(fiveYears, true)},
		{name: "unlocked, shortened", central: central(fiveYears, false), local: local(year),
			want: policy.RetentionRule{Org: orgA, Period: year, SetBy: schema.RoleArchive}},
		{name: "locked, lengthened", central: central(fiveYears, true), local: local(10 * year),
			want: policy.RetentionRule{Org: orgA, Period: 10 * year, Locked: true, SetBy: schema.RoleArchive}},
		{name: "locked, kept for ever locally", central: central(fiveYears, true), local: local(0),
			want: policy.RetentionRule{Org: orgA, Period: 0, Locked: true, SetBy: schema.RoleArchive}},
		{name: "locked, same period", central: central(fiveYears, true), local: local(fiveYears),
			want: policy.RetentionRule{Org: orgA, Period: fiveYears, Locked: true, SetBy: schema.RoleArchive}},
		{name: "locked, shortened", central: central(fiveYears, true), local: local(year), wantErr: errs(policy.ErrRetentionLocked),
			says: "locked by the central host"},
		{name: "locked for ever, shortened", central: central(0, true), local: local(10 * year), wantErr: errs(policy.ErrRetentionLocked), says: "for ever"},
		{name: "central rule not from central", central: policy.RetentionRule{Org: orgA, Period: year, SetBy: schema.RoleVM}, wantErr: errs(policy.ErrInvalid)},
		{name: "negative central period", central: central(-time.Hour, false), wantErr: errs(policy.ErrInvalid)},
		{name: "negative local period", central: central(year, false), local: local(-1), wantErr: errs(policy.ErrInvalid)},
		{name: "rules of two organisations", central: central(year, false), local: &policy.RetentionRule{Org: orgB, Period: year, SetBy: schema.RoleVM}, wantErr: errs(policy.ErrInvalid)},
		{name: "bad organisation", central: policy.RetentionRule{Org: "", SetBy: schema.RoleCentral}, wantErr: errs(policy.ErrInvalid, schema.ErrInvalid)},
		{name: "unknown role", central: central(year, false), local: &policy.RetentionRule{Org: orgA, Period: year, SetBy: "proctor"}, wantErr: errs(policy.ErrInvalid, schema.ErrUnknownRole)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := policy.EffectiveRetention(tt.central, tt.local)
			wantErr(t, err, tt.wantErr, tt.says)
			if err == nil && got != tt.want {
				t.Errorf("EffectiveRetention = %+v; want %+v", got, tt.want)
			}
		})
	}
}

func TestExpired(t *testing.T) {
	rule := policy.RetentionRule{Org: orgA, Period: year, SetBy: schema.RoleCentral}
	forever := policy.RetentionRule{Org: orgA, SetBy: schema.RoleCentral}
	tests := []struct {
		name string
		rule policy.RetentionRule
		now  time.Time
		want bool
	}{
		{name: "fresh", rule: rule, now: t0.Add(time.Hour), want: false},
		{name: "just before", rule: rule, now: t0.Add(year - time.Nanosecond), want: false},
		{name: "at the end of the period", rule: rule, now: t0.Add(year), want: true},
		{name: "long after", rule: rule, now: t0.Add(10 * year), want: true},
		{name: "kept for ever", rule: forever, now: t0.Add(100 * year), want: false},
		{name: "created in the future", rule: rule, now: t0.Add(-year), want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := policy.Expired(t0, tt.rule, tt.now); got != tt.want {
				t.Errorf("Expired = %v; want %v", got, tt.want)
			}
		})
	}
}

func TestRetentionRuleString(t *testing.T) {
	for rule, want := range map[policy.RetentionRule]string{
		{Org: orgA, Period: 48 * time.Hour, Locked: true, SetBy: schema.RoleCentral}: "C1 keep 48h0m0s locked by central",
		{Org: orgB, SetBy: schema.RoleArchive}:                                       "C2 keep forever by archive",
	} {
		if got := rule.String(); got != want {
			t.Errorf("String() = %q; want %q", got, want)
		}
	}
}
