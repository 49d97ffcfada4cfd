package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/examnode/examnode/internal/cluster"
	"github.com/examnode/examnode/node"
)

func apiClient(n *node.Node) *node.Client {
	return &node.Client{Addr: n.APIAddr(), Token: n.Token()}
}

// peerState is n's view of peer p for org.
func peerState(ctx context.Context, n *node.Node, p string) (node.PeerSync, error) {
	h, err := apiClient(n).History(ctx, org, p)
	if err != nil {
		return node.PeerSync{}, err
	}
	for _, ps := range h.Peers {
		if ps.Peer == p && ps.Org == org {
			return ps, nil
		}
	}
	return node.PeerSync{}, fmt.Errorf("no state for %s in %+v", p, h.Peers)
}

func waitState(t *testing.T, n *node.Node, p, want string) node.PeerSync {
	t.Helper()
	var got node.PeerSync
	err := cluster.WaitFor(context.Background(), 20*time.Second, func() (bool, error) {
		var err error
		got, err = peerState(context.Background(), n, p)
		if err != nil {
			return false, err
		}
		if got.State != want {
			return false, fmt.Errorf("state %q (%s)", got.State, got.Reason)
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("%s never became %q: %v", p, want, err)
	}
	return got
}

func TestHistoryAndMetricsAcrossACluster(t *testing.T) {
	c := makeN(t, 3, testTuning())
	ctx := context.Background()
	central, vm1, vm2 := c.Node(0), c.Node(1), c.Node(2)
	want := map[string]string{}
	for i := range 3 {
		k := fmt.Sprintf("/results/r%d", i)
		if _, err := apiClient(vm1).Put(ctx, org, k, []byte("v")); err != nil {
			t.Fatal(err)
		}
		want[k] = "v"
	}
	waitSame(t, c, want, 30*time.Second)

	// All in sync: every peer of every node.
	for _, n := range []*node.Node{central, vm1, vm2} {
		for _, o := range []*node.Node{central, vm1, vm2} {
			if o != n {
				waitState(t, n, o.ID().String(), node.StateInSync)
			}
		}
	}
	// vm2 received the three results through its two peers; vm1 wrote them.
	err := cluster.WaitFor(ctx, 20*time.Second, func() (bool, error) {
		h, err := apiClient(vm2).History(ctx, org, "")
		if err != nil {
			return false, err
		}
		got := 0
		for _, e := range h.Events {
			if e.Event == node.EventWritten {
				return false, fmt.Errorf("vm2 wrote nothing, history says %+v", e)
			}
			if e.Event == node.EventReceived && e.Org == org {
				got += e.Kinds["results"]
				if len(e.Via) != 2 {
					return false, fmt.Errorf("received via %v, want central and vm1", e.Via)
				}
			}
		}
		if got != 3 {
			return false, fmt.Errorf("%d results received", got)
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	h, err := apiClient(vm1).History(ctx, org, vm2.ID().String())
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Peers) != 1 || h.Peers[0].Offered["results"] != 3 {
		t.Fatalf("vm1's view of vm2: %+v", h.Peers)
	}

	// Cut vm1 from vm2: each sees the other disconnected, central still in sync.
	c.Cluster.Partition(1, 2)
	waitState(t, vm2, vm1.ID().String(), node.StateDisconnected)
	waitState(t, vm2, central.ID().String(), node.StateInSync)
	h, err = apiClient(vm2).History(ctx, "", vm1.ID().String())
	if err != nil {
		t.Fatal(err)
	}
	var events []string
	for _, e := range h.Events {
		events = append(events, e.Event)
	}
	if s := strings.Join(events, ","); !strings.Contains(s, "connected") || !strings.HasSuffix(s, node.EventDisconnected) {
		t.Fatalf("vm2's history of vm1: %s", s)
	}

	b, err := apiClient(vm2).Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{
		`examnode_peers_connected 1`,
		fmt.Sprintf(`examnode_records_by_kind{kind="results",org=%q} 3`, org),
		fmt.Sprintf(`examnode_peer_sync_state{org=%q,peer=%q,state="disconnected"} 1`, org, vm1.ID()),
	} {
		if !strings.Contains(string(b), w) {
			t.Errorf("vm2's metrics lack %q", w)
		}
	}
}
