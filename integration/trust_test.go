package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-ds-crdt/pb"
	"google.golang.org/protobuf/proto"

	"github.com/examnode/examnode/crdt"
	"github.com/examnode/examnode/internal/cluster"

	"github.com/examnode/examnode/node"
	"github.com/examnode/examnode/policy"
	"github.com/examnode/examnode/schema"
)

const orgA, orgB = "centre-a", "centre-b"

// gatedCluster starts a cluster under a fresh authority with the given
// specs, closing it when the test ends.
func gatedCluster(t *testing.T, specs ...cluster.Spec) *cluster.Cluster {
	t.Helper()
	auth, err := policy.GenerateAuthority()
	if err != nil {
		t.Fatal(err)
	}
	opts := testTuning()
	opts.Authority = auth
	c := cluster.NewCluster(t.TempDir(), opts)
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close cluster: %v", err)
		}
	})
	for _, s := range specs {
		if _, err := c.Add(context.Background(), s); err != nil {
			t.Fatalf("start %s: %v", s.Name, err)
		}
	}
	return c
}

func putIn(t *testing.T, n *node.Node, org, key, val string) {
	t.Helper()
	rep, err := n.Replica(org)
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.Put(context.Background(), key, []byte(val)); err != nil {
		t.Fatalf("put %s in %s: %v", key, org, err)
	}
}

// waitHolds waits until every node in ns holds want in org.
func waitHolds(t *testing.T, org string, want map[string]string, ns ...*node.Node) {
	t.Helper()
	ctx := context.Background()
	err := cluster.WaitFor(ctx, 30*time.Second, func() (bool, error) {
		for _, n := range ns {
			got, err := cluster.Contents(ctx, n, org)
			if err != nil {
				return false, err
			}
			if d := diff(want, got); d != "" {
				return false, fmt.Errorf("%s: %s", n.ID(), d)
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("%s did not converge: %v", org, err)
	}
}

// blocks lists every block in n's blockstore.
func blocks(t *testing.T, n *node.Node) []cid.Cid {
	t.Helper()
	ch, err := n.Store().Blockstore().AllKeysChan(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out []cid.Cid
	for c := range ch {
		out = append(out, c)
	}
	return out
}

func TestStrangerCannotConnect(t *testing.T) {
	c := gatedCluster(t,
		cluster.Spec{Name: "central", Role: schema.RoleCentral, Orgs: []string{orgA}},
		cluster.Spec{Name: "vm-a", Role: schema.RoleVM, Orgs: []string{orgA}},
		cluster.Spec{Name: "stranger", Role: schema.RoleVM, Orgs: []string{orgA}, Stranger: true},
	)
	central, vm, stranger := c.Node(0), c.Node(1), c.Node(2)
	putIn(t, central, orgA, "/deliveries/d1", "maths")
	waitHolds(t, orgA, map[string]string{"/deliveries/d1": "maths"}, central, vm)

	for _, n := range []*node.Node{central, vm} {
		err := cluster.WaitFor(context.Background(), 20*time.Second, func() (bool, error) {
			for _, p := range n.Mesh().Peers() {
				if p.ID == stranger.ID().String() && strings.Contains(p.LastError, "no membership") {
					return true, nil
				}
			}
			return false, fmt.Errorf("no refusal of the stranger in the peer book: %+v", n.Mesh().Peers())
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := n.Mesh().PeerMembership(stranger.ID()); ok {
			t.Fatal("the stranger has a verified membership")
		}
		for _, p := range n.Mesh().PeersOf(orgA) {
			if p == stranger.ID() {
				t.Fatalf("%s counts the stranger as a peer of %s", n.ID(), orgA)
			}
		}
	}
	got, err := cluster.Contents(context.Background(), stranger, orgA)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Fatalf("the stranger received records: %v", got)
	}
	for _, b := range blocks(t, central) {
		if has, _ := stranger.Store().Blockstore().Has(t.Context(), b); has {
			t.Fatalf("the stranger holds block %s of the mesh", b)
		}
	}
}

func TestVMOfAnotherOrganisationReceivesNothing(t *testing.T) {
	c := gatedCluster(t,
		cluster.Spec{Name: "central", Role: schema.RoleCentral, Orgs: []string{orgA, orgB}},
		cluster.Spec{Name: "vm-a1", Role: schema.RoleVM, Orgs: []string{orgA}},
		cluster.Spec{Name: "vm-a2", Role: schema.RoleVM, Orgs: []string{orgA}},
		cluster.Spec{Name: "vm-b", Role: schema.RoleVM, Orgs: []string{orgB}},
	)
	central, a1, a2, vmB := c.Node(0), c.Node(1), c.Node(2), c.Node(3)
	wantA := map[string]string{}
	for i, n := range []*node.Node{central, a1, a2} {
		for j := range 5 {
			k := fmt.Sprintf("/results/n%d-%d", i, j)
			wantA[k] = "secret of A " + k
			putIn(t, n, orgA, k, wantA[k])
		}
	}
	putIn(t, central, orgB, "/deliveries/b1", "B's delivery")
	waitHolds(t, orgA, wantA, central, a1, a2)
	waitHolds(t, orgB, map[string]string{"/deliveries/b1": "B's delivery"}, central, vmB)

	// Another round of exchanges, as the periodic one runs: nothing of A
	// may reach vm-b through it either.
	before := vmB.Mesh().ExchangesCompleted()
	central.Mesh().ExchangeNow()
	vmB.Mesh().ExchangeNow()
	err := cluster.WaitFor(context.Background(), 10*time.Second, func() (bool, error) {
		return vmB.Mesh().ExchangesCompleted() > before, nil
	})
	if err != nil {
		t.Fatalf("vm-b did not exchange again: %v", err)
	}

	if _, err := vmB.Replica(orgA); !errors.Is(err, node.ErrUnknownOrg) {
		t.Fatalf("vm-b holds %s: %v", orgA, err)
	}
	var aBlocks []cid.Cid
	for _, n := range []*node.Node{a1, a2} { // a VM of A holds only A's blocks
		aBlocks = append(aBlocks, blocks(t, n)...)
	}
	if len(aBlocks) == 0 {
		t.Fatal("the VMs of A hold no blocks")
	}
	for _, b := range aBlocks {
		if has, _ := vmB.Store().Blockstore().Has(t.Context(), b); has && !sharedStatement(t, vmB, b) {
			t.Fatalf("vm-b holds block %s of %s", b, orgA)
		}
	}
	for _, n := range []*node.Node{central, a1, a2} {
		for _, p := range n.Mesh().PeersOf(orgA) {
			if p == vmB.ID() {
				t.Fatalf("%s counts vm-b as a peer of %s", n.ID(), orgA)
			}
		}
	}
}

// sharedStatement reports whether block c (held by n) is a delta that
// carries nothing but authority-signed statements at reserved keys: the
// central node writes its own membership, identically, into every
// organisation's replica, so that first delta has the same bytes (and
// CID) in each. It carries no data of either organisation.
func sharedStatement(t *testing.T, n *node.Node, c cid.Cid) bool {
	t.Helper()
	blk, err := n.Store().Blockstore().Get(t.Context(), c)
	if err != nil {
		t.Fatal(err)
	}
	nd, err := merkledag.DecodeProtobuf(blk.RawData())
	if err != nil {
		return false
	}
	var d pb.Delta
	if err := proto.Unmarshal(nd.Data(), &d); err != nil || len(d.Elements) == 0 {
		return false
	}
	for _, e := range d.Elements {
		if !crdt.IsReserved(e.Key) {
			return false
		}
	}
	return len(d.Tombstones) == 0
}
