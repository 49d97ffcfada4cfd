// Package trusttest is a test fixture for the rule engine: an authority,
// a central node and three VMs with memberships, and typed records signed
// as any of them at a fixed time. The policy tests (rules as receivers
// apply them) and the crdt tests (a sender and a receiver deciding alike)
// share it. It imports testing: the binary must not import it.
package trusttest

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

// Network is the fixture's network name.
const Network = "test"

// T0 is the fixture's clock: memberships are valid from an hour before it
// for a year.
var T0 = time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC)

// Peer is a machine with a key and a membership.
type Peer struct {
	Priv crypto.PrivKey
	ID   string
	M    policy.Membership
	Seq  uint64 // the last sequence number Sign used
}

// World is an authority, a central node (all organisations) and three
// VMs: VM1 and VM2 of the world's organisation, VM3 of "C2".
type World struct {
	Org                    string
	Auth                   *policy.Authority
	Trust                  policy.Trust
	Central, VM1, VM2, VM3 *Peer
}

// NewWorld makes a world whose VM1 and VM2 belong to org. Keys are derived
// from fixed seeds, so peer IDs are the same in every run.
func NewWorld(t testing.TB, org string) *World {
	t.Helper()
	a, err := policy.GenerateAuthority()
	if err != nil {
		t.Fatal(err)
	}
	w := &World{Org: org, Auth: a, Trust: policy.Trust{Network: Network, Authority: a.Public(), ClockSkew: time.Minute}}
	mk := func(seed byte, role schema.Role, orgs ...string) *Peer {
		priv, _, err := crypto.GenerateEd25519Key(bytes.NewReader(bytes.Repeat([]byte{seed}, 32)))
		if err != nil {
			t.Fatal(err)
		}
		id, _ := peer.IDFromPrivateKey(priv)
		req := policy.GrantRequest{Network: Network, Peer: id.String(), Role: role, Orgs: orgs, AllOrgs: len(orgs) == 0,
			NotBefore: T0.Add(-time.Hour), Expires: T0.Add(365 * 24 * time.Hour)}
		m, err := a.Grant(req, T0.Add(-time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return &Peer{Priv: priv, ID: id.String(), M: m}
	}
	w.Central = mk(1, schema.RoleCentral)
	w.VM1 = mk(2, schema.RoleVM, org)
	w.VM2 = mk(3, schema.RoleVM, org)
	w.VM3 = mk(4, schema.RoleVM, "C2")
	return w
}

// Members finds the membership of a serial among the world's peers.
func (w *World) Members(s policy.Serial) (policy.Membership, bool) {
	for _, p := range []*Peer{w.Central, w.VM1, w.VM2, w.VM3} {
		if p.M.Serial == s {
			return p.M, true
		}
	}
	return policy.Membership{}, false
}

// Sign signs rec as p at T0+offset, with p's next sequence number.
func (p *Peer) Sign(t testing.TB, rec schema.Record, offset time.Duration) []byte {
	t.Helper()
	enc, err := schema.Encode(rec)
	if err != nil {
		t.Fatal(err)
	}
	p.Seq++
	sr, err := policy.Sign(p.Priv, p.M, enc, p.Seq, T0.Add(offset))
	if err != nil {
		t.Fatal(err)
	}
	return policy.EncodeSigned(sr)
}

// Record makes a record of the world's organisation.
func (w *World) Record(t testing.TB, id string, body schema.Body) schema.Record {
	t.Helper()
	r, err := schema.NewRecord(w.Org, id, body)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Delivery is delivery d1, open for ten hours from T0, one attempt.
func (w *World) Delivery(t testing.TB, label string) schema.Record {
	return w.Record(t, "d1", schema.Delivery{Label: label, Opens: T0, Closes: T0.Add(10 * time.Hour), MaxAttempts: 1,
		Package: schema.BlobRef{CID: "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi", SHA256: string(bytes.Repeat([]byte("ab"), 32)), Size: 10, MediaType: "application/zip"}})
}

// Execution is execution id of d1 by tt1 on vm, started at T0 (finished
// an hour later when state is "finished").
func (w *World) Execution(t testing.TB, id, vm string, state schema.ExecutionState) schema.Record {
	b := schema.Execution{Delivery: "d1", TestTaker: "tt1", State: state, Started: T0, VM: vm, Version: 1}
	if state == schema.ExecutionState("finished") {
		f := T0.Add(time.Hour)
		b.Finished = &f
	}
	return w.Record(t, id, b)
}

// Result is the result of execution exec with one SCORE variable.
func (w *World) Result(t testing.TB, exec string, score string) schema.Record {
	return w.Record(t, exec, schema.Result{Execution: exec, Finished: T0.Add(time.Hour), Variables: map[string]schema.ResultVariable{
		"SCORE": {BaseType: "float", Cardinality: "single", Value: json.RawMessage(score)}}})
}
