package schema_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/examnode/examnode/schema"
)

func TestCheckWrite(t *testing.T) {
	ptr := func(r schema.Record) *schema.Record { return &r }
	exec := func(id string, kv ...any) schema.Record {
		_, body := fixture(schema.KindExecutions)
		for i := 0; i < len(kv); i += 2 {
			set(body, kv[i].(string), kv[i+1])
		}
		return record(t, schema.KindExecutions, id, body)
	}
	finished := []any{"state", "finished", "finished", t1}
	tests := []struct {
		name     string
		prev     *schema.Record
		next     schema.Record
		want     schema.Outcome
		sentinel error
		inMsg    string
	}{
		{"create", nil, valid(t, schema.KindResults), schema.OutcomeCreate, nil, ""},
		{"create invalid", nil, valid(t, schema.KindResults, "finished", del), schema.OutcomeRefused, schema.ErrInvalid, "body.finished"},
		{"replace central", ptr(valid(t, schema.KindTestTakers)), valid(t, schema.KindTestTakers, "name", "Jane Smith"), schema.OutcomeReplace, nil, ""},
		{"identical central", ptr(valid(t, schema.KindTestTakers)), valid(t, schema.KindTestTakers), schema.OutcomeNoOp, nil, ""},
		{"identical result", ptr(valid(t, schema.KindResults)), valid(t, schema.KindResults), schema.OutcomeNoOp, nil, ""},
		{"identical bundle, other spelling", ptr(valid(t, schema.KindBundles)), valid(t, schema.KindBundles, "created", "2026-06-01T11:30:00+02:00"), schema.OutcomeNoOp, nil, ""},
		{"different result", ptr(valid(t, schema.KindResults)), valid(t, schema.KindResults, "variables.SCORE.value", 9), schema.OutcomeRefused, schema.ErrAppendOnly, "results/e1"},
		{"different log", ptr(valid(t, schema.KindResultLogs)), valid(t, schema.KindResultLogs, "event", "other"), schema.OutcomeRefused, schema.ErrAppendOnly, "never overwritten"},
		{"different bundle", ptr(valid(t, schema.KindBundles)), valid(t, schema.KindBundles, "size", 5000), schema.OutcomeRefused, schema.ErrAppendOnly, "bundles"},
		{"different custody", ptr(valid(t, schema.KindCustody)), valid(t, schema.KindCustody, "at", t2), schema.OutcomeRefused, schema.ErrAppendOnly, "custody"},
		{"different receipt", ptr(valid(t, schema.KindBundleReceipts)), valid(t, schema.KindBundleReceipts, "at", t1), schema.OutcomeRefused, schema.ErrAppendOnly, "bundle-receipts"},
		{"retention replace", ptr(valid(t, schema.KindRetentionRecords)), valid(t, schema.KindRetentionRecords, "rule", "gdpr"), schema.OutcomeReplace, nil, ""},
		{"active to paused", ptr(exec("e1")), exec("e1", "state", "paused"), schema.OutcomeReplace, nil, ""},
		{"paused to active", ptr(exec("e1", "state", "paused")), exec("e1"), schema.OutcomeReplace, nil, ""},
		{"active to finished", ptr(exec("e1")), exec("e1", finished...), schema.OutcomeReplace, nil, ""},
		{"resume on another VM", ptr(exec("e1", "state", "paused")), exec("e1", "vm", peerB), schema.OutcomeReplace, nil, ""},
		{"finished to terminated", ptr(exec("e1", finished...)), exec("e1", "state", "terminated", "finished", t1), schema.OutcomeReplace, nil, ""},
		{"finished to active", ptr(exec("e1", finished...)), exec("e1"), schema.OutcomeRefused, schema.ErrReactivateInPlace,
			`write /executions/e1.v2 with version 2 and previous "e1"`},
		{"terminated to paused", ptr(exec("e1", "state", "terminated", "finished", t1)), exec("e1", "state", "paused"), schema.OutcomeRefused, schema.ErrReactivateInPlace, "e1.v2"},
		{"version 2 finished to active", ptr(exec("e1.v2", "version", 2, "previous", "e1", "state", "finished", "finished", t1)),
			exec("e1.v2", "version", 2, "previous", "e1"), schema.OutcomeRefused, schema.ErrReactivateInPlace, `write /executions/e1.v3 with version 3 and previous "e1.v2"`},
		{"delivery changed", ptr(exec("e1")), exec("e1", "delivery", "d2"), schema.OutcomeRefused, schema.ErrInvalid, "body.delivery"},
		{"test-taker changed", ptr(exec("e1")), exec("e1", "test_taker", "tt2"), schema.OutcomeRefused, schema.ErrInvalid, "body.test_taker"},
		{"start changed", ptr(exec("e1")), exec("e1", "started", t1), schema.OutcomeRefused, schema.ErrInvalid, "body.started"},
		{"different key", ptr(valid(t, schema.KindTestTakers)), record(t, schema.KindTestTakers, "tt2", must(fixture(schema.KindTestTakers))), schema.OutcomeRefused, schema.ErrBadKey, "/test-takers/tt2"},
		{"invalid stored", ptr(valid(t, schema.KindTestTakers, "email", "bad")), valid(t, schema.KindTestTakers), schema.OutcomeRefused, schema.ErrInvalid, "stored record"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := schema.CheckWrite(tt.prev, tt.next)
			if got != tt.want {
				t.Errorf("outcome = %s, want %s (err %v)", got, tt.want, err)
			}
			if tt.sentinel == nil {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if !errors.Is(err, tt.sentinel) {
				t.Fatalf("err = %v; want %v", err, tt.sentinel)
			}
			if !strings.Contains(err.Error(), tt.inMsg) {
				t.Errorf("message %q lacks %q", err, tt.inMsg)
			}
		})
	}
	for o, s := range map[schema.Outcome]string{schema.OutcomeRefused: "refused", schema.OutcomeCreate: "create", schema.OutcomeReplace: "replace", schema.OutcomeNoOp: "no-op"} {
		if o.String() != s {
			t.Errorf("%d.String() = %q", o, o.String())
		}
	}
}

func must(_ string, body map[string]any) map[string]any { return body }

func TestCheckResult(t *testing.T) {
	finished := valid(t, schema.KindExecutions, "state", "finished", "finished", t1)
	result := valid(t, schema.KindResults)
	otherOrg := result
	otherOrg.Org = "centre-lyon"
	_, rb := fixture(schema.KindResults)
	set(rb, "execution", "e2")
	forE2 := record(t, schema.KindResults, "e2", rb)
	tests := []struct {
		name     string
		exec     schema.Record
		result   schema.Record
		sentinel error
		inMsg    string
	}{
		{"finished", finished, result, nil, ""},
		{"active", valid(t, schema.KindExecutions), result, schema.ErrNotFinished, "execution e1 is active"},
		{"paused", valid(t, schema.KindExecutions, "state", "paused"), result, schema.ErrNotFinished, "finish it first"},
		{"terminated", valid(t, schema.KindExecutions, "state", "terminated", "finished", t1), result, schema.ErrNotFinished, "terminated"},
		{"other execution", finished, forE2, schema.ErrExecutionMismatch, `names execution "e2", not "e1"`},
		{"other org", finished, otherOrg, schema.ErrExecutionMismatch, "centre-lyon"},
		{"wrong kinds", result, finished, schema.ErrInvalid, "CheckResult"},
		{"invalid result", finished, valid(t, schema.KindResults, "finished", del), schema.ErrInvalid, "body.finished"},
		{"invalid execution", valid(t, schema.KindExecutions, "state", "finished"), result, schema.ErrInvalid, "body.finished"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := schema.CheckResult(tt.exec, tt.result)
			if tt.sentinel == nil {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if !errors.Is(err, tt.sentinel) || !strings.Contains(err.Error(), tt.inMsg) {
				t.Fatalf("err = %v; want %v containing %q", err, tt.sentinel, tt.inMsg)
			}
		})
	}
}

func TestCheckEligible(t *testing.T) {
	el := valid(t, schema.KindEligibilities) // tt1, tt2 for d1 in org
	elsewhere := el
	elsewhere.Org = "centre-lyon"
	notEl := valid(t, schema.KindTestTakers)
	broken := valid(t, schema.KindEligibilities, "delivery", "bad id")
	d2 := valid(t, schema.KindEligibilities, "delivery", "d2", "test_takers", []any{"tt3"})
	tests := []struct {
		name                     string
		org, testTaker, delivery string
		els                      []schema.Record
		sentinels                []error
	}{
		{"eligible", org, "tt1", "d1", []schema.Record{el}, nil},
		{"second taker", org, "tt2", "d1", []schema.Record{notEl, d2, el}, nil},
		{"other delivery", org, "tt3", "d2", []schema.Record{el, d2}, nil},
		{"not listed", org, "tt3", "d1", []schema.Record{el, d2}, []error{schema.ErrNotEligible}},
		{"wrong delivery", org, "tt1", "d2", []schema.Record{el, d2}, []error{schema.ErrNotEligible}},
		{"other organisation", "centre-lyon", "tt1", "d1", []schema.Record{el}, []error{schema.ErrNotEligible}},
		{"eligibility elsewhere only", org, "tt1", "d1", []schema.Record{elsewhere}, []error{schema.ErrNotEligible}},
		{"no eligibilities", org, "tt1", "d1", nil, []error{schema.ErrNotEligible}},
		{"other kinds ignored", org, "tt1", "d1", []schema.Record{notEl}, []error{schema.ErrNotEligible}},
		{"broken record reported", org, "tt1", "d1", []schema.Record{broken}, []error{schema.ErrNotEligible, schema.ErrInvalid}},
		{"broken record skipped", org, "tt1", "d1", []schema.Record{broken, el}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := schema.CheckEligible(tt.org, tt.testTaker, tt.delivery, tt.els)
			if len(tt.sentinels) == 0 {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				return
			}
			for _, s := range tt.sentinels {
				if !errors.Is(err, s) {
					t.Errorf("err = %v; want %v", err, s)
				}
			}
			for _, s := range []string{tt.testTaker, tt.delivery, tt.org} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("message %q does not name %q", err, s)
				}
			}
		})
	}
}
