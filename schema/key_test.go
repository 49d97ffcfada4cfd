package schema_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/examnode/examnode/schema"
)

func TestKeyRoundTrip(t *testing.T) {
	for _, k := range schema.Kinds() {
		for _, id := range []string{"a", "e1.v2", "A-Z_a.z-0.9", strings.Repeat("x", 128), "..."} {
			key := schema.Key(k, id)
			gk, gid, err := schema.ParseKey(key)
			if err != nil || gk != k || gid != id {
				t.Errorf("ParseKey(%q) = %q, %q, %v", key, gk, gid, err)
			}
		}
	}
	if got := schema.Key(schema.KindResults, "e1"); got != "/results/e1" {
		t.Errorf("Key = %q", got)
	}
}

func TestParseKeyRefuses(t *testing.T) {
	tests := []struct {
		key  string
		also error
	}{
		{"", nil},
		{"results/e1", nil},
		{"/results", nil},
		{"/results/", schema.ErrInvalid},
		{"/nope/e1", schema.ErrUnknownKind},
		{"//e1", schema.ErrUnknownKind},
		{"/results/a/b", schema.ErrInvalid},
		{"/results/..", schema.ErrInvalid},
		{"/results/a b", schema.ErrInvalid},
		{"/results/" + strings.Repeat("x", 129), schema.ErrInvalid},
	}
	for _, tt := range tests {
		_, _, err := schema.ParseKey(tt.key)
		if !errors.Is(err, schema.ErrBadKey) || tt.also != nil && !errors.Is(err, tt.also) {
			t.Errorf("ParseKey(%q) err = %v", tt.key, err)
		}
	}
}

func TestValidateIDs(t *testing.T) {
	tests := []struct {
		id, rule string // rule "" means valid
	}{
		{"a", ""}, {"tt-0042", ""}, {"e1.v2", ""}, {"A_b.C-d", ""}, {"...", ""}, {".a", ""},
		{strings.Repeat("x", 64), ""},
		{"", "required"}, {".", "reserved"}, {"..", "reserved"},
		{"a/b", "charset"}, {"a b", "charset"}, {"é", "charset"}, {"a:b", "charset"}, {"a\x00", "charset"},
	}
	for _, tt := range tests {
		for _, v := range []struct {
			field string
			fn    func(string) error
		}{{"id", schema.ValidateID}, {"org", schema.ValidateOrgID}} {
			err := v.fn(tt.id)
			if tt.rule == "" {
				if err != nil {
					t.Errorf("%s %q: %v", v.field, tt.id, err)
				}
				continue
			}
			var ve *schema.ValidationError
			if !errors.As(err, &ve) || ve.Field != v.field || ve.Rule != tt.rule || !errors.Is(err, schema.ErrInvalid) {
				t.Errorf("%s %q: err = %v; want rule %s", v.field, tt.id, err, tt.rule)
			}
		}
	}
	if err := schema.ValidateID(strings.Repeat("x", 128)); err != nil {
		t.Errorf("128-char ID: %v", err)
	}
	if err := schema.ValidateID(strings.Repeat("x", 129)); err == nil {
		t.Error("129-char ID accepted")
	}
	if err := schema.ValidateOrgID(strings.Repeat("x", 65)); err == nil || !strings.Contains(err.Error(), "org") {
		t.Errorf("65-char org: %v", err)
	}
}

func TestIDHelpers(t *testing.T) {
	if got := schema.LogID("e1", 3); got != "e1.00000000000000000003" {
		t.Errorf("LogID = %q", got)
	}
	if got := schema.LogID("e1", 1<<64-1); got != "e1.18446744073709551615" {
		t.Errorf("LogID(max) = %q", got)
	}
	if a, b := schema.LogID("e", 9), schema.LogID("e", 10); a >= b {
		t.Errorf("LogID does not sort: %q >= %q", a, b)
	}
	if got := schema.CustodyID("e1", peerA); got != "e1."+peerA {
		t.Errorf("CustodyID = %q", got)
	}
	if got := schema.ReceiptID("e1", peerB); got != "e1."+peerB {
		t.Errorf("ReceiptID = %q", got)
	}
	for _, tt := range []struct {
		id      string
		version int
		want    string
	}{
		{"e1", 1, "e1"}, {"e1", 0, "e1"}, {"e1", 2, "e1.v2"}, {"e1", 12, "e1.v12"},
		{"e1.v2", 3, "e1.v3"}, {"e1.v2", 1, "e1"}, {"e1.v1", 2, "e1.v1.v2"},
	} {
		if got := schema.ExecutionVersionID(tt.id, tt.version); got != tt.want {
			t.Errorf("ExecutionVersionID(%q, %d) = %q, want %q", tt.id, tt.version, got, tt.want)
		}
	}
	for _, tt := range []struct {
		id      string
		base    string
		version int
	}{
		{"e1", "e1", 1}, {"e1.v2", "e1", 2}, {"e1.v10", "e1", 10}, {"a.v2.v3", "a.v2", 3},
		{"e1.v1", "e1.v1", 1}, {"e1.v0", "e1.v0", 1}, {"e1.v02", "e1.v02", 1}, {"e1.vx", "e1.vx", 1},
		{"e1.v", "e1.v", 1}, {".v2", ".v2", 1}, {"e1.v1234567890", "e1.v1234567890", 1},
	} {
		base, v := schema.SplitExecutionVersionID(tt.id)
		if base != tt.base || v != tt.version {
			t.Errorf("SplitExecutionVersionID(%q) = %q, %d; want %q, %d", tt.id, base, v, tt.base, tt.version)
		}
	}
}
