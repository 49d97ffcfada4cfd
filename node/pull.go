package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/examnode/examnode/crdt"
	"github.com/examnode/examnode/mesh"
	"github.com/examnode/examnode/policy"
)

// pullProtocol carries crdt's bulk DAG pull between peers.
const pullProtocol = protocol.ID("/examnode/dag-pull/1.0.0")

const pullTimeout = 2 * time.Minute

// servePull answers a peer's bulk pull with blocks of organisations this
// node holds.
func (n *Node) servePull(s network.Stream) {
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(pullTimeout))
	from := s.Conn().RemotePeer()
	// The request must name an organisation the peer may read, and every
	// block is decided on its own (blockfilter.go): a block goes only if
	// the peer may read an organisation it belongs to.
	served := &servedBlocks{Blockstore: n.store.Blockstore(), n: n, peer: from}
	err := crdt.ServePull(n.ctx, s, served, func(org string) error {
		served.org = ""
		if _, err := n.Replica(org); err != nil {
			return err
		}
		if err := n.mayRead(from, org); err != nil {
			n.mesh.CountRefused(org, mesh.RefuseBlockNotReadable, 1)
			return err
		}
		served.org = org
		return nil
	})
	if err != nil {
		if !errors.Is(err, crdt.ErrPullRefused) { // a refusal was written: let the peer read it
			s.Reset()
		}
		n.log.Debug("serving a pull failed", "peer", s.Conn().RemotePeer(), "err", err)
	}
}

// mayRead decides whether peer p may pull org's blocks: always on an open
// node; on a gated one only with a verified membership that policy lets
// read org.
func (n *Node) mayRead(p peer.ID, org string) error {
	if !n.mesh.Gated() {
		return nil
	}
	m, ok := n.mesh.PeerMembership(p)
	if !ok {
		return fmt.Errorf("%w: peer %s has not presented a valid membership; it may not pull %s", policy.ErrNoMembership, p, org)
	}
	return policy.MayRead(m, org)
}

// prefetch pulls, from the peer that announced them, the blocks below the
// announced heads that this node lacks. On failure go-ds-crdt fetches what
// is missing through bitswap.
func (n *Node) prefetch(ctx context.Context, org string, from peer.ID, announcement []byte) {
	heads, err := crdt.DecodeHeads(announcement)
	if err != nil || len(heads) == 0 {
		return
	}
	bs := n.store.OrgBlockstore(org) // stores and indexes what arrives as org's
	var want []cid.Cid
	for _, h := range heads {
		if has, err := bs.Has(ctx, h); err == nil && !has {
			want = append(want, h)
		}
	}
	if len(want) == 0 {
		return
	}
	if n.keptOut(from) {
		// Penalised (pullguard.go): no pull, and out again.
		n.mesh.KeepOut(from, n.keptOutFor(from), "penalised for what it sent in pulls")
		return
	}
	rep, err := n.Replica(org)
	if err != nil {
		return
	}
	if err := n.pullMayStart(from, org); err != nil {
		n.log.Debug("no bulk pull: over budget; bitswap takes over", "peer", from, "org", org, "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, pullTimeout)
	defer cancel()
	s, err := n.mesh.Host().NewStream(ctx, from, pullProtocol)
	if err != nil {
		n.pullErrors.Add(1)
		n.log.Debug("cannot open pull stream", "peer", from, "org", org, "err", err)
		return
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(pullTimeout))
	st, err := crdt.PullWith(ctx, s, bs, org, want, rep.Heads(ctx), n.pullOptions(from, org))
	n.pulledBlocks.Add(uint64(st.Blocks))
	if err != nil {
		s.Reset()
		n.pullErrors.Add(1)
		n.pullFailed(from, org, err)
		n.log.Debug("bulk pull failed; bitswap takes over", "peer", from, "org", org, "err", err)
		return
	}
	n.pulls.Add(1)
}
