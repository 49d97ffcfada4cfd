package node

// Redundancy you can see: which peers hold a record (how many records
// written here no other machine holds yet is the sync summary's
// unconfirmed, inspect.go). It comes from the heads each peer reported in
// the heads exchange (mesh.HeadsOf), judged against this node's own DAG
// (crdt.Replica.HeldBy; see crdt/held.go).
//
// So that a writer learns within a second that its records are held, a
// node that merges a peer's deltas tells its peers its new heads at once:
// the heads watcher looks at the heads of every replica whose records
// changed (the replica hooks mark it, headsTouched) every headsWatch, and
// pushes an exchange when they changed. A delta that changes no value (it
// loses to a higher one everywhere) fires no hook: every headsSweep ticks
// the watcher looks at every replica, so those heads go out too. A central
// host with hundreds of quiet organisations thus costs almost nothing here.

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/examnode/examnode/crdt"
)

// headsWatch is how often the heads watcher looks at the heads of the
// replicas that changed; every headsSweep-th look covers all of them.
const (
	headsWatch = 100 * time.Millisecond
	headsSweep = 20
)

// headsTouched is the set of organisations whose records changed since the
// heads watcher last looked.
type headsTouched struct {
	mu   sync.Mutex
	orgs map[string]bool
}

func (h *headsTouched) touch(org string) {
	h.mu.Lock()
	if h.orgs == nil {
		h.orgs = map[string]bool{}
	}
	h.orgs[org] = true
	h.mu.Unlock()
}

// take returns the organisations touched since the last take, and forgets
// them.
func (h *headsTouched) take() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]string, 0, len(h.orgs))
	for org := range h.orgs {
		out = append(out, org)
	}
	clear(h.orgs)
	return out
}

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
	look := func(orgs []string, first bool) {
		for _, org := range orgs {
			rep, err := n.Replica(org)
			if err != nil {
				continue
			}
			hs := rep.Heads(n.ctx)
			slices.SortFunc(hs, func(a, b cid.Cid) int { return strings.Compare(a.KeyString(), b.KeyString()) })
			prev, seen := last[org]
			// An organisation opened since the first look counts as changed
			// once it has heads.
			if !first && !slices.EqualFunc(prev, hs, cid.Cid.Equals) && (seen || len(hs) > 0) {
				n.mesh.PushHeads(org)
			}
			last[org] = hs
		}
	}
	every := headsWatch
	if d := time.Duration(n.cfg.Tuning.HeadsPush); d < 0 {
		return // off: peers learn new heads at the next exchange
	} else if d > 0 {
		every = d
	}
	look(n.Orgs(), true)
	t := time.NewTicker(every)
	defer t.Stop()
	for tick := 1; ; tick++ {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		orgs := n.touched.take()
		if tick%headsSweep == 0 {
			orgs = n.Orgs()
		}
		look(orgs, false)
	}
}
