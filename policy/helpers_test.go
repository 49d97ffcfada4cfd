package policy_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/examnode/examnode/policy"
	"github.com/examnode/examnode/schema"
)

const (
	network = "examnode"
	orgA    = "C1"
	orgB    = "C2"
	orgC    = "C3"
	sha     = "abababababababababababababababababababababababababababababababab"
	cid     = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
)

var (
	t0   = time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC)
	year = 365 * 24 * time.Hour
)

// node is a deterministic Ed25519 node identity.
type node struct {
	priv crypto.PrivKey
	id   string
}

func newNode(t testing.TB, seed byte) node {
	t.Helper()
	priv, _, err := crypto.GenerateEd25519Key(bytes.NewReader(bytes.Repeat([]byte{seed}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return node{priv, id.String()}
}

// world is a network with an authority, four nodes and their memberships,
// all valid from t0 for a year.
type world struct {
	auth                         *policy.Authority
	trust                        policy.Trust
	vm1, vm2, vm3, central, arch node
	// vm1 and vm2 in C1, vm3 in C2, central of every organisation,
	// archive of C1 and C3.
	mVM1, mVM2, mVM3, mCentral, mArch policy.Membership
}

func newWorld(t testing.TB) *world {
	t.Helper()
	auth, err := policy.GenerateAuthority()
	if err != nil {
		t.Fatal(err)
	}
	w := &world{
		auth:  auth,
		trust: policy.Trust{Network: network, Authority: auth.Public()},
		vm1:   newNode(t, 1), vm2: newNode(t, 2), vm3: newNode(t, 3),
		central: newNode(t, 4), arch: newNode(t, 5),
	}
	w.mVM1 = w.grant(t, w.vm1.id, schema.RoleVM, false, orgA)
	w.mVM2 = w.grant(t, w.vm2.id, schema.RoleVM, false, orgA)
	w.mVM3 = w.grant(t, w.vm3.id, schema.RoleVM, false, orgB)
	w.mCentral = w.grant(t, w.central.id, schema.RoleCentral, true)
	w.mArch = w.grant(t, w.arch.id, schema.RoleArchive, false, orgC, orgA)
	return w
}

func (w *world) grant(t testing.TB, p string, role schema.Role, all bool, orgs ...string) policy.Membership {
	t.Helper()
	m, err := w.auth.Grant(policy.GrantRequest{
		Network: network, Peer: p, Role: role, Orgs: orgs, AllOrgs: all, Expires: t0.Add(year),
	}, t0)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func (w *world) revoke(t testing.TB, m policy.Membership, serial policy.Serial, from time.Time) policy.Revocation {
	t.Helper()
	r, err := w.auth.Revoke(policy.RevokeRequest{Network: network, Peer: m.Peer, Serial: serial, From: from, Reason: "machine stolen"}, t0)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// wantErr asserts err wraps every sentinel in want (nil want: no error)
// and that its message contains every string in contains.
func wantErr(t *testing.T, err error, want []error, contains ...string) {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("err = %v; want nil", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("err = nil; want %v", want)
	}
	for _, s := range want {
		if !errors.Is(err, s) {
			t.Errorf("err = %v; does not wrap %v", err, s)
		}
	}
	for _, s := range contains {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("err = %v; does not say %q", err, s)
		}
	}
}

func errs(e ...error) []error { return e }

func newRecord(t testing.TB, org, id string, body schema.Body) schema.Record {
	t.Helper()
	r, err := schema.NewRecord(org, id, body)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func encode(t testing.TB, r schema.Record) []byte {
	t.Helper()
	b, err := schema.Encode(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func execution(t testing.TB, org, id, vm string, state schema.ExecutionState) schema.Record {
	t.Helper()
	e := schema.Execution{Delivery: "d1", TestTaker: "tt1", State: state, Started: t0, VM: vm, Version: 1}
	if state.Final() {
		f := t0.Add(time.Hour)
		e.Finished = &f
	}
	return newRecord(t, org, id, e)
}

func result(t testing.TB, org, exec string) schema.Record {
	return newRecord(t, org, exec, schema.Result{Execution: exec, Finished: t0.Add(time.Hour),
		Variables: map[string]schema.ResultVariable{"SCORE": {BaseType: "float", Cardinality: "single", Value: []byte("7.5")}}})
}

func resultLog(t testing.TB, org, exec string, seq uint64) schema.Record {
	return newRecord(t, org, schema.LogID(exec, seq), schema.ResultLog{Execution: exec, Seq: seq, At: t0, Event: "item-response"})
}

func bundle(t testing.TB, org, exec, signer string) schema.Record {
	return newRecord(t, org, exec, schema.BundleMeta{Execution: exec, SHA256: sha, Size: 4096, Signer: signer, Created: t0, Root: cid})
}

func custody(t testing.TB, org, bundle, holder string) schema.Record {
	return newRecord(t, org, schema.CustodyID(bundle, holder), schema.Custody{Bundle: bundle, Holder: holder, At: t0})
}

func receipt(t testing.TB, org, bundle, archive string) schema.Record {
	return newRecord(t, org, schema.ReceiptID(bundle, archive), schema.BundleReceipt{Bundle: bundle, SHA256: sha, Archive: archive, At: t0})
}

func retention(t testing.TB, org, bundle string) schema.Record {
	return newRecord(t, org, bundle, schema.RetentionRecord{Bundle: bundle, Rule: "C1 keep 5y", DeletedAt: t0})
}

func testTaker(t testing.TB, org, id string) schema.Record {
	return newRecord(t, org, id, schema.TestTaker{Login: "jdoe", Name: "Jane Doe"})
}
