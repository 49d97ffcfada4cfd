package policy_test

import (
	"slices"
	"testing"
	"time"

	"github.com/examnode/examnode/policy"
	"github.com/examnode/examnode/schema"
)

func TestMayConnect(t *testing.T) {
	w := newWorld(t)
	tests := []struct {
		name string
		m    *policy.Membership
		now  time.Time
		want []error
		says string
	}{
		{name: "no membership", m: nil, now: t0, want: errs(policy.ErrNoMembership), says: "examnode grant"},
		{name: "valid", m: &w.mVM1, now: t0.Add(time.Hour)},
		{name: "expired", m: &w.mVM1, now: t0.Add(year), want: errs(policy.ErrExpired)},
		{name: "not yet valid", m: &w.mVM1, now: t0.Add(-time.Minute), want: errs(policy.ErrNotYetValid)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantErr(t, policy.MayConnect(tt.m, tt.now), tt.want, tt.says)
		})
	}
}

func TestMayAnnounceAndRead(t *testing.T) {
	w := newWorld(t)
	tests := []struct {
		name string
		m    policy.Membership
		org  string
		want []error
		says string
	}{
		{name: "vm in its organisation", m: w.mVM1, org: orgA},
		{name: "vm in another organisation", m: w.mVM1, org: orgB, want: errs(policy.ErrNotMember),
			says: "no membership for organisation C2"},
		{name: "vm in another organisation: the fix", m: w.mVM1, org: orgB, want: errs(policy.ErrNotMember),
			says: "if it belongs there, run `examnode grant --peer " + w.vm1.id + " --org C2 --role vm` on the central host"},
		{name: "central of all", m: w.mCentral, org: "any-org"},
		{name: "archive of a listed organisation", m: w.mArch, org: orgC},
		{name: "archive of an unlisted organisation", m: w.mArch, org: orgB, want: errs(policy.ErrNotMember), says: "--org C2 --role archive"},
		{name: "empty organisation", m: w.mVM1, org: "", want: errs(policy.ErrNotMember)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantErr(t, policy.MayAnnounce(tt.m, tt.org), tt.want, tt.says)
			wantErr(t, policy.MayRead(tt.m, tt.org), tt.want, tt.says)
		})
	}
}

func TestMayWrite(t *testing.T) {
	w := newWorld(t)
	vm1, vm2, arch := w.vm1.id, w.vm2.id, w.arch.id
	exec1 := execution(t, orgA, "e1", vm1, schema.ExecutionFinished)
	exec1Active := execution(t, orgA, "e1", vm1, schema.ExecutionActive)
	exec1ByVM2 := execution(t, orgA, "e1", vm2, schema.ExecutionActive)
	exec2 := execution(t, orgA, "e2", vm2, schema.ExecutionFinished)
	other := execution(t, orgA, "e9", vm1, schema.ExecutionFinished)
	tt1 := testTaker(t, orgA, "tt1")

	type tc struct {
		name   string
		writer policy.Membership
		org    string // default: the record's
		key    string // default: the record's
		rec    schema.Record
		delete bool
		exec   *schema.Record
		want   []error
		says   string
	}
	tests := []tc{
		// Central kinds.
		{name: "central writes a test-taker", writer: w.mCentral, rec: tt1},
		{name: "central writes in any organisation", writer: w.mCentral, rec: testTaker(t, "C77", "tt1")},
		{name: "central deletes a test-taker", writer: w.mCentral, rec: tt1, delete: true},
		{name: "vm writes a central kind", writer: w.mVM1, rec: tt1, want: errs(policy.ErrRoleMayNotWrite, schema.ErrRoleMayNotWrite),
			says: "central data is authoritative"},
		{name: "vm deletes a central kind", writer: w.mVM1, rec: tt1, delete: true, want: errs(policy.ErrRoleMayNotWrite, schema.ErrRoleMayNotWrite)},
		{name: "archive writes a central kind", writer: w.mArch, rec: tt1, want: errs(policy.ErrRoleMayNotWrite)},

		// Organisation membership.
		{name: "vm writes into another organisation", writer: w.mVM3, rec: execution(t, orgA, "e5", w.vm3.id, schema.ExecutionActive),
			want: errs(policy.ErrNotMember), says: "--org C1 --role vm"},
		{name: "archive writes into an organisation it does not archive", writer: w.mArch, rec: retention(t, orgB, "e1"), want: errs(policy.ErrNotMember)},

		// Executions.
		{name: "vm writes its execution", writer: w.mVM1, rec: exec1Active},
		{name: "vm finishes its execution", writer: w.mVM1, rec: exec1, exec: &exec1Active},
		{name: "vm writes an execution naming another vm", writer: w.mVM1, rec: exec1ByVM2, want: errs(policy.ErrNotOwner), says: "names VM " + vm2},
		{name: "vm takes over another vm's execution", writer: w.mVM2, rec: exec1ByVM2, exec: &exec1Active, want: errs(policy.ErrNotOwner), says: "runs on VM " + vm1},
		{name: "central writes an execution", writer: w.mCentral, rec: exec1, want: errs(policy.ErrRoleMayNotWrite, schema.ErrRoleMayNotWrite)},
		{name: "vm deletes its execution", writer: w.mVM1, rec: exec1, delete: true, want: errs(policy.ErrRoleMayNotWrite, schema.ErrNotDeletable)},
		{name: "central deletes an execution", writer: w.mCentral, rec: exec1, delete: true, want: errs(policy.ErrRoleMayNotWrite)},

		// Results, logs, bundles: the execution's VM only.
		{name: "vm writes the result of its execution", writer: w.mVM1, rec: result(t, orgA, "e1"), exec: &exec1},
		{name: "vm writes another vm's result", writer: w.mVM1, rec: result(t, orgA, "e2"), exec: &exec2, want: errs(policy.ErrNotOwner),
			says: "execution e2 runs on VM " + vm2 + "; a result is written by the VM that ran the execution"},
		{name: "result before its execution arrived", writer: w.mVM1, rec: result(t, orgA, "e1"), want: errs(policy.ErrUnknownExecution), says: "/executions/e1"},
		{name: "archive writes a result", writer: w.mArch, rec: result(t, orgA, "e1"), exec: &exec1, want: errs(policy.ErrRoleMayNotWrite, schema.ErrRoleMayNotWrite)},
		{name: "central writes a result", writer: w.mCentral, rec: result(t, orgA, "e1"), exec: &exec1, want: errs(policy.ErrRoleMayNotWrite)},
		{name: "lookup of the wrong execution", writer: w.mVM1, rec: result(t, orgA, "e1"), exec: &other, want: errs(policy.ErrInvalid), says: "/executions/e1"},
		{name: "lookup of a non-execution", writer: w.mVM1, rec: result(t, orgA, "e1"), exec: &tt1, want: errs(policy.ErrInvalid)},
		{name: "vm writes a log of its execution", writer: w.mVM1, rec: resultLog(t, orgA, "e1", 3), exec: &exec1Active},
		{name: "vm writes a log of another vm's execution", writer: w.mVM2, rec: resultLog(t, orgA, "e1", 3), exec: &exec1Active, want: errs(policy.ErrNotOwner)},
		{name: "vm writes the bundle of its execution", writer: w.mVM1, rec: bundle(t, orgA, "e1", vm1), exec: &exec1},
		{name: "vm records a bundle another vm signed", writer: w.mVM1, rec: bundle(t, orgA, "e1", vm2), exec: &exec1, want: errs(policy.ErrNotOwner), says: "signed by " + vm2},
		{name: "vm writes the bundle of another vm's execution", writer: w.mVM2, rec: bundle(t, orgA, "e1", vm2), exec: &exec1, want: errs(policy.ErrNotOwner)},

		// Custody, receipts, retention.
		{name: "vm records its custody", writer: w.mVM2, rec: custody(t, orgA, "e1", vm2)},
		{name: "vm records another's custody", writer: w.mVM2, rec: custody(t, orgA, "e1", vm1), want: errs(policy.ErrNotOwner)},
		{name: "archive writes its receipt", writer: w.mArch, rec: receipt(t, orgA, "e1", arch)},
		{name: "archive writes another archive's receipt", writer: w.mArch, rec: receipt(t, orgA, "e1", vm1), want: errs(policy.ErrNotOwner)},
		{name: "vm forges a receipt", writer: w.mVM1, rec: receipt(t, orgA, "e1", vm1), want: errs(policy.ErrRoleMayNotWrite)},
		{name: "archive writes a retention record", writer: w.mArch, rec: retention(t, orgA, "e1")},
		{name: "vm writes a retention record", writer: w.mVM1, rec: retention(t, orgA, "e1"), want: errs(policy.ErrRoleMayNotWrite)},
		{name: "vm writes an LTI user", writer: w.mVM1, rec: newRecord(t, orgA, "u1", schema.LTIUser{ConsumerKey: "k", UserID: "42", Roles: []string{"Learner"}})},

		// Where the record lands.
		{name: "record replayed into another organisation", writer: w.mCentral, rec: tt1, org: orgB, want: errs(policy.ErrMisplaced)},
		{name: "record replayed at another key", writer: w.mCentral, rec: tt1, key: "/test-takers/tt2", want: errs(policy.ErrMisplaced)},
		{name: "bad key", writer: w.mCentral, rec: tt1, key: "test-takers/tt1", want: errs(policy.ErrInvalid, schema.ErrBadKey)},
		{name: "bad organisation", writer: w.mCentral, rec: tt1, org: "a b", want: errs(policy.ErrInvalid)},
		{name: "record that does not validate", writer: w.mCentral, rec: schema.Record{Schema: 1, Kind: schema.KindTestTakers, ID: "tt1", Org: orgA, Body: []byte(`{"login":""}`)},
			want: errs(policy.ErrInvalid, schema.ErrInvalid)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wc := policy.WriteContext{Writer: tt.writer, Org: tt.rec.Org, Key: tt.rec.Key(), Record: tt.rec, Delete: tt.delete, Execution: tt.exec}
			if tt.org != "" {
				wc.Org = tt.org
			}
			if tt.key != "" {
				wc.Key = tt.key
			}
			if tt.delete {
				wc.Record = schema.Record{}
			}
			wantErr(t, policy.MayWrite(wc), tt.want, tt.says)
		})
	}
}

func TestExecutionOf(t *testing.T) {
	vm := newNode(t, 1).id
	tests := []struct {
		name   string
		rec    schema.Record
		id     string
		wantOK bool
	}{
		{name: "execution", rec: execution(t, orgA, "e1", vm, schema.ExecutionActive), id: "e1", wantOK: true},
		{name: "result", rec: result(t, orgA, "e7"), id: "e7", wantOK: true},
		{name: "result log", rec: resultLog(t, orgA, "e7", 1), id: "e7", wantOK: true},
		{name: "bundle", rec: bundle(t, orgA, "e7", vm), id: "e7", wantOK: true},
		{name: "custody", rec: custody(t, orgA, "e7", vm)},
		{name: "test-taker", rec: testTaker(t, orgA, "tt1")},
		{name: "invalid result", rec: schema.Record{Schema: 1, Kind: schema.KindResults, ID: "e1", Org: orgA, Body: []byte(`{}`)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, ok := policy.ExecutionOf(tt.rec)
			if id != tt.id || ok != tt.wantOK {
				t.Errorf("ExecutionOf = %q, %v; want %q, %v", id, ok, tt.id, tt.wantOK)
			}
		})
	}
}

func TestSealRecipients(t *testing.T) {
	w := newWorld(t)
	central2 := newNode(t, 6)
	mC2 := w.grant(t, central2.id, schema.RoleCentral, false, orgB)
	// The central host is also an archive of C1: one recipient.
	mCentralArch := w.grant(t, w.central.id, schema.RoleArchive, false, orgA)
	all := []policy.Membership{w.mVM1, w.mVM2, w.mVM3, w.mCentral, w.mArch, mC2, mCentralArch}
	tests := []struct {
		name    string
		org     string
		members []policy.Membership
		want    []string
	}{
		{name: "C1: central and its archive, not the vms", org: orgA, members: all, want: sorted(w.central.id, w.arch.id)},
		{name: "C2: central of all and central of C2", org: orgB, members: all, want: sorted(w.central.id, central2.id)},
		{name: "C3: central and archive", org: orgC, members: all, want: sorted(w.central.id, w.arch.id)},
		{name: "only vms", org: orgA, members: []policy.Membership{w.mVM1, w.mVM2}, want: nil},
		{name: "nobody", org: orgA, members: nil, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := policy.SealRecipients(tt.org, tt.members); !slices.Equal(got, tt.want) {
				t.Errorf("SealRecipients = %v; want %v", got, tt.want)
			}
		})
	}
}

func TestResultRecipients(t *testing.T) {
	w := newWorld(t)
	all := []policy.Membership{w.mVM1, w.mVM2, w.mVM3, w.mCentral, w.mArch}
	mCentralVM := w.grant(t, w.central.id, schema.RoleVM, false, orgA)
	tests := []struct {
		name    string
		org     string
		writer  string
		members []policy.Membership
		want    []string
	}{
		{name: "central, archive and the writer", org: orgA, writer: w.vm1.id, members: all, want: sorted(w.central.id, w.arch.id, w.vm1.id)},
		{name: "never another VM", org: orgA, writer: w.vm2.id, members: all, want: sorted(w.central.id, w.arch.id, w.vm2.id)},
		{name: "only central known", org: orgA, writer: w.vm1.id, members: []policy.Membership{w.mVM1, w.mCentral}, want: sorted(w.central.id, w.vm1.id)},
		{name: "only vms known: clear", org: orgA, writer: w.vm1.id, members: []policy.Membership{w.mVM1, w.mVM2}, want: nil},
		{name: "nobody known: clear", org: orgA, writer: w.vm1.id, members: nil, want: nil},
		{name: "the writer is the only central: clear", org: orgA, writer: w.central.id, members: []policy.Membership{w.mCentral, mCentralVM}, want: nil},
		{name: "the writer is central, an archive exists", org: orgA, writer: w.central.id, members: []policy.Membership{w.mCentral, w.mArch}, want: sorted(w.central.id, w.arch.id)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := policy.ResultRecipients(tt.org, tt.writer, tt.members); !slices.Equal(got, tt.want) {
				t.Errorf("ResultRecipients = %v; want %v", got, tt.want)
			}
		})
	}
}

func sorted(s ...string) []string { slices.Sort(s); return s }

func TestMayStoreProperty(t *testing.T) {
	tests := []struct {
		name string
		want []error
	}{
		{name: "login"},
		{name: "password_changed"},
		{name: "password", want: errs(policy.ErrForbiddenProperty, schema.ErrForbiddenProperty)},
		{name: "Private-Key", want: errs(policy.ErrForbiddenProperty)},
		{name: "APPKEY", want: errs(policy.ErrForbiddenProperty)},
		{name: "authority_key", want: errs(policy.ErrForbiddenProperty)},
		{name: "client_secret", want: errs(policy.ErrForbiddenProperty)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantErr(t, policy.MayStoreProperty(tt.name), tt.want)
		})
	}
}

func TestCheckPeerVersion(t *testing.T) {
	tests := []struct {
		name                  string
		peerProto, peerSchema int
		ourProto              int
		ourSchemas            []int
		want                  []error
		says                  string
	}{
		{name: "same", peerProto: 1, peerSchema: 1, ourProto: 1, ourSchemas: []int{1}},
		{name: "a schema we also read", peerProto: 1, peerSchema: 1, ourProto: 1, ourSchemas: []int{1, 2}},
		{name: "newer protocol", peerProto: 2, peerSchema: 1, ourProto: 1, ourSchemas: []int{1}, want: errs(policy.ErrUnsupportedVersion),
			says: "the peer speaks examnode protocol version 2, this node speaks 1; upgrade examnode on this node"},
		{name: "older protocol", peerProto: 1, peerSchema: 1, ourProto: 2, ourSchemas: []int{1}, want: errs(policy.ErrUnsupportedVersion),
			says: "version 1, this node speaks 2; upgrade examnode on the peer"},
		{name: "newer schema", peerProto: 1, peerSchema: 3, ourProto: 1, ourSchemas: []int{1, 2}, want: errs(policy.ErrUnsupportedVersion),
			says: "the peer writes record schema version 3, this node reads 1, 2; upgrade examnode on this node"},
		{name: "older schema", peerProto: 1, peerSchema: 1, ourProto: 1, ourSchemas: []int{2}, want: errs(policy.ErrUnsupportedVersion),
			says: "upgrade examnode on the peer"},
		{name: "we read nothing", peerProto: 1, peerSchema: 1, ourProto: 1, want: errs(policy.ErrUnsupportedVersion), says: "reads none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantErr(t, policy.CheckPeerVersion(tt.peerProto, tt.peerSchema, tt.ourProto, tt.ourSchemas), tt.want, tt.says)
		})
	}
}
