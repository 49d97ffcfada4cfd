package crdt

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/boxo/ipld/merkledag"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"github.com/examnode/examnode/internal/disktest"
)

// junkBlock is a block of size random bytes under its own (valid) CID.
func junkBlock(t testing.TB, size int) blocks.Block {
	t.Helper()
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	c, err := cid.V1Builder{Codec: cid.Raw, MhType: mh.SHA2_256}.Sum(data)
	if err != nil {
		t.Fatal(err)
	}
	b, err := blocks.NewBlockWithCid(data, c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// countBlocks is how many blocks bs holds.
func countBlocks(t testing.TB, bs blockstore.Blockstore) int {
	t.Helper()
	keys, err := bs.AllKeysChan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range keys {
		n++
	}
	return n
}

// hostileServer answers every pull request on one end of a pipe with what
// answer writes, until the requester closes its end.
func hostileServer(t *testing.T, answer func(w *bufio.Writer, req pullRequest)) io.ReadWriteCloser {
	t.Helper()
	c1, c2 := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer c2.Close()
		br := bufio.NewReader(c2)
		bw := bufio.NewWriter(c2)
		for {
			var req pullRequest
			if readFrame(br, maxPullRequestLen, &req) != nil {
				return
			}
			if writeFrame(bw, pullStatus{}) != nil {
				return
			}
			answer(bw, req)
			if writeBlockEnd(bw) != nil || bw.Flush() != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { c1.Close(); <-done })
	return c1
}

// TestPullStoresNoUnrequestedBlock: a peer that answers a pull with blocks
// nobody asked for (valid CIDs of their own random data) gets none of them
// stored, and the pull stops with ErrUnrequestedBlock; so does a block
// sent twice in a round. Blocks that were asked for and came before the
// junk are kept.
func TestPullStoresNoUnrequestedBlock(t *testing.T) {
	src := memBlockstore()
	ctx := context.Background()
	leaf := merkledag.NodeWithData([]byte("leaf"))
	head := merkledag.NodeWithData([]byte("head"))
	if err := head.AddNodeLink("leaf", leaf); err != nil {
		t.Fatal(err)
	}
	for _, nd := range []*merkledag.ProtoNode{leaf, head} {
		if err := src.Put(ctx, nd); err != nil {
			t.Fatal(err)
		}
	}
	junk := make([]blocks.Block, 64)
	for i := range junk {
		junk[i] = junkBlock(t, 8<<10)
	}
	for _, c := range []struct {
		name   string
		answer func(w *bufio.Writer, req pullRequest)
		kept   int // blocks dst holds after
	}{
		{"junk only", func(w *bufio.Writer, _ pullRequest) {
			for _, b := range junk {
				_ = writeBlock(w, b)
			}
		}, 0},
		{"the head, then junk", func(w *bufio.Writer, _ pullRequest) {
			_ = writeBlock(w, head)
			for _, b := range junk {
				_ = writeBlock(w, b)
			}
		}, 1},
		{"the head twice", func(w *bufio.Writer, _ pullRequest) {
			_ = writeBlock(w, head)
			_ = writeBlock(w, head)
		}, 1},
		{"the whole DAG, then junk", func(w *bufio.Writer, _ pullRequest) {
			_ = writeBlock(w, head)
			_ = writeBlock(w, leaf)
			_ = writeBlock(w, junk[0])
		}, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			dst := openStore(t, t.TempDir())
			defer dst.Close()
			conn := hostileServer(t, c.answer)
			admitted := 0
			_, err := PullWith(ctx, conn, dst.Blockstore(), "c1", []cid.Cid{head.Cid()}, nil, PullOptions{
				Admit: func(n int) error { admitted += n; return nil },
			})
			if !errors.Is(err, ErrUnrequestedBlock) {
				t.Fatalf("pull answered with junk: %v, want ErrUnrequestedBlock", err)
			}
			for _, b := range junk {
				if has, _ := dst.Blockstore().Has(ctx, b.Cid()); has {
					t.Fatalf("an unrequested block was stored")
				}
			}
			if n := countBlocks(t, dst.Blockstore()); n != c.kept {
				t.Fatalf("dst holds %d blocks, want %d", n, c.kept)
			}
			if admitted > len(head.RawData())+len(leaf.RawData()) {
				t.Fatalf("%d bytes passed Admit, more than the DAG", admitted)
			}
		})
	}
}

// deepDAG builds in bs a chain of n blocks of size bytes of data each, and
// a head linking to the chain's top and, as a shortcut, to the block
// depth deep from the bottom: a pull walks that block in its first round
// and is sent it again when a later round reaches it through the chain.
func deepDAG(t testing.TB, bs blockstore.Blockstore, n, size, depth int) (head cid.Cid, all []cid.Cid) {
	t.Helper()
	ctx := context.Background()
	var prev, shortcut *merkledag.ProtoNode
	var batch []blocks.Block
	data := make([]byte, size)
	for i := range n {
		copy(data, fmt.Sprintf("delta %d ", i))
		nd := merkledag.NodeWithData(append([]byte{}, data...))
		if prev != nil {
			if err := nd.AddNodeLink("prev", prev); err != nil {
				t.Fatal(err)
			}
		}
		if i == depth {
			shortcut = nd
		}
		batch = append(batch, nd)
		all = append(all, nd.Cid())
		prev = nd
	}
	h := merkledag.NodeWithData([]byte("head"))
	if err := h.AddNodeLink("top", prev); err != nil {
		t.Fatal(err)
	}
	if shortcut != nil {
		if err := h.AddNodeLink("shortcut", shortcut); err != nil {
			t.Fatal(err)
		}
	}
	batch = append(batch, h)
	all = append(all, h.Cid())
	if err := bs.PutMany(ctx, batch); err != nil {
		t.Fatal(err)
	}
	return h.Cid(), all
}

// TestPullDeepDAGWithMergesCompletes: a legitimate pull of a DAG deeper
// than many rounds, where a later round sends again a block an earlier one
// sent (the server does not know), stores every block and refuses nothing.
func TestPullDeepDAGWithMergesCompletes(t *testing.T) {
	ctx := context.Background()
	src := &countingGets{Blockstore: memBlockstore(), n: map[cid.Cid]int{}}
	head, all := deepDAG(t, src, 3*PullMaxBlocks+100, 64, 10)
	dst := openStore(t, t.TempDir())
	defer dst.Close()
	c1, c2 := net.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- ServePull(ctx, c2, src, allowAll)
		c2.Close()
	}()
	st, err := PullWith(ctx, c1, dst.Blockstore(), "c1", []cid.Cid{head}, nil, PullOptions{Admit: dst.AdmitPeerBlock})
	c1.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st.Rounds < 4 || st.Blocks != len(all) {
		t.Fatalf("pulled %d blocks in %d rounds, want all %d in 4 or more", st.Blocks, st.Rounds, len(all))
	}
	for _, c := range all {
		if has, _ := dst.Blockstore().Has(ctx, c); !has {
			t.Fatalf("block %s missing after the pull", c)
		}
	}
	again := 0
	for _, k := range src.n {
		if k > 1 {
			again++
		}
	}
	if again == 0 {
		t.Fatal("the server sent no block twice: the test does not cover a block sent again in a later round")
	}
}

// countingGets counts the reads of each block (the server's sends).
type countingGets struct {
	blockstore.Blockstore
	mu sync.Mutex
	n  map[cid.Cid]int
}

func (c *countingGets) Get(ctx context.Context, k cid.Cid) (blocks.Block, error) {
	c.mu.Lock()
	c.n[k]++
	c.mu.Unlock()
	return c.Blockstore.Get(ctx, k)
}

// TestPullStopsWhereAdmitRefuses: a valid DAG larger than what Admit lets
// through (a byte budget) stops the pull with Admit's error, having stored
// no more than Admit allowed; and a pull's bound on bytes read stops it
// with ErrPullTooLarge.
func TestPullStopsWhereAdmitRefuses(t *testing.T) {
	ctx := context.Background()
	src := memBlockstore()
	head, _ := deepDAG(t, src, 2000, 8<<10, -1)
	errBudget := errors.New("over budget")
	serve := func() io.ReadWriteCloser {
		c1, c2 := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = ServePull(ctx, c2, src, allowAll)
			c2.Close()
		}()
		t.Cleanup(func() { c1.Close(); <-done })
		return c1
	}

	dst := openStore(t, t.TempDir())
	defer dst.Close()
	const budget = 1 << 20
	left := budget
	_, err := PullWith(ctx, serve(), dst.Blockstore(), "c1", []cid.Cid{head}, nil, PullOptions{Admit: func(n int) error {
		if n > left {
			return errBudget
		}
		left -= n
		return nil
	}})
	if !errors.Is(err, errBudget) {
		t.Fatalf("pull over the budget: %v, want the budget's error", err)
	}
	stored := 0
	keys, _ := dst.Blockstore().AllKeysChan(ctx)
	for c := range keys {
		b, _ := dst.Blockstore().Get(ctx, c)
		stored += len(b.RawData())
	}
	if stored > budget || stored < budget/2 {
		t.Fatalf("stored %d bytes with a budget of %d", stored, budget)
	}

	dst2 := openStore(t, t.TempDir())
	defer dst2.Close()
	_, err = PullWith(ctx, serve(), dst2.Blockstore(), "c1", []cid.Cid{head}, nil, PullOptions{MaxBytes: 2 << 20})
	if !errors.Is(err, ErrPullTooLarge) {
		t.Fatalf("pull over its byte bound: %v, want ErrPullTooLarge", err)
	}
}

// TestPeerBlocksStopBeforeTheDiskGuard runs a store on a 64 MiB tmpfs with
// the disk filled to a little more than twice the reserve free, and pulls
// a valid DAG larger than that: the pull stops with ErrDiskFull while the
// guard has not tripped, and a local write of another organisation still
// succeeds.
func TestPeerBlocksStopBeforeTheDiskGuard(t *testing.T) {
	disk := mountTmpfs(t, 64<<20)
	ctx := context.Background()
	dst := openStore(t, filepath.Join(disk, "store"))
	r := newReplica(t, dst, offlineDAG(dst), nil, "c2")
	defer func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
		if err := dst.Close(); err != nil {
			t.Error(err)
		}
	}()
	sp := dst.Space()
	if sp.Reserve == 0 || sp.Free < 2*sp.Reserve+8<<20 {
		t.Fatalf("space on the tmpfs: %+v", sp)
	}
	// Leave 2 × reserve + 6 MiB free.
	fill := int64(sp.Free - (2*sp.Reserve + 6<<20))
	disktest.Allocate(t, disk, fill)
	before := dst.Space()
	t.Logf("free %s, reserve %s", mib(before.Free), mib(before.Reserve))

	src := memBlockstore()
	head, _ := deepDAG(t, src, 3000, 8<<10, -1) // 24 MiB of valid blocks
	c1, c2 := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = ServePull(ctx, c2, src, allowAll)
		c2.Close()
	}()
	st, err := PullWith(ctx, c1, dst.Blockstore(), "c1", []cid.Cid{head}, nil, PullOptions{Admit: dst.AdmitPeerBlock})
	c1.Close()
	<-done
	if !errors.Is(err, ErrDiskFull) {
		t.Fatalf("pull onto a disk short of space: %d blocks, %v; want ErrDiskFull", st.Blocks, err)
	}
	if st.Blocks == 0 {
		t.Fatal("the pull stored nothing: it should have stopped at the peer threshold, not before")
	}
	after := dst.Space()
	t.Logf("pull stored %d blocks (%s); free %s after", st.Blocks, mib(uint64(st.Bytes)), mib(after.Free))
	if after.Full || after.Refused != before.Refused {
		t.Fatalf("the disk guard tripped: %+v", after)
	}
	if dst.PeerBlocksRefused() == 0 {
		t.Fatal("no peer block counted as refused")
	}
	if err := r.Put(ctx, "/notes/local", []byte("another organisation's write")); err != nil {
		t.Fatalf("a local write of another organisation after the pull stopped: %v", err)
	}
	if v, err := r.Get(ctx, "/notes/local"); err != nil || string(v) != "another organisation's write" {
		t.Fatalf("read back: %q %v", v, err)
	}
}
