package integration

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/examnode/examnode/internal/cluster"
	"github.com/examnode/examnode/mesh"
	"github.com/examnode/examnode/node"
	"github.com/examnode/examnode/policy"
	"github.com/examnode/examnode/schema"
)

// TestCentralDialsBackItsVMsAfterRestart (issue 16, finding 5): central,
// configured with no peers, is restarted; it dials back the VMs it met
// before (remembered in its store) at once and merges what a VM wrote while
// it was down, within a few seconds. The VMs' redial backoff is a minute,
// and central comes back on another port (the cluster listens on port 0),
// so the VMs' own redial to their configured address cannot bring them
// back: without the dial-back, central stays alone.
func TestCentralDialsBackItsVMsAfterRestart(t *testing.T) {
	auth, err := policy.GenerateAuthority()
	if err != nil {
		t.Fatal(err)
	}
	opts := testTuning()
	opts.Authority = auth
	opts.Tuning.RedialMax = node.Duration(time.Minute)
	c := cluster.NewCluster(t.TempDir(), opts)
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close cluster: %v", err)
		}
	})
	ctx := context.Background()
	for _, s := range []cluster.Spec{
		{Name: "central", Role: schema.RoleCentral, Peers: []int{}},
		{Name: "vm-1", Role: schema.RoleVM, Orgs: []string{org}, Peers: []int{0}},
		{Name: "vm-2", Role: schema.RoleVM, Orgs: []string{org}, Peers: []int{0}},
	} {
		if _, err := c.Add(ctx, s); err != nil {
			t.Fatalf("start %s: %v", s.Name, err)
		}
	}
	vms := []peer.ID{c.Members()[1].ID, c.Members()[2].ID}
	// connectedToVMs: central exchanged heads with both VMs.
	connectedToVMs := func() (bool, error) {
		n := c.Node(0)
		if n == nil {
			return false, fmt.Errorf("central is stopped")
		}
		got := n.Mesh().PeersOf(org)
		for _, vm := range vms {
			if !slices.Contains(got, vm) {
				return false, fmt.Errorf("central is not connected to %s (connected: %v)", vm, got)
			}
		}
		return true, nil
	}
	if err := cluster.WaitFor(ctx, 20*time.Second, connectedToVMs); err != nil {
		t.Fatal(err)
	}
	// Central remembers both VMs, with their listen addresses.
	err = cluster.WaitFor(ctx, 10*time.Second, func() (bool, error) {
		for _, vm := range vms {
			i := slices.IndexFunc(c.Node(0).Mesh().Peers(), func(p mesh.PeerInfo) bool { return p.ID == vm.String() && p.Remembered })
			if i < 0 {
				return false, fmt.Errorf("central does not remember %s", vm)
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	put(t, c, 1, "/before/1", "b")
	waitHolds(t, org, map[string]string{"/before/1": "b"}, c.Node(0), c.Node(1))

	if err := c.Stop(0); err != nil {
		t.Fatal(err)
	}
	put(t, c, 1, "/while-down/1", "w")
	want := map[string]string{"/before/1": "b", "/while-down/1": "w"}

	start := time.Now()
	if err := c.Restart(ctx, 0); err != nil {
		t.Fatal(err)
	}
	err = cluster.WaitFor(ctx, 10*time.Second, func() (bool, error) {
		if ok, err := connectedToVMs(); !ok {
			return false, err
		}
		got, err := cluster.Contents(ctx, c.Node(0), org)
		if err != nil {
			return false, err
		}
		if d := diff(want, got); d != "" {
			return false, fmt.Errorf("central: %s", d)
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("central did not dial its VMs back: %v", err)
	}
	took := time.Since(start)
	t.Logf("restarted central connected to both VMs and merged the record written while it was down %.2f s after Restart", took.Seconds())
	if took > 5*time.Second {
		t.Errorf("dial-back took %s, want a few seconds", took)
	}
}
