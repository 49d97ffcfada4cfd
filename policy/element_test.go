package policy_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/examnode/examnode/internal/trusttest"
	"github.com/examnode/examnode/policy"
	"github.com/examnode/examnode/schema"
)

const dOrg = orgA

var tw0 = trusttest.T0

// The rule engine's fixture (internal/trusttest), shared with crdt's
// tests: an authority, central, vm1 and vm2 of dOrg, vm3 of C2.
type (
	dPeer  = trusttest.Peer
	dWorld = trusttest.World
)

func newDWorld(t testing.TB) *dWorld { return trusttest.NewWorld(t, dOrg) }

var fixture = &trusttest.World{Org: dOrg}

func dRecord(t testing.TB, id string, body schema.Body) schema.Record {
	return fixture.Record(t, id, body)
}
func dDelivery(t testing.TB, label string) schema.Record { return fixture.Delivery(t, label) }
func dExecution(t testing.TB, id, vm string, state schema.ExecutionState) schema.Record {
	return fixture.Execution(t, id, vm, state)
}
func dResult(t testing.TB, exec string, score string) schema.Record {
	return fixture.Result(t, exec, score)
}

func TestDecide(t *testing.T) {
	w := newDWorld(t)
	c, v1, v2 := w.Central, w.VM1, w.VM2
	d1 := c.Sign(t, dDelivery(t, "Maths"), 0)
	d1b := c.Sign(t, dDelivery(t, "Maths, room 2"), time.Minute)
	forgedD := bytes.Clone(d1)
	forgedD[len(forgedD)-70] ^= 1 // inside the record, under the signature
	vmDelivery := v1.Sign(t, dDelivery(t, "VM's delivery"), 0)
	e1 := v1.Sign(t, dExecution(t, "e1", v1.ID, "active"), 0)
	e1done := v1.Sign(t, dExecution(t, "e1", v1.ID, "finished"), time.Hour)
	e1byVM2 := v2.Sign(t, dExecution(t, "e1", v2.ID, "active"), time.Hour)
	r1 := v1.Sign(t, dResult(t, "e1", "7.5"), time.Hour)
	r1b := v1.Sign(t, dResult(t, "e1", "9.5"), 2*time.Hour)
	r1byVM2 := v2.Sign(t, dResult(t, "e1", "10"), time.Hour)
	rev, err := w.Auth.Revoke(policy.RevokeRequest{Network: "test", Peer: v2.ID, Serial: v2.M.Serial, From: tw0.Add(30 * time.Minute)}, tw0)
	if err != nil {
		t.Fatal(err)
	}
	revs, err := policy.NewRevocationSet(w.Trust, rev)
	if err != nil {
		t.Fatal(err)
	}
	e2byVM2Early := v2.Sign(t, dExecution(t, "e2", v2.ID, "active"), 0)
	e2byVM2Late := v2.Sign(t, dExecution(t, "e2", v2.ID, "finished"), time.Hour)
	delByC := c.Sign(t, dDelivery(t, "Maths"), 2*time.Hour)
	delByVM := v1.Sign(t, dDelivery(t, "Maths"), 2*time.Hour)
	delResult := c.Sign(t, dResult(t, "e1", "7.5"), 2*time.Hour)
	mC := w.Central.M.Encode()
	badM := bytes.Clone(mC)
	badM[10] ^= 1

	// e1 is stored finished (results need that), e3 active.
	e3 := v1.Sign(t, dExecution(t, "e3", v1.ID, "active"), 0)
	r3 := v1.Sign(t, dResult(t, "e3", "5"), time.Hour)
	e1back := v1.Sign(t, dExecution(t, "e1", v1.ID, "active"), 2*time.Hour)
	e1moved := v1.Sign(t, withDelivery(t, dExecution(t, "e1", v1.ID, "active"), "d2"), 30*time.Minute)
	execs := map[string][]byte{"e1": e1done, "e3": e3}
	el := func(block string, prio uint64, v []byte) policy.Element {
		return policy.Element{Block: block, Priority: prio, Value: v}
	}
	tests := []struct {
		name      string
		key       string
		elems     []policy.Element
		revs      policy.RevocationSet
		noExec    bool
		deletedAt time.Time
		want      []byte
		refused   map[string]string // block -> reason
		parked    map[string]string
	}{
		{name: "one valid record", key: "/deliveries/d1", elems: []policy.Element{el("a", 1, d1)}, want: d1},
		{name: "later valid version wins", key: "/deliveries/d1", elems: []policy.Element{el("a", 1, d1), el("b", 2, d1b)}, want: d1b},
		{name: "forged record refused, legitimate kept", key: "/deliveries/d1",
			elems: []policy.Element{el("a", 1, d1), el("b", 9, forgedD)}, want: d1, refused: map[string]string{"b": policy.ReasonBadSignature}},
		{name: "not a signed record", key: "/deliveries/d1",
			elems: []policy.Element{el("a", 1, d1), el("b", 9, []byte("hello"))}, want: d1, refused: map[string]string{"b": policy.ReasonMalformed}},
		{name: "vm writes a central kind", key: "/deliveries/d1",
			elems: []policy.Element{el("a", 1, d1), el("b", 9, vmDelivery)}, want: d1, refused: map[string]string{"b": policy.ReasonRoleMayNotWrite}},
		{name: "record at another key", key: "/deliveries/d2",
			elems: []policy.Element{el("a", 1, d1)}, want: nil, refused: map[string]string{"a": policy.ReasonMisplaced}},
		{name: "vm writes another vm's result", key: "/results/e1",
			elems: []policy.Element{el("a", 3, r1), el("b", 9, r1byVM2)}, want: r1, refused: map[string]string{"b": policy.ReasonNotOwner}},
		{name: "result overwritten by its own vm: append-only", key: "/results/e1",
			elems: []policy.Element{el("a", 3, r1), el("b", 9, r1b)}, want: r1, refused: map[string]string{"b": policy.ReasonAppendOnly}},
		{name: "result before its execution is parked", key: "/results/e1", noExec: true,
			elems: []policy.Element{el("a", 3, r1)}, want: nil, parked: map[string]string{"a": policy.ReasonUnknownExecution}},
		{name: "replayed old version", key: "/executions/e1",
			elems: []policy.Element{el("a", 1, e1), el("b", 2, e1done), el("c", 9, e1)}, want: e1done, refused: map[string]string{"c": policy.ReasonReplay}},
		{name: "replay arriving first is still refused", key: "/executions/e1",
			elems: []policy.Element{el("c", 9, e1), el("a", 1, e1), el("b", 2, e1done)}, want: e1done, refused: map[string]string{"c": policy.ReasonReplay}},
		{name: "result of an unfinished execution is parked", key: "/results/e3",
			elems: []policy.Element{el("a", 3, r3)}, want: nil, parked: map[string]string{"a": policy.ReasonNotFinished}},
		{name: "finished execution back to active in place", key: "/executions/e1",
			elems: []policy.Element{el("a", 1, e1), el("b", 2, e1done), el("c", 3, e1back)}, want: e1done, refused: map[string]string{"c": policy.ReasonReactivateInPlace}},
		{name: "execution's delivery changed", key: "/executions/e1",
			elems: []policy.Element{el("a", 1, e1), el("b", 2, e1moved)}, want: e1, refused: map[string]string{"b": policy.ReasonInvalid}},
		{name: "another vm takes over an execution", key: "/executions/e1",
			elems: []policy.Element{el("a", 1, e1), el("b", 5, e1byVM2)}, want: e1, refused: map[string]string{"b": policy.ReasonNotOwner}},
		{name: "signed after revocation refused, before kept", key: "/executions/e2", revs: revs,
			elems: []policy.Element{el("a", 1, e2byVM2Early), el("b", 2, e2byVM2Late)}, want: e2byVM2Early, refused: map[string]string{"b": policy.ReasonRevoked}},
		{name: "unsigned tombstone ignored", key: "/deliveries/d1",
			elems: []policy.Element{{Block: "a", Priority: 1, Value: d1, Tomb: true}}, want: d1},
		{name: "signed deletion hides what was signed before it", key: "/deliveries/d1", deletedAt: tw0.Add(30 * time.Second),
			elems: []policy.Element{el("a", 1, d1), el("b", 2, d1b)}, want: d1b}, // d1b signed at tw0+1m: written again after
		{name: "signed deletion after every version", key: "/deliveries/d1", deletedAt: tw0.Add(2 * time.Minute),
			elems: []policy.Element{el("a", 1, d1), el("b", 2, d1b)}, want: nil},
		{name: "deletion by central", key: policy.DeletionKey("/deliveries/d1"), elems: []policy.Element{el("a", 3, delByC)}, want: delByC},
		{name: "deletion by a vm refused", key: policy.DeletionKey("/deliveries/d1"),
			elems: []policy.Element{el("a", 3, delByVM)}, want: nil, refused: map[string]string{"a": policy.ReasonRoleMayNotWrite}},
		{name: "deletion of exam evidence refused", key: policy.DeletionKey("/results/e1"),
			elems: []policy.Element{el("a", 3, delResult)}, want: nil, refused: map[string]string{"a": policy.ReasonRoleMayNotWrite}},
		{name: "deletion stored for another key", key: policy.DeletionKey("/deliveries/d2"),
			elems: []policy.Element{el("a", 3, delByC)}, want: nil, refused: map[string]string{"a": policy.ReasonMisplaced}},
		{name: "tombstone of exam evidence ignored", key: "/results/e1",
			elems: []policy.Element{{Block: "a", Priority: 3, Value: r1, Tomb: true}}, want: r1},
		{name: "membership at its key", key: policy.MembershipKey(w.Central.M.Serial), elems: []policy.Element{el("a", 1, mC)}, want: mC},
		{name: "forged membership refused", key: policy.MembershipKey(w.Central.M.Serial),
			elems: []policy.Element{el("a", 1, badM)}, want: nil, refused: map[string]string{"a": policy.ReasonBadSignature}},
		{name: "membership at another serial's key", key: policy.MembershipKey(w.VM1.M.Serial),
			elems: []policy.Element{el("a", 1, mC)}, want: nil, refused: map[string]string{"a": policy.ReasonMisplaced}},
		{name: "other organisation's membership", key: policy.MembershipKey(w.VM3.M.Serial),
			elems: []policy.Element{el("a", 1, w.VM3.M.Encode())}, want: nil, refused: map[string]string{"a": policy.ReasonNotMember}},
		{name: "unknown reserved key", key: "/_other/x", elems: []policy.Element{el("a", 1, mC)}, want: nil, refused: map[string]string{"a": policy.ReasonReservedKey}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := policy.Lookups{Org: dOrg, Trust: w.Trust, Now: tw0.Add(3 * time.Hour), Revs: tc.revs, Members: w.Members,
				DeletedAt: func(string) (time.Time, bool) { return tc.deletedAt, !tc.deletedAt.IsZero() },
				Execution: func(id string) (*schema.Record, bool) {
					if tc.noExec || execs[id] == nil {
						return nil, false
					}
					rec, err := decodeRecord(execs[id])
					if err != nil {
						t.Fatal(err)
					}
					return &rec, true
				}}
			d := policy.Decide(tc.key, tc.elems, l)
			if !bytes.Equal(d.Value, tc.want) {
				t.Errorf("value: got %.40q, want %.40q", d.Value, tc.want)
			}
			got := map[string]string{}
			gotParked := map[string]string{}
			for b, v := range d.Verdicts {
				if v.Parked {
					gotParked[b] = v.Reason
				} else {
					got[b] = v.Reason
				}
			}
			if len(got) != len(tc.refused) || len(gotParked) != len(tc.parked) {
				t.Fatalf("verdicts %v; want refused %v, parked %v", verdicts(d), tc.refused, tc.parked)
			}
			for b, r := range tc.refused {
				if got[b] != r {
					t.Errorf("block %s: reason %q, want %q (%v)", b, got[b], r, verdicts(d))
				}
			}
			for b, r := range tc.parked {
				if gotParked[b] != r {
					t.Errorf("block %s: parked %q, want %q", b, gotParked[b], r)
				}
			}
		})
	}
}

func TestDecideParksUnknownMembership(t *testing.T) {
	w := newDWorld(t)
	d1 := w.Central.Sign(t, dDelivery(t, "Maths"), 0)
	d := policy.Decide("/deliveries/d1", []policy.Element{{Block: "a", Priority: 1, Value: d1}}, policy.Lookups{
		Org: dOrg, Trust: w.Trust, Now: tw0,
		Members:   func(policy.Serial) (policy.Membership, bool) { return policy.Membership{}, false },
		Execution: func(string) (*schema.Record, bool) { return nil, false },
	})
	v := d.Verdicts["a"]
	if d.Value != nil || v == nil || !v.Parked || v.Reason != policy.ReasonUnknownMembership || v.Dep != policy.MembershipKey(w.Central.M.Serial) {
		t.Fatalf("got value %q, verdict %+v", d.Value, v)
	}
}

func TestDecideIsOrderIndependent(t *testing.T) {
	w := newDWorld(t)
	v1 := w.VM1
	e1 := v1.Sign(t, dExecution(t, "e1", v1.ID, "active"), 0)
	e1done := v1.Sign(t, dExecution(t, "e1", v1.ID, "finished"), time.Hour)
	forged := bytes.Clone(e1done)
	forged[len(forged)-1] ^= 1
	elems := []policy.Element{{Block: "a", Priority: 1, Value: e1}, {Block: "b", Priority: 2, Value: e1done}, {Block: "c", Priority: 7, Value: e1}, {Block: "d", Priority: 7, Value: forged}}
	l := policy.Lookups{Org: dOrg, Trust: w.Trust, Now: tw0.Add(2 * time.Hour), Members: w.Members,
		Execution: func(string) (*schema.Record, bool) { return nil, false }}
	first := policy.Decide("/executions/e1", elems, l)
	for i := range elems {
		rot := append(append([]policy.Element{}, elems[i:]...), elems[:i]...)
		d := policy.Decide("/executions/e1", rot, l)
		if !bytes.Equal(d.Value, first.Value) || len(d.Verdicts) != len(first.Verdicts) {
			t.Fatalf("rotation %d: value or verdicts differ", i)
		}
	}
	if !bytes.Equal(first.Value, e1done) {
		t.Fatal("the view does not show the latest valid version")
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func verdicts(d policy.Decision) map[string]string {
	out := map[string]string{}
	for b, v := range d.Verdicts {
		out[b] = v.Reason + ": " + errString(v.Err)
	}
	return out
}

func withDelivery(t testing.TB, rec schema.Record, delivery string) schema.Record {
	t.Helper()
	b, err := rec.DecodeBody()
	if err != nil {
		t.Fatal(err)
	}
	e := b.(schema.Execution)
	e.Delivery = delivery
	return dRecord(t, rec.ID, e)
}

func decodeRecord(b []byte) (schema.Record, error) {
	sr, err := policy.DecodeSigned(b)
	if err != nil {
		return schema.Record{}, err
	}
	return schema.Decode(sr.Record)
}
