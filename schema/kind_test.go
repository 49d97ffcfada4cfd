package schema_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/examnode/examnode/schema"
)

func TestKinds(t *testing.T) {
	tests := []struct {
		kind       schema.Kind
		name       string
		writer     schema.Role
		appendOnly bool
		deletable  bool
	}{
		{schema.KindTestCenters, "test-centers", schema.RoleCentral, false, true},
		{schema.KindAdministrators, "administrators", schema.RoleCentral, false, true},
		{schema.KindProctors, "proctors", schema.RoleCentral, false, true},
		{schema.KindTestTakers, "test-takers", schema.RoleCentral, false, true},
		{schema.KindEligibilities, "eligibilities", schema.RoleCentral, false, true},
		{schema.KindDeliveries, "deliveries", schema.RoleCentral, false, true},
		{schema.KindLTIConsumers, "lti-consumers", schema.RoleCentral, false, true},
		{schema.KindExecutions, "executions", schema.RoleVM, false, false},
		{schema.KindResults, "results", schema.RoleVM, true, false},
		{schema.KindResultLogs, "result-logs", schema.RoleVM, true, false},
		{schema.KindLTIUsers, "lti-users", schema.RoleVM, false, false},
		{schema.KindBundles, "bundles", schema.RoleVM, true, false},
		{schema.KindCustody, "custody", schema.RoleVM, true, false},
		{schema.KindBundleReceipts, "bundle-receipts", schema.RoleArchive, true, false},
		{schema.KindRetentionRecords, "retention-records", schema.RoleArchive, false, false},
	}
	all := schema.Kinds()
	if len(all) != len(tests) {
		t.Fatalf("Kinds() has %d kinds, want %d", len(all), len(tests))
	}
	for i, tt := range tests {
		if all[i] != tt.kind {
			t.Errorf("Kinds()[%d] = %s, want %s", i, all[i], tt.kind)
		}
		k, err := schema.ParseKind(tt.name)
		if err != nil || k != tt.kind {
			t.Errorf("ParseKind(%q) = %q, %v", tt.name, k, err)
		}
		if !k.Valid() || k.Writer() != tt.writer || k.AppendOnly() != tt.appendOnly || k.Deletable() != tt.deletable {
			t.Errorf("%s: valid %v writer %s appendOnly %v deletable %v; want %s %v %v",
				k, k.Valid(), k.Writer(), k.AppendOnly(), k.Deletable(), tt.writer, tt.appendOnly, tt.deletable)
		}
	}
	all[0] = "mutated"
	if schema.Kinds()[0] != schema.KindTestCenters {
		t.Error("Kinds() returns shared storage")
	}
}

func TestParseKindRefuses(t *testing.T) {
	for _, s := range []string{"", "Results", "result", "/results", "results ", "grades"} {
		_, err := schema.ParseKind(s)
		if !errors.Is(err, schema.ErrUnknownKind) {
			t.Errorf("ParseKind(%q) err = %v", s, err)
			continue
		}
		for _, k := range schema.Kinds() {
			if !strings.Contains(err.Error(), string(k)) {
				t.Errorf("ParseKind(%q) message %q does not list %s", s, err, k)
			}
		}
	}
	var unknown schema.Kind = "grades"
	if unknown.Valid() || unknown.Writer() != "" || unknown.AppendOnly() || unknown.Deletable() {
		t.Error("unknown kind has properties")
	}
}

func TestParseRole(t *testing.T) {
	for _, r := range schema.Roles() {
		if got, err := schema.ParseRole(string(r)); err != nil || got != r {
			t.Errorf("ParseRole(%q) = %q, %v", r, got, err)
		}
	}
	for _, s := range []string{"", "VM", "admin"} {
		if _, err := schema.ParseRole(s); !errors.Is(err, schema.ErrUnknownRole) {
			t.Errorf("ParseRole(%q) err = %v", s, err)
		}
	}
}

func TestCanWrite(t *testing.T) {
	for _, role := range schema.Roles() {
		for _, kind := range schema.Kinds() {
			err := schema.CanWrite(role, kind)
			if kind.Writer() == role {
				if err != nil {
					t.Errorf("CanWrite(%s, %s) = %v", role, kind, err)
				}
				continue
			}
			if !errors.Is(err, schema.ErrRoleMayNotWrite) {
				t.Errorf("CanWrite(%s, %s) = %v; want ErrRoleMayNotWrite", role, kind, err)
				continue
			}
			if want := "role " + string(role) + " may not write " + string(kind) + ": "; !strings.Contains(err.Error(), want) {
				t.Errorf("CanWrite(%s, %s) message %q lacks %q", role, kind, err, want)
			}
		}
	}
	err := schema.CanWrite(schema.RoleVM, schema.KindTestTakers)
	if want := "role vm may not write test-takers: central data is authoritative"; !strings.Contains(err.Error(), want) {
		t.Errorf("message %q lacks %q", err, want)
	}
	if err := schema.CanWrite("admin", schema.KindResults); !errors.Is(err, schema.ErrUnknownRole) {
		t.Errorf("unknown role: %v", err)
	}
	if err := schema.CanWrite(schema.RoleVM, "grades"); !errors.Is(err, schema.ErrUnknownKind) {
		t.Errorf("unknown kind: %v", err)
	}
}

func TestCanDelete(t *testing.T) {
	tests := []struct {
		role schema.Role
		kind schema.Kind
		want error
	}{
		{schema.RoleCentral, schema.KindTestTakers, nil},
		{schema.RoleCentral, schema.KindDeliveries, nil},
		{schema.RoleVM, schema.KindTestTakers, schema.ErrRoleMayNotWrite},
		{schema.RoleVM, schema.KindResults, schema.ErrNotDeletable},
		{schema.RoleVM, schema.KindExecutions, schema.ErrNotDeletable},
		{schema.RoleVM, schema.KindCustody, schema.ErrNotDeletable},
		{schema.RoleArchive, schema.KindRetentionRecords, schema.ErrNotDeletable},
		{schema.RoleArchive, schema.KindBundleReceipts, schema.ErrNotDeletable},
		{schema.RoleCentral, schema.KindResults, schema.ErrRoleMayNotWrite},
		{"x", schema.KindResults, schema.ErrUnknownRole},
	}
	for _, tt := range tests {
		err := schema.CanDelete(tt.role, tt.kind)
		if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
			t.Errorf("CanDelete(%s, %s) = %v; want %v", tt.role, tt.kind, err, tt.want)
		}
		if errors.Is(err, schema.ErrNotDeletable) && !strings.Contains(err.Error(), string(tt.kind)) {
			t.Errorf("message %q does not name %s", err, tt.kind)
		}
	}
}
