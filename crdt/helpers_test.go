package crdt

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/examnode/examnode/policy"
	"github.com/examnode/examnode/schema"
)

const testOrg = "C1"

var tw0 = time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC)

type testPeer struct {
	priv crypto.PrivKey
	id   string
	m    policy.Membership
	seq  uint64
}

// trustWorld is an authority, a central node and three VMs (vm1, vm2 of
// C1; vm3 of C2), memberships valid from tw0 for a year.
type trustWorld struct {
	auth                   *policy.Authority
	trust                  policy.Trust
	central, vm1, vm2, vm3 *testPeer
}

func newTrustWorld(t testing.TB) *trustWorld {
	t.Helper()
	a, err := policy.GenerateAuthority()
	if err != nil {
		t.Fatal(err)
	}
	w := &trustWorld{auth: a, trust: policy.Trust{Network: "test", Authority: a.Public(), ClockSkew: time.Minute}}
	mk := func(seed byte, role schema.Role, orgs ...string) *testPeer {
		priv, _, err := crypto.GenerateEd25519Key(bytes.NewReader(bytes.Repeat([]byte{seed}, 32)))
		if err != nil {
			t.Fatal(err)
		}
		id, _ := peer.IDFromPrivateKey(priv)
		req := policy.GrantRequest{Network: "test", Peer: id.String(), Role: role, Orgs: orgs, AllOrgs: len(orgs) == 0,
			NotBefore: tw0.Add(-time.Hour), Expires: tw0.Add(365 * 24 * time.Hour)}
		m, err := a.Grant(req, tw0.Add(-time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return &testPeer{priv: priv, id: id.String(), m: m}
	}
	w.central = mk(1, schema.RoleCentral)
	w.vm1 = mk(2, schema.RoleVM, testOrg)
	w.vm2 = mk(3, schema.RoleVM, testOrg)
	w.vm3 = mk(4, schema.RoleVM, "C2")
	return w
}

func (w *trustWorld) members(s policy.Serial) (policy.Membership, bool) {
	for _, p := range []*testPeer{w.central, w.vm1, w.vm2, w.vm3} {
		if p.m.Serial == s {
			return p.m, true
		}
	}
	return policy.Membership{}, false
}

// sign signs rec as p at tw0+offset, with p's next sequence number.
func (p *testPeer) sign(t testing.TB, rec schema.Record, offset time.Duration) []byte {
	t.Helper()
	enc, err := schema.Encode(rec)
	if err != nil {
		t.Fatal(err)
	}
	p.seq++
	sr, err := policy.Sign(p.priv, p.m, enc, p.seq, tw0.Add(offset))
	if err != nil {
		t.Fatal(err)
	}
	return policy.EncodeSigned(sr)
}

func mustRecord(t testing.TB, id string, body schema.Body) schema.Record {
	t.Helper()
	r, err := schema.NewRecord(testOrg, id, body)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func delivery(t testing.TB, label string) schema.Record {
	return mustRecord(t, "d1", schema.Delivery{Label: label, Opens: tw0, Closes: tw0.Add(10 * time.Hour), MaxAttempts: 1,
		Package: schema.BlobRef{CID: "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi", SHA256: string(bytes.Repeat([]byte("ab"), 32)), Size: 10, MediaType: "application/zip"}})
}

func execution(t testing.TB, id, vm string, state schema.ExecutionState) schema.Record {
	b := schema.Execution{Delivery: "d1", TestTaker: "tt1", State: state, Started: tw0, VM: vm, Version: 1}
	if state == schema.ExecutionState("finished") {
		f := tw0.Add(time.Hour)
		b.Finished = &f
	}
	return mustRecord(t, id, b)
}

func result(t testing.TB, exec string, score string) schema.Record {
	return mustRecord(t, exec, schema.Result{Execution: exec, Finished: tw0.Add(time.Hour), Variables: map[string]schema.ResultVariable{
		"SCORE": {BaseType: "float", Cardinality: "single", Value: json.RawMessage(score)}}})
}

type policyRevocation = policy.Revocation

func revokeRequest(p *testPeer, from time.Time) policy.RevokeRequest {
	return policy.RevokeRequest{Network: "test", Peer: p.id, Serial: p.m.Serial, From: from}
}
