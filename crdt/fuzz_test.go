package crdt

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/boxo/ipld/merkledag"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"

	"github.com/examnode/examnode/internal/fuzzseed"
)

// Fuzz targets of the bytes peers send the crdt layer: head announcements
// (DecodeHeads) and both directions of the bulk-pull protocol (ServePull
// reads requests, Pull reads answers). The seeds added here are also
// checked in under testdata/fuzz/<FuzzName>/ (regenerate them with
// EXAMNODE_WRITE_FUZZ_CORPUS=1 go test -run='^Fuzz' ./crdt), beside the
// malformed inputs and regressions.

func memBlockstore() blockstore.Blockstore {
	return blockstore.NewBlockstore(dssync.MutexWrap(ds.NewMapDatastore()))
}

// fuzzDAG builds a small DAG in bs: a chain of n nodes, each linking to the
// previous one and to a leaf of its own. It returns the chain's head and
// its tail.
func fuzzDAG(f *testing.F, bs blockstore.Blockstore, n int) (head, tail cid.Cid) {
	f.Helper()
	ctx := context.Background()
	var prev *merkledag.ProtoNode
	for i := range n {
		leaf := merkledag.NodeWithData([]byte(fmt.Sprintf("leaf %d", i)))
		nd := merkledag.NodeWithData([]byte(fmt.Sprintf("delta %d", i)))
		if err := nd.AddNodeLink("leaf", leaf); err != nil {
			f.Fatal(err)
		}
		if prev != nil {
			if err := nd.AddNodeLink("prev", prev); err != nil {
				f.Fatal(err)
			}
		} else {
			tail = nd.Cid()
		}
		for _, b := range []*merkledag.ProtoNode{leaf, nd} {
			if err := bs.Put(ctx, b); err != nil {
				f.Fatal(err)
			}
		}
		prev = nd
	}
	return prev.Cid(), tail
}

func pullFrame(f *testing.F, v any) []byte {
	var b bytes.Buffer
	if err := writeFrame(&b, v); err != nil {
		f.Fatal(err)
	}
	return b.Bytes()
}

// rw is one end of a pull stream: what the peer sent, and what we answer.
type rw struct {
	io.Reader
	io.Writer
}

var errDenied = errors.New("denied")

func allowFuzz(org string) error {
	if org == "denied" {
		return errDenied
	}
	return nil
}

// FuzzDecodeHeads decodes head announcements (go-ds-crdt's protobuf
// broadcast) and checks that what it accepts re-encodes to the same heads.
func FuzzDecodeHeads(f *testing.F) {
	bs := memBlockstore()
	head, tail := fuzzDAG(f, bs, 3)
	for _, hs := range [][]cid.Cid{nil, {head}, {head, tail}, {head, head}} {
		b, err := EncodeHeads(hs)
		if err != nil {
			f.Fatal(err)
		}
		fuzzseed.Add(f, b)
		if len(b) > 2 {
			fuzzseed.Add(f, b[:len(b)-1])
			c := bytes.Clone(b)
			c[3] ^= 0xff
			fuzzseed.Add(f, c)
		}
	}
	for _, s := range []string{"\x0a\x00", "\x0a\x02\x0a\x00", "\x0a\x05\x0a\x03\x01\x55\x00", "\xff", "\x08\x96\x01", "not protobuf"} {
		fuzzseed.Add(f, []byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		heads, err := DecodeHeads(data)
		if err != nil {
			return
		}
		enc, err := EncodeHeads(heads)
		if err != nil {
			t.Fatal(err)
		}
		again, err := DecodeHeads(enc)
		if err != nil || len(again) != len(heads) {
			t.Fatalf("re-encoded heads do not decode: %v (%d, want %d)", err, len(again), len(heads))
		}
		for i := range heads {
			if !again[i].Equals(heads[i]) {
				t.Fatalf("head %d changed in a round trip: %s, %s", i, heads[i], again[i])
			}
		}
	})
}

// FuzzServePull feeds ServePull a requester's stream (length-prefixed JSON
// requests) against a store holding a small DAG. It must end (the stream
// ends), answer with well-formed rounds, and send nothing of an
// organisation allow refuses.
func FuzzServePull(f *testing.F) {
	bs := memBlockstore()
	head, tail := fuzzDAG(f, bs, 5)
	ok := pullFrame(f, pullRequest{Org: "c1", Want: []string{head.String()}})
	for _, b := range [][]byte{
		ok,
		pullFrame(f, pullRequest{Org: "c1", Want: []string{head.String()}, Stop: []string{tail.String()}}),
		pullFrame(f, pullRequest{Org: "c1", Want: []string{head.String(), head.String(), tail.String()}, Stop: []string{"not a cid"}}),
		pullFrame(f, pullRequest{Org: "denied", Want: []string{head.String()}}),
		pullFrame(f, pullRequest{Org: "c1", Want: []string{"bafy-not-a-cid"}}),
		pullFrame(f, pullRequest{Org: "c1"}),
		append(bytes.Clone(ok), ok...),
		ok[:len(ok)/2],
		[]byte("\x02{}"), []byte("\x04null"), []byte("\xff\xff\xff\xff\x0f"), []byte("\x05{\"org"), {},
	} {
		fuzzseed.Add(f, b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var out bytes.Buffer
		err := ServePull(context.Background(), rw{bytes.NewReader(data), &out}, bs, allowFuzz)
		// Every answer the server wrote reads back as status frames and
		// rounds of blocks that match their CIDs.
		br := bufio.NewReader(&out)
		for {
			var st pullStatus
			if e := readFrame(br, maxPullRequestLen, &st); e != nil {
				if !errors.Is(e, io.EOF) {
					t.Fatalf("the server wrote a malformed status: %v", e)
				}
				return
			}
			if st.Error != "" {
				if !errors.Is(err, errDenied) {
					t.Fatalf("refusal %q but ServePull returned %v", st.Error, err)
				}
				if br.Buffered() > 0 {
					t.Fatal("the server wrote more after refusing")
				}
				return
			}
			if _, e := readRound(br); e != nil {
				if err == nil {
					t.Fatalf("the server wrote a malformed round and returned no error: %v", e)
				}
				return
			}
		}
	})
}

// FuzzPullAnswer feeds Pull a server's answer stream (a status frame, then
// rounds of CID-prefixed blocks) for a want of a small DAG's head. Pull
// must end, and store only blocks that match their CIDs.
func FuzzPullAnswer(f *testing.F) {
	src := memBlockstore()
	head, tail := fuzzDAG(f, src, 4)
	answer := func(reqs ...pullRequest) []byte {
		var in, out bytes.Buffer
		for _, r := range reqs {
			if err := writeFrame(&in, r); err != nil {
				f.Fatal(err)
			}
		}
		_ = ServePull(context.Background(), rw{&in, &out}, src, allowFuzz)
		return out.Bytes()
	}
	full := answer(pullRequest{Org: "c1", Want: []string{head.String()}})
	for _, b := range [][]byte{
		full,
		answer(pullRequest{Org: "c1", Want: []string{head.String()}, Stop: []string{tail.String()}}),
		answer(pullRequest{Org: "denied", Want: []string{head.String()}}),
		answer(pullRequest{Org: "c1", Want: []string{tail.String()}}),
		full[:len(full)-1], full[:len(full)/2],
		append(pullFrame(f, pullStatus{}), 0),
		append(pullFrame(f, pullStatus{}), 0x24, 0x01),
		[]byte("\x02{}\x01\x00"), []byte("\x02{}\xff\xff\xff\xff\x0f"), {},
	} {
		fuzzseed.Add(f, b)
	}
	// One block whose data does not match its CID.
	bad := bytes.Clone(full)
	bad[len(bad)-3] ^= 0x01
	fuzzseed.Add(f, bad)

	f.Fuzz(func(t *testing.T, data []byte) {
		dst := memBlockstore()
		_, _ = Pull(context.Background(), rw{bytes.NewReader(data), io.Discard}, dst, "c1", []cid.Cid{head}, nil)
		keys, err := dst.AllKeysChan(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for c := range keys {
			b, err := dst.Get(context.Background(), c)
			if err != nil {
				t.Fatal(err)
			}
			sum, err := c.Prefix().Sum(b.RawData())
			if err != nil || !sum.Equals(c) {
				t.Fatalf("Pull stored block %s whose data does not match it", c)
			}
		}
	})
}

// readRound reads one round of a pull answer strictly, checking every
// block against its CID: the fuzz targets' oracle for what a server
// writes (the requester's own reader is puller.round, which also checks
// that each block was asked for).
func readRound(r *bufio.Reader) ([]blocks.Block, error) {
	var out []blocks.Block
	total := 0
	for {
		cl, err := binary.ReadUvarint(r)
		if err != nil {
			return nil, err
		}
		if cl == 0 {
			return out, nil
		}
		if cl > 256 || len(out) >= PullMaxBlocks+1 {
			return nil, fmt.Errorf("crdt: malformed pull answer")
		}
		cb := make([]byte, cl)
		if _, err := io.ReadFull(r, cb); err != nil {
			return nil, err
		}
		c, err := cid.Cast(cb)
		if err != nil {
			return nil, fmt.Errorf("crdt: pull answer: %w", err)
		}
		dl, err := binary.ReadUvarint(r)
		if err != nil {
			return nil, err
		}
		if dl > maxPullBlockSize || total+int(dl) > PullMaxBytes+maxPullBlockSize {
			return nil, fmt.Errorf("crdt: pull answer: block of %d bytes is too large", dl)
		}
		data := make([]byte, dl)
		if _, err := io.ReadFull(r, data); err != nil {
			return nil, err
		}
		total += int(dl)
		sum, err := c.Prefix().Sum(data)
		if err != nil || !sum.Equals(c) {
			return nil, fmt.Errorf("%w: %s", ErrBadBlock, c)
		}
		b, err := blocks.NewBlockWithCid(data, c)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
}
