package node

// Blocks that bitswap brings from peers stop before the disk guard trips
// and at the organisation's byte budget, as pulled ones do (pullguard.go).
//
// The block service stores every block its exchange fetched (boxo's
// blockservice Puts it; bitswap itself stores nothing), so the exchange
// is where a block from a peer can be told from one this node wrote.
// peerExchange wraps bitswap and asks crdt.Store.AdmitPeerBlock for each
// block it hands over: refused, the block is not handed over, hence not
// stored, and go-ds-crdt finds it missing as if no peer had it. Each
// organisation's DAG service has its own block service: the
// organisation's byte budget applies (not the peer's: bitswap does not say
// which peer sent a block), and so does the disk's peer threshold.

import (
	"context"

	"github.com/ipfs/boxo/exchange"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"

	"github.com/examnode/examnode/mesh"
)

// peerExchange is an exchange whose fetched blocks pass admit first.
type peerExchange struct {
	exchange.SessionExchange
	admit func(b blocks.Block) error
}

func (e peerExchange) GetBlock(ctx context.Context, c cid.Cid) (blocks.Block, error) {
	b, err := e.SessionExchange.GetBlock(ctx, c)
	return admitOne(b, err, e.admit)
}

func (e peerExchange) GetBlocks(ctx context.Context, cs []cid.Cid) (<-chan blocks.Block, error) {
	ch, err := e.SessionExchange.GetBlocks(ctx, cs)
	if err != nil {
		return nil, err
	}
	return admitChan(ctx, ch, e.admit), nil
}

func (e peerExchange) NewSession(ctx context.Context) exchange.Fetcher {
	return peerFetcher{f: e.SessionExchange.NewSession(ctx), admit: e.admit}
}

// peerFetcher is a bitswap session whose blocks pass admit first.
type peerFetcher struct {
	f     exchange.Fetcher
	admit func(b blocks.Block) error
}

func (p peerFetcher) GetBlock(ctx context.Context, c cid.Cid) (blocks.Block, error) {
	b, err := p.f.GetBlock(ctx, c)
	return admitOne(b, err, p.admit)
}

func (p peerFetcher) GetBlocks(ctx context.Context, cs []cid.Cid) (<-chan blocks.Block, error) {
	ch, err := p.f.GetBlocks(ctx, cs)
	if err != nil {
		return nil, err
	}
	return admitChan(ctx, ch, p.admit), nil
}

func admitOne(b blocks.Block, err error, admit func(blocks.Block) error) (blocks.Block, error) {
	if err != nil {
		return nil, err
	}
	if err := admit(b); err != nil {
		return nil, err
	}
	return b, nil
}

// admitChan passes on the blocks of in that admit lets through. Its
// goroutine ends when in closes or ctx ends (bitswap closes in then too).
func admitChan(ctx context.Context, in <-chan blocks.Block, admit func(blocks.Block) error) <-chan blocks.Block {
	out := make(chan blocks.Block)
	go func() {
		defer close(out)
		for b := range in {
			if admit(b) != nil {
				continue
			}
			select {
			case out <- b:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// admitFetched returns what lets a block bitswap brought for org be
// stored: room on the disk for blocks from peers, and org's byte budget
// (the one the bulk pull takes from too; a refusal is counted under
// mesh.RefuseBlockBudget).
func (n *Node) admitFetched(org string) func(b blocks.Block) error {
	return func(b blocks.Block) error {
		if err := n.store.AdmitPeerBlock(len(b.RawData())); err != nil {
			n.log.Debug("a block from bitswap is refused: the disk is short of space", "org", org, "cid", b.Cid(), "err", err)
			return err
		}
		if err := n.takeOrgBudget(org, len(b.RawData())); err != nil {
			n.mesh.CountRefused(org, mesh.RefuseBlockBudget, 1)
			n.log.Debug("a block from bitswap is refused", "org", org, "cid", b.Cid(), "err", err)
			return err
		}
		return nil
	}
}
