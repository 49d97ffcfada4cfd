package schema_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/examnode/examnode/schema"
)

const (
	org   = "centre-paris"
	peerA = "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo"
	peerB = "12D3KooWArchive0000000000000000000000000000000000001"
	cid   = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
	t0    = "2026-06-01T08:00:00Z"
	t1    = "2026-06-01T09:30:00Z"
	t2    = "2026-06-01T18:00:00Z"
)

var sha = strings.Repeat("ab", 32)

// fixture returns a valid ID and body (as a fresh JSON tree) for kind.
func fixture(kind schema.Kind) (string, map[string]any) {
	switch kind {
	case schema.KindTestCenters:
		return "paris", obj("label", "Paris Nord", "org_id", org)
	case schema.KindAdministrators:
		return "adm1", obj("login", "alice", "name", "Alice Martin", "email", "alice@example.org")
	case schema.KindProctors:
		return "p1", obj("login", "bob", "name", "Bob Durand", "test_centers", []any{"paris"})
	case schema.KindTestTakers:
		return "tt1", obj("login", "jdoe", "name", "Jane Doe", "email", "jane@example.org")
	case schema.KindEligibilities:
		return "el1", obj("test_center", "paris", "delivery", "d1", "test_takers", []any{"tt1", "tt2"}, "by_proctor", true)
	case schema.KindDeliveries:
		return "d1", obj("label", "Maths 2026", "opens", t0, "closes", t2,
			"package", obj("cid", cid, "sha256", sha, "size", 1024, "media_type", "application/zip"),
			"max_attempts", 1)
	case schema.KindLTIConsumers:
		return "moodle", obj("label", "Moodle", "key", "moodle-key")
	case schema.KindExecutions:
		return "e1", obj("delivery", "d1", "test_taker", "tt1", "state", "active", "started", t0, "vm", peerA, "version", 1)
	case schema.KindResults:
		return "e1", obj("execution", "e1", "finished", t1, "variables", obj(
			"SCORE", obj("base_type", "float", "cardinality", "single", "value", 7.5),
			"RESPONSE", obj("base_type", "identifier", "cardinality", "multiple", "value", []any{"A", "C"})))
	case schema.KindResultLogs:
		return schema.LogID("e1", 3), obj("execution", "e1", "seq", 3, "at", t1, "event", "item-response", "data", obj("item", "i1"))
	case schema.KindLTIUsers:
		return "u1", obj("consumer_key", "moodle-key", "user_id", "42", "roles", []any{"Learner"})
	case schema.KindBundles:
		return "e1", obj("execution", "e1", "sha256", sha, "size", 4096, "signer", peerA, "created", t1, "root", cid)
	case schema.KindCustody:
		return schema.CustodyID("e1", peerA), obj("bundle", "e1", "holder", peerA, "at", t1)
	case schema.KindBundleReceipts:
		return schema.ReceiptID("e1", peerB), obj("bundle", "e1", "sha256", sha, "archive", peerB, "at", t2)
	case schema.KindRetentionRecords:
		return "e1", obj("bundle", "e1", "rule", "keep-5y", "deleted_at", t2)
	}
	panic("no fixture for " + kind)
}

func obj(kv ...any) map[string]any {
	m := map[string]any{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

// set sets a dotted path in a tree; value del removes it.
func set(m map[string]any, path string, v any) {
	parts := strings.Split(path, ".")
	for _, p := range parts[:len(parts)-1] {
		m = m[p].(map[string]any)
	}
	if v == del {
		delete(m, parts[len(parts)-1])
		return
	}
	m[parts[len(parts)-1]] = v
}

type deleteMarker struct{}

var del = deleteMarker{}

func record(t testing.TB, kind schema.Kind, id string, body map[string]any) schema.Record {
	t.Helper()
	raw, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	return schema.Record{Schema: schema.CurrentVersion, Kind: kind, ID: id, Org: org, Body: raw}
}

// valid returns a valid record of kind, after applying mutations (path,
// value pairs) to its body.
func valid(t testing.TB, kind schema.Kind, kv ...any) schema.Record {
	t.Helper()
	id, body := fixture(kind)
	for i := 0; i < len(kv); i += 2 {
		set(body, kv[i].(string), kv[i+1])
	}
	return record(t, kind, id, body)
}

// wantValidation asserts err is a *ValidationError on field with rule,
// wrapping ErrInvalid (and sentinel, if not nil), whose message names the
// field.
func wantValidation(t *testing.T, err error, field, rule string, sentinel error) {
	t.Helper()
	var ve *schema.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("err = %v; want a *ValidationError on %s", err, field)
	}
	if !errors.Is(err, schema.ErrInvalid) {
		t.Errorf("err = %v; does not wrap ErrInvalid", err)
	}
	if sentinel != nil && !errors.Is(err, sentinel) {
		t.Errorf("err = %v; does not wrap %v", err, sentinel)
	}
	if ve.Field != field || ve.Rule != rule {
		t.Errorf("err = %v; field %q rule %q, want field %q rule %q", err, ve.Field, ve.Rule, field, rule)
	}
	if !strings.Contains(err.Error(), field) {
		t.Errorf("message %q does not name field %q", err, field)
	}
}

func mustTime(t testing.TB, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}
