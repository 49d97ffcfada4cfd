package node

// Redundancy you can see: which peers hold a record (how many records
// written here no other machine holds yet is the sync summary's
// unconfirmed, inspect.go). It comes from the heads each peer reported in
// the heads exchange (mesh.HeadsOf), judged against this node's own DAG
// (crdt.Replica.HeldBy; see crdt/held.go).
//
// So that a writer learns within a second that its records are held, a
// node that merges a peer's deltas tells its peers its new heads at once:
// the heads watcher looks at every replica's heads every headsWatch and
// pushes an exchange when they changed.

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/examnode/examnode/crdt"
)

// headsWatch is how often the heads watcher looks at the replicas' heads.
const headsWatch = 100 * time.Millisecond

// Held answers GET /v1/orgs/{org}/held/{key...}.
type Held struct {
	Org    string   `json:"org"`
	Key    string   `json:"key"`
	HeldBy int      `json:"held_by"`
	Peers  []string `json:"peers"`
}

// peerHeads decodes the heads every peer last reported for org.
func (n *Node) peerHeads(org string) map[string][]cid.Cid {
	out := map[string][]cid.Cid{}
	for _, ph := range n.mesh.HeadsOf(org) {
		hs, err := crdt.DecodeHeads(ph.Heads)
		if err != nil {
			continue
		}
		out[ph.Peer.String()] = hs
	}
	return out
}

// HeldBy reports which peers hold key of org, as this node has it.
func (n *Node) HeldBy(ctx context.Context, org, key string) (Held, error) {
	rep, err := n.Replica(org)
	if err != nil {
		return Held{}, err
	}
	peers, err := rep.HeldBy(ctx, key, n.peerHeads(org))
	if err != nil {
		return Held{}, err
	}
	return Held{Org: org, Key: key, HeldBy: len(peers), Peers: peers}, nil
}

func (n *Node) handleHeld(w http.ResponseWriter, r *http.Request) {
	h, err := n.HeldBy(r.Context(), r.PathValue("org"), rawKey(r))
	if err != nil {
		s, c := statusOf(err)
		writeErr(w, s, c, err)
		return
	}
	writeJSON(w, http.StatusOK, h)
}

// watchHeads pushes a heads exchange for every organisation whose heads
// changed since the last look. It stops when n.ctx is cancelled.
func (n *Node) watchHeads() {
	last := map[string][]cid.Cid{}
	t := time.NewTicker(headsWatch)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		for _, org := range n.Orgs() {
			rep, err := n.Replica(org)
			if err != nil {
				continue
			}
			hs := rep.Heads(n.ctx)
			slices.SortFunc(hs, func(a, b cid.Cid) int { return strings.Compare(a.KeyString(), b.KeyString()) })
			prev, seen := last[org]
			if seen && !slices.EqualFunc(prev, hs, cid.Cid.Equals) {
				n.mesh.PushHeads(org)
			}
			last[org] = hs
		}
	}
}
