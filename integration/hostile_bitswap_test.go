package integration

// The hostile-peer kit's bitswap client, and the tests that blocks leave a
// node only for peers that may read the organisation each block belongs to
// (issue 14): by dag-pull and by bitswap, from a VM and from central,
// records and bundle payloads.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/boxo/bitswap"
	bsmsg "github.com/ipfs/boxo/bitswap/message"
	bsnetwork "github.com/ipfs/boxo/bitswap/network"
	bsnet "github.com/ipfs/boxo/bitswap/network/bsnet"
	"github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/examnode/examnode/crdt"
	"github.com/examnode/examnode/internal/cluster"
	"github.com/examnode/examnode/mesh"
	"github.com/examnode/examnode/node"
	"github.com/examnode/examnode/schema"
)

// hostileBitswap is a bitswap client and server on the attacker's host,
// over an in-memory blockstore. Every block any bitswap message brings it
// (asked for or not) is kept in the attacker's buffer and counted.
type hostileBitswap struct {
	h      *hostile
	bs     *bitswap.Bitswap
	blocks atomic.Int64
}

// bitswap starts the attacker's bitswap; it closes when the test ends,
// before the host.
func (h *hostile) bitswap() *hostileBitswap {
	hb := &hostileBitswap{h: h}
	net := &recordingBitswapNet{BitSwapNetwork: bsnet.NewFromIpfsHost(h.host), hb: hb}
	store := blockstore.NewBlockstore(dssync.MutexWrap(ds.NewMapDatastore()))
	hb.bs = bitswap.New(context.Background(), net, nil, store)
	h.t.Cleanup(func() { _ = hb.bs.Close() })
	return hb
}

// recordingBitswapNet hands bitswap every message the network receives,
// keeping each block's bytes first.
type recordingBitswapNet struct {
	bsnetwork.BitSwapNetwork
	hb *hostileBitswap
}

func (n *recordingBitswapNet) Start(rs ...bsnetwork.Receiver) {
	wrapped := make([]bsnetwork.Receiver, len(rs))
	for i, r := range rs {
		wrapped[i] = recordingReceiver{Receiver: r, hb: n.hb}
	}
	n.BitSwapNetwork.Start(wrapped...)
}

type recordingReceiver struct {
	bsnetwork.Receiver
	hb *hostileBitswap
}

func (r recordingReceiver) ReceiveMessage(ctx context.Context, from peer.ID, m bsmsg.BitSwapMessage) {
	for _, b := range m.Blocks() {
		r.hb.h.keep(b.RawData())
		r.hb.blocks.Add(1)
	}
	r.Receiver.ReceiveMessage(ctx, from, m)
}

// want asks connected peers for cs by bitswap until every block came, done
// returns true or the wait ends, and returns how many blocks bitswap
// delivered. done is polled; a refusal the target counted is how a test
// knows its want arrived.
func (hb *hostileBitswap) want(t *testing.T, cs []cid.Cid, wait time.Duration, done func() bool) int {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := hb.bs.GetBlocks(ctx, cs)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	var got atomic.Int64
	drained := make(chan struct{})
	go func() { // owned here: ends when ch closes, after cancel at the latest
		defer close(drained)
		for b := range ch {
			hb.h.keep(b.RawData())
			got.Add(1)
		}
	}()
	_ = cluster.WaitFor(ctx, wait, func() (bool, error) { return got.Load() == int64(len(cs)) || done(), nil })
	cancel()
	<-drained
	return int(got.Load())
}

func never() bool { return false }

// markerBlocks lists the blocks of n that hold marker in clear.
func markerBlocks(t *testing.T, n *node.Node, marker []byte) []cid.Cid {
	t.Helper()
	var out []cid.Cid
	for _, c := range blocks(t, n) {
		b, err := n.Store().Blockstore().Get(t.Context(), c)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b.RawData(), marker) {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		t.Fatalf("no block of %s holds the marker %q", n.ID(), marker)
	}
	return out
}

func refusedBlocks(n *node.Node, org string) uint64 {
	return n.Mesh().Refused(org)[mesh.RefuseBlockNotReadable]
}

// blockLeakCluster: central (0) of A and B, a VM of A (1) and a VM of B
// (2); A holds a raw value and an eligibility whose test taker's name is
// the marker, on every node of A. It returns the marker, and A's heads
// and marker blocks as held on the VM of A.
func blockLeakCluster(t *testing.T) (*cluster.Cluster, []byte, []cid.Cid) {
	t.Helper()
	c := gatedCluster(t,
		cluster.Spec{Name: "central", Role: schema.RoleCentral, Orgs: []string{orgA, orgB}},
		cluster.Spec{Name: "vm-a", Role: schema.RoleVM, Orgs: []string{orgA}},
		cluster.Spec{Name: "vm-b", Role: schema.RoleVM, Orgs: []string{orgB}},
	)
	central, vmA := c.Node(0), c.Node(1)
	ctx := context.Background()
	marker := []byte(fmt.Sprintf("MARKER-of-A-%d", time.Now().UnixNano()))
	putIn(t, vmA, orgA, "/notes/secret", "raw value "+string(marker))
	body := fmt.Sprintf(`{"test_center":"c1","delivery":"d1","test_takers":["tt-%s"]}`, marker)
	if _, err := client(central).PutRecord(ctx, orgA, "eligibilities", "el-secret", []byte(body)); err != nil {
		t.Fatalf("central writes the eligibility: %v", err)
	}
	err := cluster.WaitFor(ctx, 30*time.Second, func() (bool, error) {
		for _, n := range []*node.Node{central, vmA} {
			got, err := cluster.Contents(ctx, n, orgA)
			if err != nil {
				return false, err
			}
			if !strings.Contains(got["/notes/secret"], string(marker)) || got["/eligibilities/el-secret"] == "" {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("A's records did not reach central and vm-a: %v", err)
	}
	rep, err := vmA.Replica(orgA)
	if err != nil {
		t.Fatal(err)
	}
	mb := markerBlocks(t, vmA, marker)
	if len(mb) < 2 {
		t.Fatal("want the raw value's and the eligibility's blocks to hold the marker")
	}
	var want []cid.Cid
	for _, c := range append(rep.Heads(ctx), mb...) {
		if !slices.ContainsFunc(want, c.Equals) {
			want = append(want, c)
		}
	}
	return c, marker, want
}

func cidStrings(cs []cid.Cid) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.String()
	}
	return out
}

// A VM member of B asks central's dag-pull for A's heads and marker
// blocks, naming B (its own organisation) and naming A; a stranger tries
// too. Nothing of A comes back, and central counts the refusals for A,
// where `examnode sync` and `examnode refused` show them. A member of A
// gets the same blocks (so the refusal is the node's, not the kit's).
func TestDagPullServesOnlyReadableBlocks(t *testing.T) {
	c, marker, want := blockLeakCluster(t)
	central, vmA := c.Node(0), c.Node(1)
	ctx := context.Background()
	attacker := newHostile(t, c, hostileSpec{Role: schema.RoleVM, Orgs: []string{orgB}})
	attacker.connect(ctx, central)
	if reply, err := attacker.hello(ctx, central.ID(), []string{string(schema.RoleVM)}, []string{orgB}); err != nil || reply.Error != "" {
		t.Fatalf("hello: %v %q", err, reply.Error)
	}
	before := refusedBlocks(central, orgA)
	n, err := attacker.pullFrom(ctx, central.ID(), orgB, cidStrings(want))
	if err != nil {
		t.Fatalf("pull naming %s: %v", orgB, err)
	}
	if n != 0 {
		t.Fatalf("central sent %d blocks of %s to a member of %s", n, orgA, orgB)
	}
	if _, err := attacker.pullFrom(ctx, central.ID(), orgA, cidStrings(want)); !errors.Is(err, errNotServed) {
		t.Fatalf("pull naming %s: %v; want a refusal", orgA, err)
	}
	if attacker.receivedContains(marker) {
		t.Fatalf("a member of %s received %s's marker by dag-pull", orgB, orgA)
	}
	// Each of the wanted blocks refused once, and the request naming A.
	if got := refusedBlocks(central, orgA) - before; got < uint64(len(want))+1 {
		t.Fatalf("central counted %d refusals for %s, want at least %d", got, orgA, len(want)+1)
	}
	rf, err := client(central).Refused(ctx, orgA, 0)
	if err != nil || rf.Arrived[mesh.RefuseBlockNotReadable] == 0 {
		t.Fatalf("examnode refused %s: %+v, %v", orgA, rf.Arrived, err)
	}
	sy, err := client(central).Sync(ctx, orgA)
	if err != nil || len(sy) != 1 || sy[0].RefusedByReason[mesh.RefuseBlockNotReadable] == 0 {
		t.Fatalf("examnode sync %s: %+v, %v", orgA, sy, err)
	}
	metrics, err := client(central).Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	line := fmt.Sprintf(`examnode_refused_total{org=%q,reason=%q}`, orgA, mesh.RefuseBlockNotReadable)
	if !bytes.Contains(metrics, []byte(line)) {
		t.Fatalf("the metrics have no %s", line)
	}

	stranger := newHostile(t, c, hostileSpec{Stranger: true})
	if ai, err := cluster.AddrInfo(vmA.Addrs()); err == nil {
		_ = stranger.host.Connect(ctx, ai) // the node may drop it at once
	}
	for _, org := range []string{orgA, orgB} {
		if n, err := stranger.pullFrom(ctx, vmA.ID(), org, cidStrings(want)); n != 0 || err == nil {
			t.Fatalf("a stranger's pull naming %s: %d blocks, %v", org, n, err)
		}
	}
	if stranger.receivedContains(marker) {
		t.Fatal("a stranger received A's marker by dag-pull")
	}

	member := newHostile(t, c, hostileSpec{Role: schema.RoleVM, Orgs: []string{orgA}})
	for _, target := range []*node.Node{central, vmA} {
		member.connect(ctx, target)
		if reply, err := member.hello(ctx, target.ID(), []string{string(schema.RoleVM)}, []string{orgA}); err != nil || reply.Error != "" {
			t.Fatalf("hello: %v %q", err, reply.Error)
		}
		if n, err := member.pullFrom(ctx, target.ID(), orgA, cidStrings(want)); err != nil || n < len(want) {
			t.Fatalf("a member of %s pulls %d of %d blocks: %v", orgA, n, len(want), err)
		}
	}
	if !member.receivedContains(marker) {
		t.Fatalf("a member of %s did not receive its marker by dag-pull", orgA)
	}
}

// A VM member of B wants A's heads and marker blocks by bitswap from the
// VM of A and from central: it gets no block, the marker never arrives,
// and each target counts the refusal for A. A member of A, asking the
// same, gets every block from each.
func TestBitswapServesOnlyReadableBlocks(t *testing.T) {
	c, marker, want := blockLeakCluster(t)
	central, vmA := c.Node(0), c.Node(1)
	ctx := context.Background()
	for _, target := range []*node.Node{vmA, central} {
		attacker := newHostile(t, c, hostileSpec{Role: schema.RoleVM, Orgs: []string{orgB}})
		attacker.connect(ctx, target)
		if reply, err := attacker.hello(ctx, target.ID(), []string{string(schema.RoleVM)}, []string{orgB}); err != nil {
			t.Fatalf("hello: %v %q", err, reply.Error)
		}
		hb := attacker.bitswap()
		before := refusedBlocks(target, orgA)
		refused := func() bool { return refusedBlocks(target, orgA)-before >= uint64(len(want)) }
		got := hb.want(t, want, 20*time.Second, func() bool { return refused() || hb.blocks.Load() > 0 })
		if got != 0 || hb.blocks.Load() != 0 || attacker.receivedContains(marker) {
			t.Fatalf("a member of %s received %d blocks (%d in messages) of %s by bitswap from %s; marker: %v",
				orgB, got, hb.blocks.Load(), orgA, target.ID(), attacker.receivedContains(marker))
		}
		if !refused() {
			t.Fatalf("%s counted %d refusals for %s, want %d (did the wants arrive?)", target.ID(), refusedBlocks(target, orgA)-before, orgA, len(want))
		}
	}
	for _, target := range []*node.Node{vmA, central} {
		member := newHostile(t, c, hostileSpec{Role: schema.RoleVM, Orgs: []string{orgA}})
		member.connect(ctx, target)
		if reply, err := member.hello(ctx, target.ID(), []string{string(schema.RoleVM)}, []string{orgA}); err != nil || reply.Error != "" {
			t.Fatalf("hello: %v %q", err, reply.Error)
		}
		hb := member.bitswap()
		if got := hb.want(t, want, 30*time.Second, never); got != len(want) {
			t.Fatalf("a member of %s got %d of %d blocks by bitswap from %s", orgA, got, len(want), target.ID())
		}
		if !member.receivedContains(marker) {
			t.Fatalf("a member of %s did not receive its marker by bitswap from %s", orgA, target.ID())
		}
	}
}

// A bundle's payload is a block DAG of its organisation: a VM member of
// another organisation asking the bundle's VM for its root and blocks by
// bitswap gets none of them; a member of the organisation gets the root.
func TestBundlePayloadOnlyToReaders(t *testing.T) {
	c := gatedBundleCluster(t)
	ctx := context.Background()
	arch, vm1 := c.Node(0), c.Node(1)
	waitRecipient(t, vm1, arch)
	finishExecutionVia(t, c.Node(3), vm1, "e1")
	made := waitBundle(t, vm1, "e1", "sealed on vm1", func(b node.BundleStatus) bool { return b.Root != "" && b.Local.Held })
	root, err := cid.Decode(made.Root)
	if err != nil {
		t.Fatal(err)
	}
	payload := []cid.Cid{root}
	rb, err := vm1.Store().Blockstore().Get(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	datas := [][]byte{rb.RawData()}
	for _, c := range blocks(t, vm1) { // the root's children, if the payload has more than one leaf
		if b, err := vm1.Store().Blockstore().Get(ctx, c); err == nil && bytes.Contains(rb.RawData(), c.Hash()) && !bytes.Equal(c.Hash(), root.Hash()) {
			payload = append(payload, c)
			datas = append(datas, b.RawData())
		}
	}
	receivedAny := func(h *hostile) bool {
		for _, d := range datas {
			if h.receivedContains(d[:min(len(d), 256)]) {
				return true
			}
		}
		return false
	}
	const other = "centre-2"
	attacker := newHostile(t, c, hostileSpec{Role: schema.RoleVM, Orgs: []string{other}})
	attacker.connect(ctx, vm1)
	if _, err := attacker.hello(ctx, vm1.ID(), []string{string(schema.RoleVM)}, []string{other}); err != nil {
		t.Fatalf("hello: %v", err)
	}
	hb := attacker.bitswap()
	before := refusedBlocks(vm1, org)
	refused := func() bool { return refusedBlocks(vm1, org)-before >= uint64(len(payload)) }
	got := hb.want(t, payload, 20*time.Second, func() bool { return refused() || hb.blocks.Load() > 0 })
	if got != 0 || hb.blocks.Load() != 0 || receivedAny(attacker) {
		t.Fatalf("a member of %s received %d payload blocks (%d in messages) of a bundle of %s", other, got, hb.blocks.Load(), org)
	}
	if !refused() {
		t.Fatalf("vm1 counted %d refusals for %s, want %d", refusedBlocks(vm1, org)-before, org, len(payload))
	}

	member := newHostile(t, c, hostileSpec{Role: schema.RoleVM, Orgs: []string{org}})
	member.connect(ctx, vm1)
	if reply, err := member.hello(ctx, vm1.ID(), []string{string(schema.RoleVM)}, []string{org}); err != nil || reply.Error != "" {
		t.Fatalf("hello: %v %q", err, reply.Error)
	}
	mb := member.bitswap()
	if got := mb.want(t, payload, 30*time.Second, never); got != len(payload) {
		t.Fatalf("a member of %s got %d of %d payload blocks", org, got, len(payload))
	}
	if !receivedAny(member) {
		t.Fatal("a member did not receive the bundle's payload")
	}
}

// A store written before the block index (simulated: every index key
// deleted while the node is stopped) serves nothing unindexed; on restart
// the node indexes each replica's blocks from its heads, so a member of A
// gets them again and a member of B still gets none. (A peer's pull would
// index them too: the node restarts cut off from its peers.)
func TestBlocksIndexedOnUpgrade(t *testing.T) {
	c, marker, want := blockLeakCluster(t)
	vmA := c.Node(1)
	ctx := context.Background()
	dir := c.Members()[1].Dir
	if err := c.Stop(1); err != nil {
		t.Fatal(err)
	}
	s, err := crdt.OpenStore(filepath.Join(dir, node.StoreDir), crdt.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dropped := 0
	for _, prefix := range []string{"/blockorgs", "/blockindexed"} {
		res, err := s.Datastore().Query(ctx, query.Query{Prefix: prefix, KeysOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		for e := range res.Next() {
			if e.Error != nil {
				t.Fatal(e.Error)
			}
			if err := s.Datastore().Delete(ctx, ds.NewKey(e.Key)); err != nil {
				t.Fatal(err)
			}
			dropped++
		}
		_ = res.Close()
	}
	for _, c := range want {
		if orgs, err := s.BlockOrgs(ctx, c); err != nil || len(orgs) != 0 {
			t.Fatalf("block %s still indexed as %v (%v)", c, orgs, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if dropped < len(want) {
		t.Fatalf("dropped %d index keys for %d blocks", dropped, len(want))
	}
	// Alone: no peer of A may give it its blocks again (which would index
	// them too).
	c.Partition(1, 0)
	c.Partition(1, 2)
	if err := c.Restart(ctx, 1); err != nil {
		t.Fatal(err)
	}
	vmA = c.Node(1)
	for _, c := range want {
		if orgs, err := vmA.Store().BlockOrgs(ctx, c); err != nil || len(orgs) != 1 || orgs[0] != orgA {
			t.Fatalf("after restart, block %s belongs to %v (%v), want [%s]", c, orgs, err, orgA)
		}
	}
	attacker := newHostile(t, c, hostileSpec{Role: schema.RoleVM, Orgs: []string{orgB}})
	member := newHostile(t, c, hostileSpec{Role: schema.RoleVM, Orgs: []string{orgA}})
	for _, h := range []*hostile{attacker, member} {
		h.connect(ctx, vmA)
	}
	if n, err := attacker.pullFrom(ctx, vmA.ID(), orgB, cidStrings(want)); n != 0 || attacker.receivedContains(marker) {
		t.Fatalf("a member of %s pulled %d blocks of %s after the upgrade (%v)", orgB, n, orgA, err)
	}
	if reply, err := member.hello(ctx, vmA.ID(), []string{string(schema.RoleVM)}, []string{orgA}); err != nil || reply.Error != "" {
		t.Fatalf("hello: %v %q", err, reply.Error)
	}
	if n, err := member.pullFrom(ctx, vmA.ID(), orgA, cidStrings(want)); err != nil || n < len(want) || !member.receivedContains(marker) {
		t.Fatalf("a member of %s pulled %d of %d blocks after the upgrade: %v", orgA, n, len(want), err)
	}
}
