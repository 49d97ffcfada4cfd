package crdt

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/boxo/ipld/merkledag"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
)

// Bulk DAG pull.
//
// Bitswap fetches a DAG one node per round trip, and its message queue
// waits a fixed 20 ms before each send, so walking a chain of N deltas
// takes N × ~21 ms. A node that learns heads from a peer knows that peer
// holds the blocks, so it asks that peer for the whole missing sub-DAG at
// once: the request names the wanted heads and the requester's own heads
// (where the walk may stop: the requester holds everything below them);
// the answer streams blocks breadth-first until it runs out or reaches a
// per-round bound. The requester verifies every block against its CID,
// stores it, and asks again for any child it still lacks. go-ds-crdt then
// finds every block locally. Bitswap stays as the fallback.

// Limits of the pull protocol.
const (
	PullMaxBlocks     = 4096     // blocks per round
	PullMaxBytes      = 32 << 20 // bytes per round
	PullMaxRounds     = 10000
	maxPullBlockSize  = 2 << 20
	maxPullRequestLen = 1 << 20
)

// Errors of the pull protocol.
var (
	ErrBadBlock    = errors.New("crdt: block does not match its CID")
	ErrPullRefused = errors.New("crdt: pull refused")
)

type pullRequest struct {
	Org  string   `json:"org"`
	Want []string `json:"want"`
	Stop []string `json:"stop,omitempty"`
}

type pullStatus struct {
	Error string `json:"error,omitempty"`
}

// ServePull answers pull requests read from rw until the requester closes
// its side. allow decides whether the requester may read org; a refusal
// is written to the requester and returned wrapping ErrPullRefused. bs
// is what the requester may receive: a block it cannot Get is skipped,
// and the walk does not go below it.
func ServePull(ctx context.Context, rw io.ReadWriter, bs blockstore.Blockstore, allow func(org string) error) error {
	br := bufio.NewReader(rw)
	bw := bufio.NewWriterSize(rw, 64<<10)
	for {
		var req pullRequest
		if err := readFrame(br, maxPullRequestLen, &req); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := allow(req.Org); err != nil {
			_ = writeFrame(bw, pullStatus{Error: err.Error()})
			// The refusal is written: the caller closes the stream
			// rather than resetting it, so that the requester reads it.
			return fmt.Errorf("%w: %w", ErrPullRefused, errors.Join(err, bw.Flush()))
		}
		if err := writeFrame(bw, pullStatus{}); err != nil {
			return err
		}
		if err := serveRound(ctx, bw, bs, req); err != nil {
			return err
		}
		if err := bw.Flush(); err != nil {
			return err
		}
	}
}

func serveRound(ctx context.Context, w *bufio.Writer, bs blockstore.Blockstore, req pullRequest) error {
	stop := map[cid.Cid]bool{}
	for _, s := range req.Stop {
		if c, err := cid.Decode(s); err == nil {
			stop[c] = true
		}
	}
	var queue []cid.Cid
	seen := map[cid.Cid]bool{}
	for _, s := range req.Want {
		c, err := cid.Decode(s)
		if err != nil {
			return fmt.Errorf("crdt: pull request: bad CID %q: %w", s, err)
		}
		if !seen[c] {
			seen[c] = true
			queue = append(queue, c)
		}
	}
	sent, bytes := 0, 0
	for len(queue) > 0 && sent < PullMaxBlocks && bytes < PullMaxBytes {
		c := queue[0]
		queue = queue[1:]
		if stop[c] {
			continue
		}
		b, err := bs.Get(ctx, c)
		if err != nil {
			continue // the requester falls back to bitswap for what we lack
		}
		if err := writeBlock(w, b); err != nil {
			return err
		}
		sent++
		bytes += len(b.RawData())
		nd, err := merkledag.DecodeProtobuf(b.RawData())
		if err != nil {
			continue
		}
		for _, l := range nd.Links() {
			if !seen[l.Cid] {
				seen[l.Cid] = true
				queue = append(queue, l.Cid)
			}
		}
	}
	return writeBlockEnd(w)
}

// PullStats reports what one Pull fetched.
type PullStats struct {
	Rounds int
	Blocks int
	Bytes  int
}

// Pull fetches from the peer on rw every block reachable from want that bs
// lacks, stopping below stop (the requester's own heads). It verifies each
// block against its CID before storing it, and stores only blocks it asked
// for or that are reachable from them (see PullWith).
func Pull(ctx context.Context, rw io.ReadWriter, bs blockstore.Blockstore, org string, want, stop []cid.Cid) (PullStats, error) {
	return PullWith(ctx, rw, bs, org, want, stop, PullOptions{})
}

// missing returns the CIDs of cs that bs lacks, without duplicates,
// leaving out those in skip and in got.
func missing(ctx context.Context, bs blockstore.Blockstore, cs []cid.Cid, skip, got map[cid.Cid]bool) ([]cid.Cid, error) {
	var out []cid.Cid
	seen := map[cid.Cid]bool{}
	for _, c := range cs {
		if seen[c] || skip[c] || got[c] {
			continue
		}
		seen[c] = true
		has, err := bs.Has(ctx, c)
		if err != nil {
			return nil, err
		}
		if !has {
			out = append(out, c)
		}
	}
	return out, nil
}

func writeFrame(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	buf := binary.AppendUvarint(nil, uint64(len(b)))
	if _, err := w.Write(append(buf, b...)); err != nil {
		return err
	}
	if f, ok := w.(interface{ Flush() error }); ok {
		return f.Flush()
	}
	return nil
}

func readFrame(r *bufio.Reader, max int, v any) error {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return err
	}
	if n > uint64(max) {
		return fmt.Errorf("crdt: pull message of %d bytes exceeds %d", n, max)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// A block on the wire: uvarint length of the CID, the CID, uvarint length
// of the data, the data. A CID length of zero ends a round.
func writeBlock(w *bufio.Writer, b blocks.Block) error {
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

func writeBlockEnd(w *bufio.Writer) error { return w.WriteByte(0) }
