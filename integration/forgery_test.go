package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/examnode/examnode/crdt"
	"github.com/examnode/examnode/internal/cluster"
	"github.com/examnode/examnode/mesh"
	"github.com/examnode/examnode/node"
	"github.com/examnode/examnode/policy"
	"github.com/examnode/examnode/schema"
)

// mallory is a member VM modified to write raw deltas: it writes through
// its crdt.Replica, bypassing its node's API and signing, and signs what
// it likes with the keys it holds.
type mallory struct {
	t    *testing.T
	n    *node.Node
	rep  *crdt.Replica
	key  crypto.PrivKey
	m    policy.Membership
	seq  uint64
	org  string
	auth *policy.Authority
}

func newMallory(t *testing.T, c *cluster.Cluster, i int, org string) *mallory {
	t.Helper()
	mb := c.Members()[i]
	key, err := mesh.LoadOrCreateKey(filepath.Join(mb.Dir, node.IdentityFile))
	if err != nil {
		t.Fatal(err)
	}
	m, err := policy.ParseMembership(mb.Node.Config().Membership)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := mb.Node.Replica(org)
	if err != nil {
		t.Fatal(err)
	}
	return &mallory{t: t, n: mb.Node, rep: rep, key: key, m: m, org: org, auth: c.Options().Authority}
}

// signAs signs rec with key under membership m.
func (ml *mallory) signAs(key crypto.PrivKey, m policy.Membership, rec schema.Record) []byte {
	ml.t.Helper()
	enc, err := schema.Encode(rec)
	if err != nil {
		ml.t.Fatal(err)
	}
	ml.seq = policy.NextSeq(ml.seq, time.Now())
	sr, err := policy.Sign(key, m, enc, ml.seq, time.Now())
	if err != nil {
		ml.t.Fatal(err)
	}
	return policy.EncodeSigned(sr)
}

func (ml *mallory) put(key string, v []byte) {
	ml.t.Helper()
	if err := ml.rep.Put(context.Background(), key, v); err != nil {
		ml.t.Fatalf("mallory put %s: %v", key, err)
	}
}

func mustRec(t *testing.T, org, id string, body schema.Body) schema.Record {
	t.Helper()
	r, err := schema.NewRecord(org, id, body)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

const (
	deliveryJSON = `{"label":"Maths 2026","opens":"2026-06-01T08:00:00Z","closes":"2026-06-01T18:00:00Z",` +
		`"package":{"cid":"bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi","sha256":"` +
		"abababababababababababababababababababababababababababababababab" + `","size":1024,"media_type":"application/zip"},"max_attempts":1}`
	resultJSON = `{"execution":"e1","finished":"2026-06-01T09:30:00Z","variables":{"SCORE":{"base_type":"float","cardinality":"single","value":7.5}}}`
)

func execJSON(vm peer.ID, state string) string {
	fin := ""
	if state == "finished" {
		fin = `"finished":"2026-06-01T09:30:00Z",`
	}
	return fmt.Sprintf(`{"delivery":"d1","test_taker":"tt1","state":"%s","started":"2026-06-01T08:00:00Z",%s"vm":"%s","version":1}`, state, fin, vm)
}

// waitRecord waits until n's API serves org's kind/id and check accepts it.
func waitRecord(t *testing.T, n *node.Node, org, kind, id string, check func(node.RecordView) error) {
	t.Helper()
	err := cluster.WaitFor(context.Background(), 30*time.Second, func() (bool, error) {
		rec, err := client(n).GetRecord(context.Background(), org, kind, id)
		if err != nil {
			return false, err
		}
		return true, check(rec)
	})
	if err != nil {
		t.Fatalf("%s: %s/%s: %v", n.ID(), kind, id, err)
	}
}

func bodyHas(s string) func(node.RecordView) error {
	return func(r node.RecordView) error {
		if !strings.Contains(string(r.Body), s) {
			return fmt.Errorf("body %s does not contain %s", r.Body, s)
		}
		return nil
	}
}

// resultServed checks a result sealed in the store as a node serves it:
// in clear with score on a recipient (readable), else sealed, without
// variables.
func resultServed(readable bool, score string) func(node.RecordView) error {
	return func(r node.RecordView) error {
		b, err := r.DecodeBody()
		if err != nil {
			return err
		}
		res := b.(schema.Result)
		switch {
		case !r.StoredSealed:
			return fmt.Errorf("result %s is not sealed in the store: %s", r.ID, r.Body)
		case readable && (res.IsSealed() || !strings.Contains(string(r.Body), score)):
			return fmt.Errorf("a recipient serves %s; want the variables in clear, with %s", r.Body, score)
		case !readable && (!res.IsSealed() || res.Variables != nil || strings.Contains(string(r.Body), score)):
			return fmt.Errorf("a node that is no recipient serves %s; want it sealed, without variables", r.Body)
		}
		return nil
	}
}

// TestModifiedPeerIsRefusedWhereItArrives is issue 6's "Done when": a
// member VM modified to write raw deltas sends a forged record, a central
// kind, another VM's result, a record signed under a revoked membership
// and a replayed old record; it also erases a result and deletes central
// data with unsigned tombstones. Each reaches go-ds-crdt on central and on
// another VM (it merges anything), and each is refused there by the
// verified view, counted with its reason; the legitimate data at those
// keys is unchanged and still served by the API.
func TestModifiedPeerIsRefusedWhereItArrives(t *testing.T) {
	c := gatedCluster(t,
		cluster.Spec{Name: "central", Role: schema.RoleCentral, Orgs: []string{orgA}},
		cluster.Spec{Name: "vm1", Role: schema.RoleVM, Orgs: []string{orgA}},
		cluster.Spec{Name: "vm2", Role: schema.RoleVM, Orgs: []string{orgA}},
		cluster.Spec{Name: "mallory", Role: schema.RoleVM, Orgs: []string{orgA}},
	)
	ctx := context.Background()
	central, vm1, vm2 := c.Node(0), c.Node(1), c.Node(2)
	ml := newMallory(t, c, 3, orgA)
	receivers := []*node.Node{central, vm2}

	// Legitimate data, through the API: central's delivery and
	// eligibility, vm1's execution (first active, then finished) and result.
	for _, w := range []struct{ kind, id, body string }{
		{"deliveries", "d1", deliveryJSON},
		{"eligibilities", "el1", `{"test_center":"c1","delivery":"d1","test_takers":["tt1"],"by_proctor":false}`},
	} {
		if _, err := client(central).PutRecord(ctx, orgA, w.kind, w.id, []byte(w.body)); err != nil {
			t.Fatal(err)
		}
	}
	waitRecord(t, vm1, orgA, "eligibilities", "el1", bodyHas("tt1"))
	if _, err := client(vm1).PutRecord(ctx, orgA, "executions", "e1", []byte(execJSON(vm1.ID(), "active"))); err != nil {
		t.Fatal(err)
	}
	// Mallory keeps the first version, to replay it later.
	var oldExec []byte
	err := cluster.WaitFor(ctx, 30*time.Second, func() (bool, error) {
		v, err := ml.rep.Get(ctx, "/executions/e1")
		oldExec = v
		return err == nil, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client(vm1).PutRecord(ctx, orgA, "executions", "e1", []byte(execJSON(vm1.ID(), "finished"))); err != nil {
		t.Fatal(err)
	}
	if _, err := client(vm1).PutRecord(ctx, orgA, "results", "e1", []byte(resultJSON)); err != nil {
		t.Fatal(err)
	}
	for _, n := range append(receivers, ml.n) {
		waitRecord(t, n, orgA, "results", "e1", resultServed(n == central, "7.5"))
		waitRecord(t, n, orgA, "executions", "e1", bodyHas(`"finished"`))
	}
	legit := map[string][]byte{}
	for _, k := range []string{"/deliveries/d1", "/executions/e1", "/results/e1"} {
		v, err := ml.rep.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		legit[k] = v
	}

	// A stolen machine X: granted, then revoked from a minute ago.
	xKey, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	xID, _ := peer.IDFromPrivateKey(xKey)
	now := time.Now()
	xm, err := ml.auth.Grant(policy.GrantRequest{Network: c.Options().Network, Peer: xID.String(), Role: schema.RoleVM,
		Orgs: []string{orgA}, NotBefore: now.Add(-time.Hour), Expires: now.Add(time.Hour)}, now)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := ml.auth.Revoke(policy.RevokeRequest{Network: c.Options().Network, Peer: xID.String(), Serial: xm.Serial,
		From: now.Add(-time.Minute), Reason: "stolen"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client(central).Revoke(ctx, rev.String()); err != nil {
		t.Fatal(err)
	}

	// The attacks, written raw by mallory.
	//  1. forged: vm1's result with another score, vm1's signature kept.
	sr, err := policy.DecodeSigned(legit["/results/e1"])
	if err != nil {
		t.Fatal(err)
	}
	forgedRes := mustRec(t, orgA, "e1", schema.Result{Execution: "e1", Finished: time.Date(2026, 6, 1, 9, 30, 0, 0, time.UTC),
		Variables: map[string]schema.ResultVariable{"SCORE": {BaseType: "float", Cardinality: "single", Value: []byte("10")}}})
	if sr.Record, err = schema.Encode(forgedRes); err != nil {
		t.Fatal(err)
	}
	ml.put("/results/e1", policy.EncodeSigned(sr))
	//  2. a VM writes a central kind: mallory's own delivery at d1.
	ml.put("/deliveries/d1", ml.signAs(ml.key, ml.m, mustRec(t, orgA, "d1", schema.Delivery{
		Label: "Free marks", Opens: now, Closes: now.Add(time.Hour), MaxAttempts: 99,
		Package: schema.BlobRef{CID: "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi", SHA256: strings.Repeat("ab", 32), Size: 1, MediaType: "application/zip"}})))
	//  3. a VM writes another VM's result, signed as itself.
	ml.put("/results/e1", ml.signAs(ml.key, ml.m, forgedRes))
	//  4. a record signed under the revoked membership, after its revocation.
	ml.put(crdt.MembershipKey(xm.Serial), xm.Encode())
	ml.put("/executions/x1", ml.signAs(xKey, xm, mustRec(t, orgA, "x1", schema.Execution{
		Delivery: "d1", TestTaker: "tt1", State: schema.ExecutionActive, Started: now, VM: xID.String(), Version: 1})))
	//  5. a replay of vm1's first version of the execution.
	ml.put("/executions/e1", oldExec)
	//  6. evidence erased: tombstones for every version of the result.
	if err := ml.rep.Delete(ctx, "/results/e1"); err != nil {
		t.Fatal(err)
	}
	//  7. central data deleted: tombstones, and a deletion mallory signs.
	if err := ml.rep.Apply(ctx, []crdt.Op{{Key: "/deliveries/d1", Delete: true},
		{Key: crdt.DeletionKey("/deliveries/d1"), Value: ml.signAs(ml.key, ml.m, mustRec(t, orgA, "d1", schema.Delivery{
			Label: "gone", Opens: now, Closes: now.Add(time.Hour), MaxAttempts: 1,
			Package: schema.BlobRef{CID: "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi", SHA256: strings.Repeat("ab", 32), Size: 1, MediaType: "application/zip"}}))}}); err != nil {
		t.Fatal(err)
	}

	// go-ds-crdt merged it all: the forgeries win in its order.
	err = cluster.WaitFor(ctx, 30*time.Second, func() (bool, error) {
		for _, n := range receivers {
			rep, _ := n.Replica(orgA)
			for _, k := range []string{"/deliveries/d1", "/executions/e1", "/results/e1"} {
				raw, err := rep.GetRaw(ctx, k)
				if err != nil && !errors.Is(err, crdt.ErrNotFound) {
					return false, err
				}
				if bytes.Equal(raw, legit[k]) {
					return false, fmt.Errorf("%s: go-ds-crdt still holds the legitimate %s", n.ID(), k)
				}
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("the raw deltas did not arrive: %v", err)
	}

	want := []string{crdt.ReasonBadSignature, crdt.ReasonRoleMayNotWrite, crdt.ReasonNotOwner, crdt.ReasonRevoked, crdt.ReasonReplay}
	for _, n := range receivers {
		var got node.Refused
		err := cluster.WaitFor(ctx, 30*time.Second, func() (bool, error) {
			got, err = client(n).Refused(ctx, orgA, 0)
			if err != nil {
				return false, err
			}
			if got.Counts[crdt.ReasonRoleMayNotWrite] < 2 { // the delivery and the deletion
				return false, fmt.Errorf("the deletion is not refused yet: %v", got.Counts)
			}
			for _, r := range want {
				if got.Counts[r] < 1 {
					return false, fmt.Errorf("no refusal for %s yet: %v", r, got.Counts)
				}
			}
			return true, nil
		})
		if err != nil {
			t.Fatalf("%s: %v", n.ID(), err)
		}
		for _, e := range got.Elements {
			if e.Writer == vm1.ID().String() && e.Reason != crdt.ReasonBadSignature && e.Reason != crdt.ReasonReplay {
				t.Errorf("%s refused vm1's legitimate %s: %s", n.ID(), e.Key, e.Error)
			}
		}
		t.Logf("%s refused: %v", n.ID(), got.Counts)
		// The legitimate data is what the API serves.
		waitRecord(t, n, orgA, "deliveries", "d1", bodyHas("Maths 2026"))
		waitRecord(t, n, orgA, "results", "e1", resultServed(n == central, "7.5"))
		waitRecord(t, n, orgA, "executions", "e1", bodyHas(`"finished"`))
		if _, err := client(n).GetRecord(ctx, orgA, "executions", "x1"); !isNotFound(err) {
			t.Fatalf("%s serves the revoked machine's execution: %v", n.ID(), err)
		}
		rep, _ := n.Replica(orgA)
		for k, v := range legit {
			got, err := rep.Get(ctx, k)
			if err != nil || !bytes.Equal(got, v) {
				t.Fatalf("%s: the view of %s changed: %v", n.ID(), k, err)
			}
		}
		// The change feed follows the view: the forgeries changed nothing.
		for key, want := range map[string]int{"/deliveries/d1": 1, "/results/e1": 1, "/executions/x1": 0} {
			if got := feedCount(t, n, orgA, key); got != want {
				t.Errorf("%s: the change feed has %d changes of %s, want %d", n.ID(), got, key, want)
			}
		}
		// Status and sync show the counts.
		sums, err := client(n).Sync(ctx, orgA)
		if err != nil || len(sums) != 1 || !sums[0].Verified || sums[0].RecordsRefused[crdt.ReasonReplay] < 1 ||
			sums[0].RefusedByReason["record "+crdt.ReasonReplay] < 1 {
			t.Fatalf("%s sync: %+v %v", n.ID(), sums, err)
		}
	}

	// A gated node takes no unsigned raw writes through its API.
	var ae *node.APIError
	if _, err := client(central).Put(ctx, orgA, "/deliveries/d1", []byte("plain")); !errors.As(err, &ae) || ae.Status != 403 {
		t.Fatalf("a raw write on a gated node: %v", err)
	}

	// Revoking mallory itself: the mesh disconnects it everywhere.
	mrev, err := ml.auth.Revoke(policy.RevokeRequest{Network: c.Options().Network, Peer: ml.n.ID().String(), Reason: "modified"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client(central).Revoke(ctx, mrev.String()); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*node.Node{central, vm1, vm2} {
		err := cluster.WaitFor(ctx, 30*time.Second, func() (bool, error) {
			if _, ok := n.Mesh().PeerMembership(ml.n.ID()); ok {
				return false, errors.New("mallory still has a verified membership")
			}
			for _, p := range n.Mesh().Peers() {
				if p.ID == ml.n.ID().String() && p.Connected {
					return false, errors.New("mallory is still connected")
				}
			}
			return true, nil
		})
		if err != nil {
			t.Fatalf("%s: %v", n.ID(), err)
		}
	}
}

func isNotFound(err error) bool {
	var ae *node.APIError
	return errors.As(err, &ae) && ae.Status == 404
}

// feedCount counts the changes of key in n's feed of org, from the start.
func feedCount(t *testing.T, n *node.Node, org, key string) int {
	t.Helper()
	count, since := 0, "0"
	for {
		page, err := client(n).Changes(context.Background(), org, since, node.MaxFeedLimit, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range page.Changes {
			if c.Key == key {
				count++
			}
		}
		if len(page.Changes) == 0 || page.Next == since {
			return count
		}
		since = page.Next
	}
}

// TestRecordRelayedFromAStrangerPeerIsVerified: vm2 never connects to
// vm1, yet it verifies and serves vm1's records, relayed through central:
// vm1's membership travels in the replica beside them.
func TestRecordRelayedFromAStrangerPeerIsVerified(t *testing.T) {
	c := gatedCluster(t,
		cluster.Spec{Name: "central", Role: schema.RoleCentral, Orgs: []string{orgA}},
		cluster.Spec{Name: "vm1", Role: schema.RoleVM, Orgs: []string{orgA}, Peers: []int{0}},
		cluster.Spec{Name: "vm2", Role: schema.RoleVM, Orgs: []string{orgA}, Peers: []int{0}},
	)
	ctx := context.Background()
	central, vm1, vm2 := c.Node(0), c.Node(1), c.Node(2)
	for _, w := range []struct{ kind, id, body string }{
		{"deliveries", "d1", deliveryJSON},
		{"eligibilities", "el1", `{"test_center":"c1","delivery":"d1","test_takers":["tt1"],"by_proctor":false}`},
	} {
		if _, err := client(central).PutRecord(ctx, orgA, w.kind, w.id, []byte(w.body)); err != nil {
			t.Fatal(err)
		}
	}
	waitRecord(t, vm1, orgA, "eligibilities", "el1", bodyHas("tt1"))
	if _, err := client(vm1).PutRecord(ctx, orgA, "executions", "e1", []byte(execJSON(vm1.ID(), "finished"))); err != nil {
		t.Fatal(err)
	}
	if _, err := client(vm1).PutRecord(ctx, orgA, "results", "e1", []byte(resultJSON)); err != nil {
		t.Fatal(err)
	}
	// Announcements relayed from a peer vm2 never met are ignored by its
	// gossip validator; the heads exchange with central carries them.
	err := cluster.WaitFor(ctx, 30*time.Second, func() (bool, error) {
		central.Mesh().ExchangeNow()
		got, err := cluster.Contents(ctx, vm2, orgA)
		_, ok := got["/results/e1"]
		return ok, err
	})
	if err != nil {
		t.Fatalf("vm1's result did not reach vm2: %v", err)
	}
	waitRecord(t, vm2, orgA, "results", "e1", resultServed(false, "7.5"))
	waitRecord(t, central, orgA, "results", "e1", resultServed(true, "7.5"))
	for _, p := range vm2.Mesh().Peers() {
		if p.ID == vm1.ID().String() && p.Connected {
			t.Fatal("vm2 is connected to vm1: the test needs them apart")
		}
	}
	got, err := client(vm2).Refused(ctx, orgA, 0)
	if err != nil || len(got.Counts) != 0 || got.Parked != 0 {
		t.Fatalf("vm2 refused or parked: %+v %v", got, err)
	}
}
