package crdt

// Inspection: how big the DAG is, how a peer's heads compare with this
// replica's, and which records written here no other machine holds yet.
//
// Everything is read from the local store: a peer's heads are what it
// said in its last heads exchange (mesh), and a head this replica does not
// hold cannot be looked into (so its height is unknown).
//
// Own deltas. A group commit publishes one go-ds-crdt delta (more than one
// when the group exceeds go-ds-crdt's MaxBatchDeltaSize, each later one a
// child of the previous). go-ds-crdt announces a new delta through the
// broadcaster, with the context of the commit: the commit puts a collector
// in that context, and the replica's broadcaster keeps the CIDs it sees
// there. go-ds-crdt's rebroadcasts use its own context and are not
// collected. A replica without a broadcaster (offline) records nothing.

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-ds-crdt/pb"
	"google.golang.org/protobuf/proto"
)

// maxOwnDeltas bounds how many unconfirmed own deltas a replica tracks;
// beyond it the oldest are forgotten (and counted in Unconfirmed.Forgotten).
const maxOwnDeltas = 100000

// ownDelta is a group commit made here that no peer is known to hold yet.
type ownDelta struct {
	c       cid.Cid
	height  uint64
	records int
	at      time.Time
}

type collectorKey struct{}

// collector gathers the CIDs go-ds-crdt announces during one commit.
type collector struct {
	mu   sync.Mutex
	cids []cid.Cid
}

// captureBroadcaster passes announcements on, and hands those of a commit
// to its collector.
type captureBroadcaster struct{ Broadcaster }

func (b captureBroadcaster) Broadcast(ctx context.Context, data []byte) error {
	if col, ok := ctx.Value(collectorKey{}).(*collector); ok {
		if cs, err := DecodeHeads(data); err == nil {
			col.mu.Lock()
			col.cids = append(col.cids, cs...)
			col.mu.Unlock()
		}
	}
	return b.Broadcaster.Broadcast(ctx, data)
}

// noteOwn records the last delta a commit of n records published.
func (r *Replica) noteOwn(ctx context.Context, col *collector, n int) {
	col.mu.Lock()
	cs := col.cids
	col.mu.Unlock()
	if len(cs) == 0 {
		return
	}
	c := cs[len(cs)-1]
	h, _, err := r.delta(ctx, c)
	if err != nil {
		return
	}
	r.omu.Lock()
	defer r.omu.Unlock()
	if len(r.own) >= maxOwnDeltas {
		r.forgotten += r.own[0].records
		r.own = r.own[1:]
	}
	r.own = append(r.own, ownDelta{c: c, height: h, records: n, at: time.Now()})
}

// delta reads a DAG node of this replica from the local blockstore: its
// height (go-ds-crdt's priority) and its children. It fails (with the
// blockstore's not-found error) when the block is not held here; it never
// asks the network.
func (r *Replica) delta(ctx context.Context, c cid.Cid) (height uint64, links []cid.Cid, err error) {
	b, err := r.store.Blockstore().Get(ctx, c)
	if err != nil {
		return 0, nil, err
	}
	nd, err := merkledag.DecodeProtobufBlock(b)
	if err != nil {
		return 0, nil, fmt.Errorf("crdt: %s: DAG node %s: %w", r.org, c, err)
	}
	pn, ok := nd.(*merkledag.ProtoNode)
	if !ok {
		return 0, nil, fmt.Errorf("crdt: %s: DAG node %s is not a protobuf node", r.org, c)
	}
	var d pb.Delta
	if err := proto.Unmarshal(pn.Data(), &d); err != nil {
		return 0, nil, fmt.Errorf("crdt: %s: delta %s: %w", r.org, c, err)
	}
	for _, l := range pn.Links() {
		links = append(links, l.Cid)
	}
	return d.GetPriority(), links, nil
}

// DAGSize counts the DAG nodes (deltas) this replica has processed.
func (r *Replica) DAGSize(ctx context.Context) (int, error) {
	return r.countKeys(ctx, Namespace(r.org).ChildString("b").String(), func(string) bool { return true })
}

// HeadsComparison is how a peer's heads (from its last exchange) compare
// with this replica's.
type HeadsComparison struct {
	// Same: the peer's heads are this replica's heads.
	Same bool `json:"same"`
	// Missing counts the peer's heads this replica does not hold: the peer
	// has deltas this replica has not fetched (yet).
	Missing int `json:"missing"`
	// PeerHeight is the highest height among the peer's heads held here.
	PeerHeight uint64 `json:"peer_height"`
	// Behind is how many heights the peer lacks, when all its heads are
	// held here and differ from this replica's (at least 1 then, also
	// when concurrent branches have the same height).
	Behind uint64 `json:"behind"`
}

// CompareHeads compares a peer's heads (go-ds-crdt broadcast format)
// with this replica's.
func (r *Replica) CompareHeads(ctx context.Context, peerHeads []byte) (HeadsComparison, error) {
	theirs, err := DecodeHeads(peerHeads)
	if err != nil {
		return HeadsComparison{}, err
	}
	st := r.crdt.InternalStats(ctx)
	mine := map[cid.Cid]bool{}
	for _, h := range st.Heads {
		mine[h] = true
	}
	var cmp HeadsComparison
	same := len(theirs) == len(mine)
	for _, c := range theirs {
		if !mine[c] {
			same = false
		}
		h, _, err := r.delta(ctx, c)
		if err != nil {
			cmp.Missing++
			continue
		}
		cmp.PeerHeight = max(cmp.PeerHeight, h)
	}
	cmp.Same = same
	if !same && cmp.Missing == 0 {
		cmp.Behind = 1
		if st.MaxHeight > cmp.PeerHeight {
			cmp.Behind = st.MaxHeight - cmp.PeerHeight
		}
	}
	return cmp, nil
}

// Unconfirmed counts what was written here that no peer is known to hold.
type Unconfirmed struct {
	Records int `json:"records"`
	Deltas  int `json:"deltas"`
	// Oldest is when the oldest of them was written.
	Oldest time.Time `json:"oldest,omitzero"`
	// Forgotten counts records of deltas beyond the tracking bound, whose
	// state is not known.
	Forgotten int `json:"forgotten,omitempty"`
}

// Unconfirmed looks for this replica's own deltas below the heads peers
// last sent (each a set in go-ds-crdt's broadcast format): a delta found
// there is held by that peer and is no longer tracked. The walk reads
// local blocks only and stops below the lowest unconfirmed height.
func (r *Replica) Unconfirmed(ctx context.Context, peerHeads [][]byte) (Unconfirmed, error) {
	r.omu.Lock()
	pending := make(map[cid.Cid]bool, len(r.own))
	var low uint64
	for i, d := range r.own {
		pending[d.c] = true
		if i == 0 || d.height < low {
			low = d.height
		}
	}
	r.omu.Unlock()
	held := map[cid.Cid]bool{}
	if len(pending) > 0 {
		seen := map[cid.Cid]bool{}
		var stack []cid.Cid
		for _, ph := range peerHeads {
			cs, err := DecodeHeads(ph)
			if err != nil {
				continue
			}
			stack = append(stack, cs...)
		}
		for len(stack) > 0 && len(held) < len(pending) {
			c := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if seen[c] {
				continue
			}
			seen[c] = true
			h, links, err := r.delta(ctx, c)
			if err != nil || h < low {
				continue // not held here, or below every unconfirmed delta
			}
			if pending[c] {
				held[c] = true
			}
			stack = append(stack, links...)
			if err := ctx.Err(); err != nil {
				return Unconfirmed{}, err
			}
		}
	}
	r.omu.Lock()
	defer r.omu.Unlock()
	var u Unconfirmed
	kept := r.own[:0]
	for _, d := range r.own {
		if held[d.c] {
			continue
		}
		kept = append(kept, d)
		u.Records += d.records
		u.Deltas++
		if u.Oldest.IsZero() || d.at.Before(u.Oldest) {
			u.Oldest = d.at
		}
	}
	r.own = kept
	u.Forgotten = r.forgotten
	return u, nil
}
