package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/examnode/examnode/internal/cluster"
	"github.com/examnode/examnode/mesh"
	"github.com/examnode/examnode/node"
	"github.com/examnode/examnode/schema"
)

const inspectOrg = "C1"

// inspectCluster starts central and two VMs of C1 on 127.0.0.1, with the
// tests' tuning (no periodic timers: what converges, converges through
// the exchanges after commits and the sampler's reconciling).
func inspectCluster(t *testing.T) *cluster.Cluster {
	t.Helper()
	c := cluster.NewCluster(t.TempDir(), cluster.Options{Tuning: node.Tuning{
		ExchangeInterval:    node.Duration(time.Hour),
		RebroadcastInterval: node.Duration(time.Hour),
		RedialMax:           node.Duration(time.Second),
	}})
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close cluster: %v", err)
		}
	})
	for i, name := range []string{"central", "vm1", "vm2"} {
		spec := cluster.Spec{Name: name, Role: schema.RoleVM, Orgs: []string{inspectOrg}}
		if i == 0 {
			spec.Role = schema.RoleCentral
		}
		if _, err := c.Add(context.Background(), spec); err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
	}
	return c
}

// syncOf runs `examnode sync --json` against dir.
func syncOf(t *testing.T, dir string) node.OrgSync {
	t.Helper()
	var out []node.OrgSync
	if err := json.Unmarshal([]byte(mustCLI(t, "sync", "--dir", dir, "--org", inspectOrg, "--json")), &out); err != nil || len(out) != 1 {
		t.Fatalf("sync --json: %v, %+v", err, out)
	}
	return out[0]
}

// waitCLI polls cond (which runs CLI commands) until it returns "" or the
// deadline passes.
func waitCLI(t *testing.T, what string, cond func() string) {
	t.Helper()
	err := cluster.WaitFor(context.Background(), 30*time.Second, func() (bool, error) {
		if why := cond(); why != "" {
			return false, fmt.Errorf("%s", why)
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// peerStates maps the peers of dir's node to their state in C1.
func peerStates(t *testing.T, dir string) map[peer.ID]node.PeerSync {
	out := map[peer.ID]node.PeerSync{}
	for _, ps := range syncOf(t, dir).PeerStates {
		id, _ := peer.Decode(ps.Peer)
		out[id] = ps
	}
	return out
}

func allInSync(t *testing.T, c *cluster.Cluster, members ...int) string {
	for _, i := range members {
		m := c.Members()[i]
		st := peerStates(t, m.Dir)
		for _, j := range members {
			if j == i {
				continue
			}
			o := c.Members()[j]
			if ps := st[o.ID]; ps.State != node.StateInSync {
				return fmt.Sprintf("%s sees %s %q (%s)", m.Spec.Name, o.Spec.Name, ps.State, ps.Reason)
			}
		}
	}
	return ""
}

func contains(t *testing.T, what, out string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Fatalf("%s lacks %q:\n%s", what, w, out)
		}
	}
}

// TestInspectCommandsAgainstACluster runs status, peers, sync and history
// against a real three-node cluster in the states an operator meets: all
// in sync; central cut off; one peer cut off and behind, with records
// written that no other machine holds; healed; and a refused announcement.
func TestInspectCommandsAgainstACluster(t *testing.T) {
	c := inspectCluster(t)
	central, vm1, vm2 := c.Members()[0], c.Members()[1], c.Members()[2]

	// All in sync.
	for i := range 3 {
		mustCLI(t, "put", "--dir", vm1.Dir, inspectOrg, fmt.Sprintf("/results/r%d", i), "v")
	}
	waitCLI(t, "all in sync", func() string { return allInSync(t, c, 0, 1, 2) })
	out := mustCLI(t, "status", "--dir", vm1.Dir)
	contains(t, "vm1's status", out, "verdict:   in sync", "orgs:      C1", "store:", "on disk", "built:     go", "go-ds-crdt v", "DAG")
	out = mustCLI(t, "peers", "--dir", vm1.Dir)
	contains(t, "vm1's peers", out, "VIA", "RTT", "central", "connected (", "WAN", "/ip4/127.0.0.1/tcp/")
	var peers []mesh.PeerInfo
	if err := json.Unmarshal([]byte(mustCLI(t, "peers", "--dir", vm1.Dir, "--json")), &peers); err != nil {
		t.Fatal(err)
	}
	for _, p := range peers {
		if !p.Connected || p.LAN || p.RTT <= 0 || p.RTT > 10*time.Second {
			t.Fatalf("vm1's peer %s: connected %v, lan %v, rtt %v", p.ID, p.Connected, p.LAN, p.RTT)
		}
	}
	waitCLI(t, "vm1's results held elsewhere", func() string {
		s := syncOf(t, vm1.Dir)
		if s.Unconfirmed == nil || s.Unconfirmed.Records != 0 || s.DAGSize != 3 || s.Records != 3 {
			return fmt.Sprintf("vm1: %+v, DAG %d, records %d", s.Unconfirmed, s.DAGSize, s.Records)
		}
		return ""
	})
	out = mustCLI(t, "sync", "--dir", vm1.Dir)
	contains(t, "vm1's sync", out, "NOT ELSEWHERE", "REFUSED", "LAG", "HEADS AT", "in sync")
	if s := syncOf(t, central.Dir); s.Unconfirmed != nil {
		t.Fatalf("central reports unconfirmed records (only VMs do): %+v", s.Unconfirmed)
	}

	// Central cut off: both VMs keep syncing with each other.
	c.Partition(0, 1)
	c.Partition(0, 2)
	waitCLI(t, "VMs isolated from central", func() string {
		for _, m := range []*cluster.Member{vm1, vm2} {
			var st node.Status
			if err := json.Unmarshal([]byte(mustCLI(t, "status", "--dir", m.Dir, "--json")), &st); err != nil {
				return err.Error()
			}
			if st.Verdict != node.VerdictIsolated {
				return m.Spec.Name + ": " + st.Verdict
			}
		}
		return ""
	})
	contains(t, "vm2's status", mustCLI(t, "status", "--dir", vm2.Dir), "verdict:   isolated from central")
	mustCLI(t, "put", "--dir", vm1.Dir, inspectOrg, "/results/lan1", "v")
	waitCLI(t, "VMs in sync over the LAN", func() string { return allInSync(t, c, 1, 2) })
	waitCLI(t, "vm1's LAN result held by vm2", func() string {
		if u := syncOf(t, vm1.Dir).Unconfirmed; u.Records != 0 {
			return fmt.Sprintf("%+v", u)
		}
		return ""
	})
	if ps := peerStates(t, central.Dir); ps[vm1.ID].State != node.StateDisconnected || ps[vm2.ID].State != node.StateDisconnected {
		t.Fatalf("central's view of the VMs: %+v", ps)
	}

	// One peer behind: vm1 cut off from vm2 as well, and writes twice.
	c.Partition(1, 2)
	for _, k := range []string{"/results/alone1", "/results/alone2"} {
		mustCLI(t, "put", "--dir", vm1.Dir, inspectOrg, k, "v")
	}
	s := syncOf(t, vm1.Dir)
	if s.Unconfirmed.Records != 2 || s.Unconfirmed.Deltas != 2 {
		t.Fatalf("vm1 wrote two records alone; unconfirmed %+v", s.Unconfirmed)
	}
	var vm2State node.PeerSync
	for _, ps := range s.PeerStates {
		if ps.Peer == vm2.ID.String() {
			vm2State = ps
		}
	}
	if vm2State.State != node.StateDisconnected || vm2State.Behind != 2 || vm2State.HeadsAt.IsZero() || !strings.Contains(vm2State.Reason, "lacks 2") {
		t.Fatalf("vm1's view of vm2: %+v", vm2State)
	}
	out = mustCLI(t, "sync", "--dir", vm1.Dir)
	contains(t, "vm1's sync while alone", out, "2 behind", "disconnected", "2 since")

	// Healed: everything converges, nothing is left only on vm1.
	ctx := context.Background()
	for _, p := range [][2]int{{0, 1}, {0, 2}, {1, 2}} {
		if err := c.Heal(ctx, p[0], p[1]); err != nil {
			t.Fatal(err)
		}
	}
	waitCLI(t, "all in sync after the heal", func() string { return allInSync(t, c, 0, 1, 2) })
	waitCLI(t, "nothing left only on vm1", func() string {
		if u := syncOf(t, vm1.Dir).Unconfirmed; u.Records != 0 {
			return fmt.Sprintf("%+v", u)
		}
		return ""
	})
	contains(t, "vm1's status after the heal", mustCLI(t, "status", "--dir", vm1.Dir), "verdict:   in sync")

	// A refused announcement: a machine that is not a node publishes a
	// malformed announcement on C1's topic.
	publishGarbage(t, vm1.Node.Addrs()[0], func() bool { return syncOf(t, vm1.Dir).Refused > 0 })
	s = syncOf(t, vm1.Dir)
	if s.RefusedByReason[mesh.RejectMalformed] == 0 {
		t.Fatalf("refusals by reason: %+v", s.RefusedByReason)
	}
	contains(t, "vm1's sync after a refusal", mustCLI(t, "sync", "--dir", vm1.Dir), "refused: "+mesh.RejectMalformed)
	var h node.History
	if err := json.Unmarshal([]byte(mustCLI(t, "history", "--dir", vm1.Dir, "--json")), &h); err != nil {
		t.Fatal(err)
	}
	var kinds []string
	refusal := false
	for _, e := range h.Events {
		kinds = append(kinds, e.Event)
		refusal = refusal || (e.Event == node.EventError && strings.Contains(e.Detail, mesh.RejectMalformed))
	}
	if !refusal {
		t.Fatalf("vm1's history has no error event naming the refusal: %+v", h.Events)
	}
	for _, want := range []string{node.EventConnected, node.EventDisconnected, node.EventWritten, node.EventConverged, node.EventError} {
		if !strings.Contains(strings.Join(kinds, ","), want) {
			t.Fatalf("vm1's history lacks %q: %v", want, kinds)
		}
	}
	metrics, err := (&node.Client{Addr: vm1.Node.APIAddr(), Token: vm1.Node.Token()}).Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		fmt.Sprintf(`examnode_refused_total{org=%q,reason=%q}`, inspectOrg, mesh.RejectMalformed),
		fmt.Sprintf(`examnode_peer_behind_deltas{org=%q,peer=%q} 0`, inspectOrg, vm2.ID),
		fmt.Sprintf(`examnode_unconfirmed_records{org=%q} 0`, inspectOrg),
		fmt.Sprintf(`examnode_bundles{org=%q,state="pending"} 0`, inspectOrg),
		fmt.Sprintf(`examnode_dag_nodes{org=%q} 6`, inspectOrg),
		`examnode_write_duration_seconds_bucket`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("vm1's metrics lack %q", want)
		}
	}
}

// publishGarbage connects a plain libp2p host with gossipsub to addr and
// publishes a malformed announcement on C1's topic until done.
func publishGarbage(t *testing.T, addr string, done func() bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ps, err := pubsub.NewGossipSub(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	top, err := ps.Join(mesh.TopicName("test", inspectOrg))
	if err != nil {
		t.Fatal(err)
	}
	defer top.Close()
	a, err := ma.NewMultiaddr(addr)
	if err != nil {
		t.Fatal(err)
	}
	ai, err := peer.AddrInfoFromP2pAddr(a)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Connect(ctx, *ai); err != nil {
		t.Fatal(err)
	}
	waitCLI(t, "a malformed announcement refused", func() string {
		if done() {
			return ""
		}
		_ = top.Publish(ctx, []byte{0xff, 0x01, 0x02})
		return "not refused yet"
	})
}
