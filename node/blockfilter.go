package node

// Which blocks go to which peer.
//
// Every organisation's blocks share one blockstore; the store's block
// index (crdt/blockindex.go) says which organisations each block belongs
// to. Every block that enters the node for an organisation goes through
// that organisation's blockstore (orgDAG: go-ds-crdt's deltas, bitswap
// fetches, bundle payloads; prefetch: the bulk pull), which indexes it.
// Every block that leaves the node is decided on its own, where the
// request arrives: bitswap's per-block request filter (bitswapMaySend) and
// the bulk pull's reads (servedBlocks) both ask mayReceive, which lets a
// block go only to a peer whose verified membership may read an
// organisation the block belongs to. A block with no index entry goes to
// nobody. Each refusal is counted (mesh.RefuseBlockNotReadable) under the
// organisation whose block was asked for, so it shows in that
// organisation's `examnode sync`, `examnode refused` and metrics; a block
// of no organisation is counted node-wide. On an open mesh (no authority)
// every peer gets every block, as before.

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/ipfs/boxo/blockservice"
	"github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/boxo/ipld/merkledag"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore/query"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/examnode/examnode/crdt"
	"github.com/examnode/examnode/mesh"
	"github.com/examnode/examnode/policy"
)

// orgDAG is org's DAG service: its blockservice stores (and so indexes)
// every block it adds or fetches through bitswap in org's blockstore.
// It holds no goroutine and needs no closing.
func (n *Node) orgDAG(org string) ipld.DAGService {
	// Blocks bitswap fetches stop at the disk's peer threshold and org's
	// byte budget (peerexchange.go).
	return merkledag.NewDAGService(blockservice.New(n.store.OrgBlockstore(org), peerExchange{SessionExchange: n.bswap, admit: n.admitFetched(org)}))
}

// indexOrgBlocks indexes, once per store, the blocks org held before the
// block index existed: those reachable from the replica's heads and from
// the bundle payloads this node holds for org.
func (n *Node) indexOrgBlocks(ctx context.Context, org string, rep *crdt.Replica) error {
	roots := rep.Heads(ctx)
	res, err := n.store.Datastore().Query(ctx, query.Query{Prefix: bundleStatePrefix.ChildString(org).String()})
	if err != nil {
		return err
	}
	defer res.Close()
	for e := range res.Next() {
		if e.Error != nil {
			return e.Error
		}
		var st bundleState
		if json.Unmarshal(e.Value, &st) != nil || st.Root == "" || !(st.Held || st.Pinned) {
			continue
		}
		if c, err := cid.Decode(st.Root); err == nil {
			roots = append(roots, c)
		}
	}
	k, err := n.store.IndexOrg(ctx, org, roots)
	if err != nil {
		return err
	}
	if k > 0 {
		n.log.Info("indexed the organisation's blocks held before the block index", "org", org, "blocks", k)
	}
	return nil
}

// mayReceive decides whether peer p may receive block c: on a gated node,
// only if p's verified membership may read an organisation c belongs to.
// A refusal of a block this node holds is counted.
func (n *Node) mayReceive(ctx context.Context, p peer.ID, c cid.Cid) bool {
	return n.mayReceiveIn(ctx, p, c, "")
}

// mayReceiveIn is mayReceive with org (if not "") an organisation the
// peer was already found to read: a block indexed for it goes at the cost
// of one key lookup (the bulk pull's case).
func (n *Node) mayReceiveIn(ctx context.Context, p peer.ID, c cid.Cid, org string) bool {
	if !n.mesh.Gated() {
		return true
	}
	if org != "" {
		if in, err := n.store.BlockInOrg(ctx, c, org); err == nil && in {
			return true
		}
	}
	m, member := n.mesh.PeerMembership(p)
	if member && !m.AllOrgs {
		// A VM reads one organisation or a few: look those up.
		for _, o := range m.Orgs {
			if policy.MayRead(m, o) != nil {
				continue
			}
			if in, err := n.store.BlockInOrg(ctx, c, o); err == nil && in {
				return true
			}
		}
	}
	orgs, err := n.store.BlockOrgs(ctx, c)
	if err != nil {
		return false
	}
	if member && m.AllOrgs {
		for _, o := range orgs {
			if policy.MayRead(m, o) == nil {
				return true
			}
		}
	}
	counted := mesh.NodeWide
	if len(orgs) > 0 {
		counted = orgs[0]
	} else if has, err := n.store.Blockstore().Has(ctx, c); err != nil || !has {
		return false // nothing here to give: not a refusal
	}
	n.mesh.CountRefused(counted, mesh.RefuseBlockNotReadable, 1)
	n.log.Debug("refused a block to a peer that may not read its organisation", "peer", p, "cid", c, "orgs", orgs)
	return false
}

// bitswapMaySend is bitswap's per-block request filter. A want it refuses
// is not kept, so the block is not sent when it arrives later either; a
// want of a block not held here is refused for that reason (the peer
// asks again).
func (n *Node) bitswapMaySend(p peer.ID, c cid.Cid) bool {
	return n.mayReceive(n.ctx, p, c)
}

// servedBlocks is what a bulk pull from peer reads: the shared blockstore,
// where a block the peer may not receive is not found (the walk then does
// not descend below it). org is the organisation the current request
// names, once the peer was found to read it.
type servedBlocks struct {
	blockstore.Blockstore
	n    *Node
	peer peer.ID
	org  string
}

func (s *servedBlocks) Get(ctx context.Context, c cid.Cid) (blocks.Block, error) {
	if !s.n.mayReceiveIn(ctx, s.peer, c, s.org) {
		return nil, ipld.ErrNotFound{Cid: c}
	}
	return s.Blockstore.Get(ctx, c)
}

func (s *servedBlocks) Has(ctx context.Context, c cid.Cid) (bool, error) {
	if !s.n.mayReceiveIn(ctx, s.peer, c, s.org) {
		return false, nil
	}
	return s.Blockstore.Has(ctx, c)
}

func (s *servedBlocks) GetSize(ctx context.Context, c cid.Cid) (int, error) {
	if !s.n.mayReceiveIn(ctx, s.peer, c, s.org) {
		return -1, ipld.ErrNotFound{Cid: c}
	}
	return s.Blockstore.GetSize(ctx, c)
}

func (s *servedBlocks) AllKeysChan(context.Context) (<-chan cid.Cid, error) {
	return nil, errors.New("node: a peer's pull does not list blocks")
}
