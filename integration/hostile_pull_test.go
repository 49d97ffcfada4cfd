package integration

// Hostile answers to central's bulk pull (issue 14, part 2): a member of
// C1 that announces heads and, when central pulls them, answers with junk
// or with an endless valid DAG.

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/boxo/ipld/merkledag"
	blockformat "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	mh "github.com/multiformats/go-multihash"

	"github.com/examnode/examnode/crdt"
	"github.com/examnode/examnode/internal/cluster"
	"github.com/examnode/examnode/internal/disktest"
	"github.com/examnode/examnode/mesh"
	"github.com/examnode/examnode/node"
	"github.com/examnode/examnode/policy"
	"github.com/examnode/examnode/schema"
)

// randomBlock is size random bytes under their own (valid) CID.
func randomBlock(t testing.TB, size int) blockformat.Block {
	data := make([]byte, size)
	_, _ = rand.Read(data)
	c, err := cid.V1Builder{Codec: cid.Raw, MhType: mh.SHA2_256}.Sum(data)
	if err != nil {
		t.Error(err)
	}
	b, _ := blockformat.NewBlockWithCid(data, c)
	return b
}

// writeWireBlock writes b in the pull protocol's framing.
func writeWireBlock(w *bufio.Writer, b blockformat.Block) error {
	cb := b.Cid().Bytes()
	buf := binary.AppendUvarint(nil, uint64(len(cb)))
	buf = append(buf, cb...)
	buf = binary.AppendUvarint(buf, uint64(len(b.RawData())))
	if _, err := w.Write(buf); err != nil {
		return err
	}
	_, err := w.Write(b.RawData())
	return err
}

// servePulls makes h answer dag-pull streams: for each request, a status
// frame, then what round writes, then the end of the round. It counts the
// streams opened to it.
func (h *hostile) servePulls(streams *atomic.Int64, round func(w *bufio.Writer, want []string) error) {
	h.host.SetStreamHandler(hostilePullProto, func(s network.Stream) {
		streams.Add(1)
		defer s.Close()
		_ = s.SetDeadline(time.Now().Add(30 * time.Second))
		br := bufio.NewReader(s)
		bw := bufio.NewWriterSize(s, 64<<10)
		for {
			var req struct {
				Want []string `json:"want"`
			}
			if err := readUvarintJSON(br, 1<<20, &req); err != nil {
				return
			}
			if writeUvarintJSON(bw, struct{}{}) != nil || round(bw, req.Want) != nil || bw.WriteByte(0) != nil || bw.Flush() != nil {
				s.Reset()
				return
			}
		}
	})
}

// answerHellos makes h answer the hellos a node sends it as a VM of org
// with its membership and no heads, as a well-behaved peer would: a node
// drops a peer that does not complete its hello.
func (h *hostile) answerHellos(org string) {
	h.host.SetStreamHandler(hostileSyncProto, func(s network.Stream) {
		defer s.Close()
		_ = s.SetDeadline(time.Now().Add(10 * time.Second))
		var req hostileHello
		if err := readUvarintJSON(bufio.NewReader(s), 8<<20, &req); err != nil {
			s.Reset()
			return
		}
		_ = writeUvarintJSON(s, hostileHello{Version: 1, Schema: schema.CurrentVersion, Schemas: schema.SupportedVersions(),
			Network: h.network, Roles: []string{string(schema.RoleVM)}, Orgs: []string{org}, Membership: h.membership,
			HeadsAt: time.Now().UnixNano()})
	})
}

// announce sends target a hello as a VM of org carrying heads for org,
// which makes target pull them from h.
func (h *hostile) announce(ctx context.Context, target *node.Node, org string, heads ...cid.Cid) error {
	enc, err := crdt.EncodeHeads(heads)
	if err != nil {
		return err
	}
	req := hostileHello{Version: 1, Schema: schema.CurrentVersion, Schemas: schema.SupportedVersions(),
		Network: h.network, Roles: []string{string(schema.RoleVM)}, Orgs: []string{org}, Membership: h.membership,
		Heads: map[string][]byte{org: enc}, HeadsAt: time.Now().UnixNano()}
	h.connect(ctx, target)
	s, err := h.stream(ctx, target.ID(), hostileSyncProto)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := writeUvarintJSON(s, req); err != nil {
		return err
	}
	var reply hostileHello
	if err := readUvarintJSON(bufio.NewReader(s), 8<<20, &reply); err != nil || reply.Error != "" {
		return fmt.Errorf("hello: %v %q", err, reply.Error)
	}
	return nil
}

// refusedFor is what n's sync output counts as refused in org for reason.
func refusedFor(t *testing.T, n *node.Node, org, reason string) uint64 {
	t.Helper()
	out, err := n.Sync(t.Context(), org)
	if err != nil || len(out) != 1 {
		t.Fatalf("sync %s: %v %v", org, out, err)
	}
	return out[0].RefusedByReason[reason]
}

func storeBytes(t *testing.T, n *node.Node) uint64 {
	t.Helper()
	st, err := n.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return st.StoreBytes
}

// TestHostilePullJunkIsRefused: a C1 member that answers central's pull
// with 4,000 random 8 KiB blocks a round (32 MiB, none requested) gets
// none stored; each pull is counted as an unrequested block, and after the
// bound of offences central disconnects it and pulls nothing more from it
// when it comes back. Central (holding C1 and C2) then syncs with a real
// C1 VM as before.
func TestHostilePullJunkIsRefused(t *testing.T) {
	c := gatedCluster(t, cluster.Spec{Name: "central", Role: schema.RoleCentral, Orgs: []string{orgA, orgB}})
	central := c.Node(0)
	ctx := context.Background()
	putIn(t, central, orgB, "/notes/b", "before")
	putIn(t, central, orgA, "/notes/a", "before")
	h := newHostile(t, c, hostileSpec{Role: schema.RoleVM, Orgs: []string{orgA}})
	h.answerHellos(orgA)
	var streams atomic.Int64
	var junkSent atomic.Int64
	// Each announced head is a block of its own that the attacker sends
	// first, as asked, so that go-ds-crdt finds it (it is no delta) and
	// does not wait for bitswap to fetch it; then the junk.
	var heads sync.Map
	h.servePulls(&streams, func(w *bufio.Writer, want []string) error {
		for _, s := range want {
			if b, ok := heads.Load(s); ok {
				if err := writeWireBlock(w, b.(blockformat.Block)); err != nil {
					return err
				}
			}
		}
		for range 4000 {
			if err := writeWireBlock(w, randomBlock(t, 8<<10)); err != nil {
				return err
			}
			junkSent.Add(8 << 10)
		}
		return nil
	})
	// Central's mesh redials the peers it knows, and libp2p coalesces a
	// disconnection followed at once by a new connection: a disconnection
	// shows as the connections central had to the attacker being gone.
	conns := func() map[string]bool {
		out := map[string]bool{}
		for _, cn := range central.Mesh().Host().Network().ConnsToPeer(h.ID()) {
			out[cn.ID()] = true
		}
		return out
	}
	closed := func(old map[string]bool) bool {
		for id := range conns() {
			if old[id] {
				return false
			}
		}
		return true
	}
	before := storeBytes(t, central)
	const offences = 3 // node's pullStrikes
	var first map[string]bool
	newHead := func() cid.Cid {
		b := randomBlock(t, 64)
		heads.Store(b.Cid().String(), b)
		return b.Cid()
	}
	for i := uint64(1); i <= offences; i++ {
		if err := h.announce(ctx, central, orgA, newHead()); err != nil {
			t.Fatal(err)
		}
		err := cluster.WaitFor(ctx, 30*time.Second, func() (bool, error) {
			if n := refusedFor(t, central, orgA, mesh.RefuseUnrequestedBlock); n < i {
				return false, fmt.Errorf("%d unrequested-block refusals counted, want %d", n, i)
			}
			return true, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			first = conns()
		} else if i < offences && closed(first) {
			t.Fatalf("disconnected after %d offences, before the bound", i)
		}
	}
	err := cluster.WaitFor(ctx, 10*time.Second, func() (bool, error) {
		if !closed(first) {
			return false, fmt.Errorf("the attacker was not disconnected: %v then %v", first, conns())
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	after := storeBytes(t, central)
	t.Logf("MEASURED junk sent %d KiB in %d pull streams; central's store %d KiB -> %d KiB", junkSent.Load()>>10, streams.Load(), before>>10, after>>10)
	if after > before+4<<20 {
		t.Fatalf("central's store grew from %d to %d bytes under the attack", before, after)
	}
	if streams.Load() != offences {
		t.Fatalf("%d pull streams to the attacker, want %d", streams.Load(), offences)
	}
	// What the operator sees: examnode refused, examnode sync, the metrics.
	rf, err := client(central).Refused(ctx, orgA, 0)
	if err != nil || rf.Arrived[mesh.RefuseUnrequestedBlock] != offences {
		t.Fatalf("examnode refused %s: %+v, %v", orgA, rf.Arrived, err)
	}
	sy, err := client(central).Sync(ctx, orgA)
	if err != nil || len(sy) != 1 || sy[0].RefusedByReason[mesh.RefuseUnrequestedBlock] != offences {
		t.Fatalf("examnode sync %s: %+v, %v", orgA, sy, err)
	}
	metrics, err := client(central).Metrics(ctx)
	if line := fmt.Sprintf(`examnode_refused_total{org=%q,reason=%q} %d`, orgA, mesh.RefuseUnrequestedBlock, offences); err != nil || !strings.Contains(string(metrics), line) {
		t.Fatalf("the metrics lack %s: %v", line, err)
	}

	// A real VM of C1 still syncs both ways, by bulk pull.
	st0, _ := central.Status(ctx)
	if _, err := c.Add(ctx, cluster.Spec{Name: "vm1", Role: schema.RoleVM, Orgs: []string{orgA}}); err != nil {
		t.Fatal(err)
	}
	vm := c.Node(1)
	putIn(t, vm, orgA, "/notes/vm", "legit")
	putIn(t, central, orgA, "/notes/central", "legit too")
	waitHolds(t, orgA, map[string]string{"/notes/a": "before", "/notes/vm": "legit", "/notes/central": "legit too"}, central, vm)
	st1, _ := central.Status(ctx)
	if st1.Pulls.Completed <= st0.Pulls.Completed {
		t.Fatalf("central completed no bulk pull from the real VM: %+v -> %+v", st0.Pulls, st1.Pulls)
	}
	if got, err := cluster.Contents(ctx, central, orgB); err != nil || got["/notes/b"] != "before" {
		t.Fatalf("C2 on central: %v %v", got, err)
	}
	putIn(t, central, orgB, "/notes/b2", "C2 writes go on")

	// Back at once: kept out. Central's mesh refuses the connection
	// (mesh.KeepOut), so the attacker can neither announce nor be pulled
	// from, and its attempt is counted.
	refusedBefore := central.Mesh().Refused(mesh.NodeWide)[mesh.RefuseKeptOut]
	ai, err := cluster.AddrInfo(central.Addrs())
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = h.host.Connect(cctx, ai)
	cancel()
	if err == nil {
		if aerr := h.announce(ctx, central, orgA, newHead()); aerr == nil {
			t.Fatal("the attacker, kept out, connected again and announced")
		}
	}
	if got := central.Mesh().Refused(mesh.NodeWide)[mesh.RefuseKeptOut]; got <= refusedBefore {
		t.Fatalf("central did not count the kept-out peer's reconnection: %d -> %d", refusedBefore, got)
	}
	if streams.Load() != offences {
		t.Fatalf("central pulled from the attacker it keeps out: %d streams", streams.Load())
	}
}

// TestHostilePullEndlessDAGStopsAtTheBudget: a C1 member that answers with
// a valid DAG of junk reachable from the head it announced (each block
// links to the next, 8 KiB each, 32 MiB in all) gets no more stored than
// its byte budget, and the overrun is counted.
func TestHostilePullEndlessDAGStopsAtTheBudget(t *testing.T) {
	opts := testTuning()
	opts.Tuning.PullPeerBudget = 4 << 20
	opts.Tuning.PullPeerRate = 16 << 10
	opts.Tuning.PullOrgBudget = 64 << 20
	c := gatedClusterWith(t, opts, cluster.Spec{Name: "central", Role: schema.RoleCentral, Orgs: []string{orgA, orgB}})
	central := c.Node(0)
	ctx := context.Background()

	h := newHostile(t, c, hostileSpec{Role: schema.RoleVM, Orgs: []string{orgA}})
	h.answerHellos(orgA)
	var streams, sent atomic.Int64
	head := h.serveValidDAG(t, 4096, &streams, &sent)
	before := storeBytes(t, central)
	if err := h.announce(ctx, central, orgA, head); err != nil {
		t.Fatal(err)
	}
	err := cluster.WaitFor(ctx, 30*time.Second, func() (bool, error) {
		if n := refusedFor(t, central, orgA, mesh.RefuseBlockBudget); n < 1 {
			return false, fmt.Errorf("no budget refusal counted")
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	after := storeBytes(t, central)
	t.Logf("MEASURED valid junk DAG: sent %d KiB; central's store %d KiB -> %d KiB (peer budget 4096 KiB)", sent.Load()>>10, before>>10, after>>10)
	if after > before+10<<20 {
		t.Fatalf("central's store grew from %d to %d bytes, far past the 4 MiB budget", before, after)
	}
	if sent.Load() >= 32<<20 {
		t.Fatal("central read the whole DAG")
	}
	putIn(t, central, orgB, "/notes/b", "C2 writes go on")
}

// serveValidDAG makes h answer pulls from a valid DAG of n blocks of
// 8 KiB of random data, each linking to the next, and returns its head.
// It answers breadth-first from what was asked, as a real server does,
// 256 blocks a round (so a pull of it takes many rounds), and counts the
// bytes it sends.
func (h *hostile) serveValidDAG(t *testing.T, n int, streams, sent *atomic.Int64) cid.Cid {
	dag := map[cid.Cid]*merkledag.ProtoNode{}
	var prev *merkledag.ProtoNode
	for range n {
		nd := merkledag.NodeWithData(randomBlock(t, 8<<10).RawData())
		if prev != nil {
			if err := nd.AddNodeLink("next", prev); err != nil {
				t.Fatal(err)
			}
		}
		dag[nd.Cid()] = nd
		prev = nd
	}
	h.servePulls(streams, func(w *bufio.Writer, want []string) error {
		var queue []cid.Cid
		for _, s := range want {
			if c, err := cid.Decode(s); err == nil {
				queue = append(queue, c)
			}
		}
		for n := 0; len(queue) > 0 && n < 256; n++ {
			nd := dag[queue[0]]
			queue = queue[1:]
			if nd == nil {
				continue
			}
			if err := writeWireBlock(w, nd); err != nil {
				return err
			}
			sent.Add(int64(len(nd.RawData())))
			for _, l := range nd.Links() {
				queue = append(queue, l.Cid)
			}
		}
		return nil
	})
	return prev.Cid()
}

// gatedClusterWith is gatedCluster with the given options (an authority
// is added).
func gatedClusterWith(t *testing.T, opts cluster.Options, specs ...cluster.Spec) *cluster.Cluster {
	t.Helper()
	c := gatedCluster(t)
	opts.Authority, opts.Network, opts.API = c.Options().Authority, c.Options().Network, c.Options().API
	c.SetOptions(opts)
	for _, s := range specs {
		if _, err := c.Add(context.Background(), s); err != nil {
			t.Fatalf("start %s: %v", s.Name, err)
		}
	}
	return c
}

// TestHostilePullStopsBeforeTheDiskGuard runs central on a 64 MiB tmpfs
// filled to a little more than twice the store's reserve free, with the
// byte budgets off, and has a C1 member answer its pull with a valid DAG
// of 32 MiB of junk: the pull stops at the peer threshold, the disk guard
// does not trip, and central's own writes in both organisations go on.
func TestHostilePullStopsBeforeTheDiskGuard(t *testing.T) {
	disk := disktest.Tmpfs(t, 64<<20)
	auth, err := policy.GenerateAuthority()
	if err != nil {
		t.Fatal(err)
	}
	opts := testTuning()
	opts.Authority = auth
	opts.Tuning.PullPeerBudget, opts.Tuning.PullOrgBudget = -1, -1
	c := cluster.NewCluster(disk, opts)
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close cluster: %v", err)
		}
	})
	if _, err := c.Add(context.Background(), cluster.Spec{Name: "central", Role: schema.RoleCentral, Orgs: []string{orgA, orgB}}); err != nil {
		t.Fatal(err)
	}
	central := c.Node(0)
	ctx := context.Background()
	putIn(t, central, orgA, "/notes/a", "before")

	sp := central.Store().Space()
	leave := 2*sp.Reserve + 8<<20
	if sp.Free < leave+1<<20 {
		t.Fatalf("too little space on the tmpfs: %+v", sp)
	}
	disktest.Allocate(t, disk, int64(sp.Free-leave))
	before := central.Store().Space()

	h := newHostile(t, c, hostileSpec{Role: schema.RoleVM, Orgs: []string{orgA}})
	h.answerHellos(orgA)
	var streams, sent atomic.Int64
	head := h.serveValidDAG(t, 4096, &streams, &sent)
	if err := h.announce(ctx, central, orgA, head); err != nil {
		t.Fatal(err)
	}
	err = cluster.WaitFor(ctx, 30*time.Second, func() (bool, error) {
		if central.Store().PeerBlocksRefused() == 0 {
			return false, fmt.Errorf("no block from the peer refused for space; %+v", central.Store().Space())
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	after := central.Store().Space()
	t.Logf("MEASURED disk: free %d KiB before the pull, %d KiB after (reserve %d KiB); the peer sent %d KiB",
		before.Free>>10, after.Free>>10, after.Reserve>>10, sent.Load()>>10)
	if after.Full || after.Refused != before.Refused || after.Free < after.Reserve {
		t.Fatalf("the disk guard tripped: %+v", after)
	}
	putIn(t, central, orgB, "/notes/b", "another organisation's write")
	putIn(t, central, orgA, "/notes/a2", "this organisation's own write")
	if st, err := central.Status(ctx); err != nil || st.Verdict == node.VerdictErrors {
		t.Fatalf("status after the pull stopped: %s %q %v", st.Verdict, st.Problems, err)
	}
}

// TestHostilePullFloodIsKeptOutAtOnce: with the byte budgets off, a C1
// member whose valid junk DAG runs past the bound of one pull is
// disconnected after that one pull, and counted.
func TestHostilePullFloodIsKeptOutAtOnce(t *testing.T) {
	opts := testTuning()
	opts.Tuning.PullPeerBudget, opts.Tuning.PullOrgBudget = -1, -1
	opts.Tuning.PullMaxBytes = 2 << 20
	c := gatedClusterWith(t, opts, cluster.Spec{Name: "central", Role: schema.RoleCentral, Orgs: []string{orgA}})
	central := c.Node(0)
	ctx := context.Background()
	h := newHostile(t, c, hostileSpec{Role: schema.RoleVM, Orgs: []string{orgA}})
	h.answerHellos(orgA)
	var streams, sent atomic.Int64
	head := h.serveValidDAG(t, 1024, &streams, &sent)
	h.connect(ctx, central)
	var first []network.Conn
	err := cluster.WaitFor(ctx, 10*time.Second, func() (bool, error) {
		if first = central.Mesh().Host().Network().ConnsToPeer(h.ID()); len(first) == 0 {
			return false, fmt.Errorf("not connected")
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.announce(ctx, central, orgA, head); err != nil {
		t.Fatal(err)
	}
	err = cluster.WaitFor(ctx, 30*time.Second, func() (bool, error) {
		if refusedFor(t, central, orgA, mesh.RefuseBlockBudget) == 0 {
			return false, fmt.Errorf("no refusal counted")
		}
		for _, cn := range first {
			if !cn.IsClosed() {
				return false, fmt.Errorf("the flooding peer is still connected")
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if sent.Load() > 3<<20 {
		t.Fatalf("central read %d bytes of a pull bounded at 2 MiB", sent.Load())
	}
}

// TestBitswapStopsBeforeTheDiskGuard: central, on a 64 MiB tmpfs with a
// little more than twice the store's reserve free and the byte budgets off,
// meets a C1 VM holding 24 MiB of records. The bulk pull stops at the peer
// threshold; go-ds-crdt then asks bitswap for the rest, and those blocks
// stop there too: the disk guard does not trip and central's own writes go
// on.
func TestBitswapStopsBeforeTheDiskGuard(t *testing.T) {
	disk := disktest.Tmpfs(t, 64<<20)
	auth, err := policy.GenerateAuthority()
	if err != nil {
		t.Fatal(err)
	}
	opts := testTuning()
	opts.Authority = auth
	opts.Tuning.PullPeerBudget, opts.Tuning.PullOrgBudget = -1, -1
	ctx := context.Background()
	// The VM keeps its data off the small disk: a cluster of its own.
	cv := cluster.NewCluster(t.TempDir(), opts)
	t.Cleanup(func() {
		if err := cv.Close(); err != nil {
			t.Errorf("close cluster: %v", err)
		}
	})
	if _, err := cv.Add(ctx, cluster.Spec{Name: "vm1", Role: schema.RoleVM, Orgs: []string{orgA}}); err != nil {
		t.Fatal(err)
	}
	vm := cv.Node(0)
	rep, err := vm.Replica(orgA)
	if err != nil {
		t.Fatal(err)
	}
	writeRandomLogs(t, rep, 48, 64, 8<<10)

	c := cluster.NewCluster(disk, opts)
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close cluster: %v", err)
		}
	})
	if _, err := c.Add(ctx, cluster.Spec{Name: "central", Role: schema.RoleCentral, Orgs: []string{orgA, orgB}}); err != nil {
		t.Fatal(err)
	}
	central := c.Node(0)
	sp := central.Store().Space()
	leave := 2*sp.Reserve + 6<<20
	if sp.Free < leave+1<<20 {
		t.Fatalf("too little space on the tmpfs: %+v", sp)
	}
	disktest.Allocate(t, disk, int64(sp.Free-leave))
	before := central.Store().Space()

	ai, err := cluster.AddrInfo(central.Addrs())
	if err != nil {
		t.Fatal(err)
	}
	if err := vm.Mesh().Connect(ctx, ai); err != nil {
		t.Fatal(err)
	}
	// The pull stops once, then a block bitswap brings is refused (or,
	// without that, the guard trips).
	err = cluster.WaitFor(ctx, 60*time.Second, func() (bool, error) {
		if n, sp := central.Store().PeerBlocksRefused(), central.Store().Space(); n < 2 && sp.Refused == before.Refused {
			return false, fmt.Errorf("%d blocks from peers refused for space; %+v", n, sp)
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	after := central.Store().Space()
	st, _ := central.Status(ctx)
	t.Logf("MEASURED disk: free %d KiB before, %d KiB after (reserve %d KiB); %d blocks from peers refused; pulls %+v",
		before.Free>>10, after.Free>>10, after.Reserve>>10, central.Store().PeerBlocksRefused(), st.Pulls)
	if after.Full || after.Refused != before.Refused || after.Free < after.Reserve {
		t.Fatalf("the disk guard tripped: %+v", after)
	}
	putIn(t, central, orgB, "/notes/b", "another organisation's write")
	putIn(t, central, orgA, "/notes/a", "this organisation's own write")
}

// TestBitswapStopsAtTheOrganisationBudget: central, with a 4 MiB budget
// for C1 and no per-peer one, meets a C1 VM holding 24 MiB of records. The
// bulk pull stops at the organisation's budget, and so do the blocks
// go-ds-crdt then asks bitswap for: central's store grows by a fraction of
// the 24 MiB, and the refusals are counted.
func TestBitswapStopsAtTheOrganisationBudget(t *testing.T) {
	opts := testTuning()
	opts.Tuning.PullPeerBudget = -1
	opts.Tuning.PullOrgBudget = 4 << 20
	opts.Tuning.PullOrgRate = 16 << 10
	c := gatedClusterWith(t, opts,
		cluster.Spec{Name: "central", Role: schema.RoleCentral, Orgs: []string{orgA, orgB}},
		cluster.Spec{Name: "vm1", Role: schema.RoleVM, Orgs: []string{orgA}, Peers: []int{}})
	central, vm := c.Node(0), c.Node(1)
	ctx := context.Background()
	rep, err := vm.Replica(orgA)
	if err != nil {
		t.Fatal(err)
	}
	writeRandomLogs(t, rep, 48, 64, 8<<10)
	before := storeBytes(t, central)
	ai, err := cluster.AddrInfo(central.Addrs())
	if err != nil {
		t.Fatal(err)
	}
	if err := vm.Mesh().Connect(ctx, ai); err != nil {
		t.Fatal(err)
	}
	// The pull's refusal, then at least one of bitswap's.
	err = cluster.WaitFor(ctx, 60*time.Second, func() (bool, error) {
		if n := refusedFor(t, central, orgA, mesh.RefuseBlockBudget); n < 2 {
			return false, fmt.Errorf("%d budget refusals counted", n)
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	after := storeBytes(t, central)
	st, _ := central.Status(ctx)
	t.Logf("MEASURED organisation budget 4096 KiB: central's store %d KiB -> %d KiB for a VM holding 24 MiB; %d budget refusals; pulls %+v",
		before>>10, after>>10, refusedFor(t, central, orgA, mesh.RefuseBlockBudget), st.Pulls)
	if after > before+16<<20 {
		t.Fatalf("central's store grew from %d to %d bytes with a 4 MiB budget", before, after)
	}
	putIn(t, central, orgB, "/notes/b", "C2 writes go on")
}

// writeRandomLogs writes groups × per records of size random bytes into
// rep, one delta per group: 24 MiB for 48 × 64 × 8 KiB.
func writeRandomLogs(t *testing.T, rep *crdt.Replica, groups, per, size int) {
	t.Helper()
	for d := range groups {
		ops := make([]crdt.Op, per)
		for i := range ops {
			ops[i] = crdt.Op{Key: fmt.Sprintf("/logs/%02d/%02d", d, i), Value: randomBlock(t, size).RawData()}
		}
		if err := rep.Apply(context.Background(), ops); err != nil {
			t.Fatal(err)
		}
	}
}
