package crdt

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/ipfs/go-cid"
)

// writeChain makes n single-record deltas (a chain of n blocks) in r.
func writeChain(t *testing.T, r *Replica, prefix string, n int) {
	t.Helper()
	for i := range n {
		if err := r.Put(context.Background(), fmt.Sprintf("/%s/%03d", prefix, i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
}

// servePipe runs ServePull on one end of a pipe and returns the other.
func servePipe(t *testing.T, s *Store, allow func(string) error) (io.ReadWriteCloser, chan error) {
	t.Helper()
	c1, c2 := net.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- ServePull(context.Background(), c2, s.Blockstore(), allow)
		c2.Close()
	}()
	return c1, done
}

func allowAll(string) error { return nil }

func TestPullFetchesWholeMissingDAG(t *testing.T) {
	src := openStore(t, t.TempDir())
	defer src.Close()
	ra := newReplica(t, src, offlineDAG(src), nil, "c1")
	defer ra.Close()
	writeChain(t, ra, "a", 60)

	dst := openStore(t, t.TempDir())
	defer dst.Close()
	conn, done := servePipe(t, src, allowAll)
	st, err := Pull(context.Background(), conn, dst.Blockstore(), "c1", ra.Heads(context.Background()), nil)
	conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st.Blocks != 60 {
		t.Fatalf("pulled %d blocks, want the 60 of the chain", st.Blocks)
	}
	// Every block of the source is now on dst, byte for byte.
	keys, err := src.Blockstore().AllKeysChan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for c := range keys {
		a, _ := src.Blockstore().Get(context.Background(), c)
		b, err := dst.Blockstore().Get(context.Background(), c)
		if err != nil || string(a.RawData()) != string(b.RawData()) {
			t.Fatalf("block %s missing or different on dst: %v", c, err)
		}
		n++
	}
	if n != 60 {
		t.Fatalf("source holds %d blocks, want 60", n)
	}
}

func TestPullStopsAtRequesterHeads(t *testing.T) {
	src := openStore(t, t.TempDir())
	defer src.Close()
	dst := openStore(t, t.TempDir())
	defer dst.Close()
	ra := newReplica(t, src, offlineDAG(src), nil, "c1")
	defer ra.Close()
	ctx := context.Background()
	writeChain(t, ra, "old", 30)
	old := ra.Heads(ctx)
	// dst already holds the first 30 blocks.
	conn, done := servePipe(t, src, allowAll)
	if _, err := Pull(ctx, conn, dst.Blockstore(), "c1", old, nil); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	<-done
	writeChain(t, ra, "new", 5)
	conn, done = servePipe(t, src, allowAll)
	st, err := Pull(ctx, conn, dst.Blockstore(), "c1", ra.Heads(ctx), old)
	conn.Close()
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if st.Blocks != 5 || st.Rounds != 1 {
		t.Fatalf("pulled %d blocks in %d rounds, want 5 in 1: the walk did not stop at the requester's heads", st.Blocks, st.Rounds)
	}
}

func TestPullRefusesCorruptedBlock(t *testing.T) {
	src := openStore(t, t.TempDir())
	defer src.Close()
	ra := newReplica(t, src, offlineDAG(src), nil, "c1")
	defer ra.Close()
	writeChain(t, ra, "a", 1)
	head := ra.Heads(context.Background())[0]

	// A malicious peer answers with the right CID but altered bytes.
	c1, c2 := net.Pipe()
	go func() {
		defer c2.Close()
		br := bufio.NewReader(c2)
		var req pullRequest
		if readFrame(br, maxPullRequestLen, &req) != nil {
			return
		}
		bw := bufio.NewWriter(c2)
		_ = writeFrame(bw, pullStatus{})
		b, _ := src.Blockstore().Get(context.Background(), head)
		data := append([]byte{}, b.RawData()...)
		data[len(data)-1] ^= 0xff
		cb := head.Bytes()
		_, _ = bw.Write(append(appendUvarint(nil, uint64(len(cb))), cb...))
		_, _ = bw.Write(appendUvarint(nil, uint64(len(data))))
		_, _ = bw.Write(data)
		_ = writeBlockEnd(bw)
		_ = bw.Flush()
		_, _ = io.Copy(io.Discard, c2)
	}()
	dst := openStore(t, t.TempDir())
	defer dst.Close()
	_, err := Pull(context.Background(), c1, dst.Blockstore(), "c1", []cid.Cid{head}, nil)
	c1.Close()
	if !errors.Is(err, ErrBadBlock) {
		t.Fatalf("pull of a corrupted block: %v, want ErrBadBlock", err)
	}
	if has, _ := dst.Blockstore().Has(context.Background(), head); has {
		t.Fatal("a corrupted block was stored")
	}
}

func TestPullRefusedForOrganisation(t *testing.T) {
	src := openStore(t, t.TempDir())
	defer src.Close()
	ra := newReplica(t, src, offlineDAG(src), nil, "c1")
	defer ra.Close()
	writeChain(t, ra, "a", 2)
	conn, done := servePipe(t, src, func(org string) error { return fmt.Errorf("not a member of %s", org) })
	dst := openStore(t, t.TempDir())
	defer dst.Close()
	_, err := Pull(context.Background(), conn, dst.Blockstore(), "c1", ra.Heads(context.Background()), nil)
	conn.Close()
	<-done
	if !errors.Is(err, ErrPullRefused) {
		t.Fatalf("pull: %v, want ErrPullRefused", err)
	}
}

func appendUvarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}
