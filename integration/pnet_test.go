package integration

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/examnode/examnode/internal/cluster"
	"github.com/examnode/examnode/node"
	"github.com/examnode/examnode/schema"
)

// TestPrivateNetworkKeepsStrangersOut runs real nodes with private-network
// keys: those with the same key connect and replicate both ways; a node
// with another key, and one with none, cannot complete a handshake, say
// why in their peer books, and receive nothing.
func TestPrivateNetworkKeepsStrangersOut(t *testing.T) {
	dir := t.TempDir()
	keyA, keyB := filepath.Join(dir, "swarm-a.key"), filepath.Join(dir, "swarm-b.key")
	for _, k := range []string{keyA, keyB} {
		if err := node.NewPnetKey(k); err != nil {
			t.Fatal(err)
		}
	}
	c := cluster.NewCluster(filepath.Join(dir, "nodes"), testTuning())
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close cluster: %v", err)
		}
	})
	ctx := context.Background()
	for _, s := range []cluster.Spec{
		{Name: "central", Role: schema.RoleCentral, Orgs: []string{org}, PnetKey: keyA},
		{Name: "vm", Role: schema.RoleVM, Orgs: []string{org}, PnetKey: keyA},
		{Name: "other-key", Role: schema.RoleVM, Orgs: []string{org}, PnetKey: keyB},
		{Name: "no-key", Role: schema.RoleVM, Orgs: []string{org}},
	} {
		if _, err := c.Add(ctx, s); err != nil {
			t.Fatalf("start %s: %v", s.Name, err)
		}
	}
	central, vm, otherKey, noKey := c.Node(0), c.Node(1), c.Node(2), c.Node(3)

	putIn(t, central, org, "/deliveries/d1", "maths")
	putIn(t, vm, org, "/results/r1", "7.5")
	want := map[string]string{"/deliveries/d1": "maths", "/results/r1": "7.5"}
	waitHolds(t, org, want, central, vm)

	for _, s := range []struct {
		n    *node.Node
		hint string
	}{{otherKey, "uses a private-network key"}, {noKey, "uses no private-network key"}} {
		err := cluster.WaitFor(ctx, 20*time.Second, func() (bool, error) {
			for _, p := range s.n.Mesh().Peers() {
				if p.ID == central.ID().String() && strings.Contains(p.LastError, "handshake failed") && strings.Contains(p.LastError, s.hint) {
					t.Logf("%s's peer book: %s", s.n.ID(), p.LastError)
					return true, nil
				}
			}
			return false, fmt.Errorf("no handshake failure in the peer book: %+v", s.n.Mesh().Peers())
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range s.n.Mesh().Peers() {
			if p.Connected {
				t.Fatalf("%s is connected to %s", s.n.ID(), p.ID)
			}
		}
		for _, n := range []*node.Node{central, vm} {
			for _, p := range n.Mesh().Peers() {
				if p.ID == s.n.ID().String() {
					t.Fatalf("%s learnt the stranger's peer ID: %+v", n.ID(), p)
				}
			}
		}
		got, err := cluster.Contents(ctx, s.n, org)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 0 {
			t.Fatalf("%s received records: %v", s.n.ID(), got)
		}
		for _, b := range blocks(t, central) {
			if has, _ := s.n.Store().Blockstore().Has(t.Context(), b); has {
				t.Fatalf("%s holds block %s of the private network", s.n.ID(), b)
			}
		}
	}
}
