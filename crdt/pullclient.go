package crdt

// The requesting side of the bulk pull: what it stores.
//
// A peer answering a pull decides what it sends, so the requester stores
// only what it can tie to the pull: a block is accepted when its CID is
// expected, that is when it is one of the CIDs a round asked for or a link
// of a block already accepted in this pull (the server walks breadth-first,
// parents before children). Anything else (a block never linked, or one
// sent twice in a round) is refused before its data is read: the pull
// stops with ErrUnrequestedBlock and nothing of it is stored. A block the
// requester received in an earlier round of the same pull may come again
// (a DAG with merges reaches it through a parent that the earlier round
// had not sent yet): it is read and verified but not stored twice, nor is
// a block the store already holds.
//
// Every accepted block is verified against its CID, then passed to
// PullOptions.Admit (the node's byte budgets and the peer threshold of the
// disk guard) before it is stored; a refusal stops the pull with Admit's
// error, after storing what was accepted before it. One pull reads at most
// PullOptions.MaxBytes of blocks and waits for at most pullMaxExpected
// CIDs at once; beyond either it stops with ErrPullTooLarge.

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/boxo/ipld/merkledag"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
)

const (
	// PullMaxTotalBytes is the default bound on the block bytes one pull
	// reads over all its rounds. A fresh VM catching up on 100,000 records
	// reads a few hundred MiB; a pull that stops at the bound leaves the
	// rest to bitswap and the next announcement.
	PullMaxTotalBytes = 1 << 30
	// pullMaxExpected bounds how many CIDs one pull waits for at once (the
	// links of the blocks it accepted): a delta links to a few heads, so a
	// legitimate pull stays far below, while a block of nothing but links
	// could otherwise make the set grow by some 50,000 CIDs per 2 MiB.
	pullMaxExpected = 1 << 20
	// pullFlushBytes: accepted blocks are stored in batches of about this
	// size, so what was admitted and not yet written stays small.
	pullFlushBytes = 4 << 20
)

// Errors of the requesting side.
var (
	// ErrUnrequestedBlock: the peer sent a block that the pull did not ask
	// for and that no accepted block links to (or sent one twice).
	ErrUnrequestedBlock = errors.New("crdt: the peer sent a block that was not asked for")
	// ErrPullTooLarge: the pull reached its bound on bytes read or on CIDs
	// awaited.
	ErrPullTooLarge = errors.New("crdt: the pull exceeds its bound")
)

// PullOptions bound what one pull stores.
type PullOptions struct {
	// Admit, if set, is asked before each block new to the store is
	// stored, with its size in bytes. An error stops the pull; Pull returns
	// it wrapped.
	Admit func(size int) error
	// MaxBytes bounds the block bytes one pull reads; zero means
	// PullMaxTotalBytes.
	MaxBytes int64
}

// PullWith is Pull with bounds: see PullOptions and this file's comment.
func PullWith(ctx context.Context, rw io.ReadWriter, bs blockstore.Blockstore, org string, want, stop []cid.Cid, opts PullOptions) (PullStats, error) {
	p := &puller{
		ctx: ctx, bs: bs, org: org, opts: opts,
		expected: map[cid.Cid]bool{}, got: map[cid.Cid]bool{},
	}
	if p.opts.MaxBytes <= 0 {
		p.opts.MaxBytes = PullMaxTotalBytes
	}
	br := bufio.NewReaderSize(rw, 64<<10)
	stopS := make([]string, len(stop))
	stopSet := map[cid.Cid]bool{}
	for i, c := range stop {
		stopS[i] = c.String()
		stopSet[c] = true
	}
	frontier, err := missing(ctx, bs, want, stopSet, nil)
	if err != nil {
		return p.st, err
	}
	for len(frontier) > 0 {
		if p.st.Rounds >= PullMaxRounds {
			return p.st, fmt.Errorf("%w: the pull from the peer did not finish in %d rounds", ErrPullTooLarge, PullMaxRounds)
		}
		p.st.Rounds++
		req := pullRequest{Org: org, Stop: stopS}
		for _, c := range frontier {
			req.Want = append(req.Want, c.String())
			if !p.got[c] {
				p.expected[c] = true
			}
		}
		if err := writeFrame(rw, req); err != nil {
			return p.st, err
		}
		var status pullStatus
		if err := readFrame(br, maxPullRequestLen, &status); err != nil {
			return p.st, err
		}
		if status.Error != "" {
			return p.st, fmt.Errorf("%w: %s", ErrPullRefused, status.Error)
		}
		children, n, err := p.round(br)
		if err != nil {
			return p.st, err
		}
		if n == 0 {
			return p.st, nil // the peer has none of them: bitswap may find them elsewhere
		}
		if frontier, err = missing(ctx, bs, children, stopSet, p.got); err != nil {
			return p.st, err
		}
	}
	return p.st, nil
}

// puller is the state of one pull.
type puller struct {
	ctx  context.Context
	bs   blockstore.Blockstore
	org  string
	opts PullOptions
	st   PullStats

	expected map[cid.Cid]bool // asked for or linked, not received yet
	got      map[cid.Cid]bool // received in this pull
	read     int64            // block bytes read in this pull

	batch      []blocks.Block
	batchBytes int
}

// round reads one round's answer, storing what it accepts. It returns the
// links of the blocks accepted and how many blocks came.
func (p *puller) round(r *bufio.Reader) (children []cid.Cid, n int, err error) {
	defer func() {
		// What was accepted before an error was asked for and verified:
		// keep it.
		if ferr := p.flush(); err == nil {
			err = ferr
		}
	}()
	inRound := map[cid.Cid]bool{}
	total := 0
	for {
		if err := p.ctx.Err(); err != nil {
			return nil, n, err
		}
		cl, err := binary.ReadUvarint(r)
		if err != nil {
			return nil, n, err
		}
		if cl == 0 {
			return children, n, nil
		}
		if cl > 256 || n >= PullMaxBlocks+1 {
			return nil, n, fmt.Errorf("crdt: malformed pull answer")
		}
		cb := make([]byte, cl)
		if _, err := io.ReadFull(r, cb); err != nil {
			return nil, n, err
		}
		c, err := cid.Cast(cb)
		if err != nil {
			return nil, n, fmt.Errorf("crdt: pull answer: %w", err)
		}
		// Decide before reading the data: an unrequested block is not read.
		again := !p.expected[c] && p.got[c] && !inRound[c]
		if !p.expected[c] && !again {
			return nil, n, fmt.Errorf("%w: %s, in a pull of %s", ErrUnrequestedBlock, c, p.org)
		}
		dl, err := binary.ReadUvarint(r)
		if err != nil {
			return nil, n, err
		}
		if dl > maxPullBlockSize || total+int(dl) > PullMaxBytes+maxPullBlockSize {
			return nil, n, fmt.Errorf("crdt: pull answer: block of %d bytes is too large", dl)
		}
		if p.read+int64(dl) > p.opts.MaxBytes {
			return nil, n, fmt.Errorf("%w: more than %s of blocks from the peer in one pull of %s", ErrPullTooLarge, mib(uint64(p.opts.MaxBytes)), p.org)
		}
		data := make([]byte, dl)
		if _, err := io.ReadFull(r, data); err != nil {
			return nil, n, err
		}
		total += int(dl)
		p.read += int64(dl)
		sum, err := c.Prefix().Sum(data)
		if err != nil || !sum.Equals(c) {
			return nil, n, fmt.Errorf("%w: %s", ErrBadBlock, c)
		}
		inRound[c] = true
		n++
		if again {
			continue // received in an earlier round: stored then
		}
		delete(p.expected, c)
		p.got[c] = true
		p.st.Blocks++
		p.st.Bytes += len(data)
		if nd, err := merkledag.DecodeProtobuf(data); err == nil {
			for _, l := range nd.Links() {
				children = append(children, l.Cid)
				if p.got[l.Cid] || p.expected[l.Cid] {
					continue
				}
				if len(p.expected) >= pullMaxExpected {
					return nil, n, fmt.Errorf("%w: more than %d blocks awaited at once in a pull of %s", ErrPullTooLarge, pullMaxExpected, p.org)
				}
				p.expected[l.Cid] = true
			}
		}
		has, err := p.bs.Has(p.ctx, c)
		if err != nil {
			return nil, n, err
		}
		if has {
			continue
		}
		if p.opts.Admit != nil {
			if err := p.opts.Admit(len(data)); err != nil {
				return nil, n, fmt.Errorf("crdt: pull of %s stopped: %w", p.org, err)
			}
		}
		b, err := blocks.NewBlockWithCid(data, c)
		if err != nil {
			return nil, n, err
		}
		p.batch = append(p.batch, b)
		p.batchBytes += len(data)
		if p.batchBytes >= pullFlushBytes {
			if err := p.flush(); err != nil {
				return nil, n, err
			}
		}
	}
}

// flush stores the accepted blocks not stored yet.
func (p *puller) flush() error {
	if len(p.batch) == 0 {
		return nil
	}
	err := p.bs.PutMany(p.ctx, p.batch)
	p.batch, p.batchBytes = nil, 0
	return classify(err)
}
