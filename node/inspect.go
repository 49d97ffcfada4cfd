package node

// Inspection beyond the counters: how each peer's heads compare with this
// node's (GET /v1/sync, history, metrics and the status page all use
// peerSync), the records written here that no other machine holds yet,
// refusals by reason, versions, and the hook through which result bundles
// report their states.
//
// # Per-peer state
//
// Every heads exchange (either side's) carries the peer's whole heads set
// of each organisation both carry; the mesh keeps the last one per peer
// (mesh.HeadsOf) and crdt.CompareHeads compares it with this replica's:
//
//   - "in sync": the peer's heads are this node's heads;
//   - "behind": every head of the peer is held here and the sets differ:
//     the peer lacks deltas this node holds; Behind is how many heights
//     (at least 1: concurrent branches can share a height);
//   - "ahead": the peer has heads this node does not hold (yet): this node
//     is fetching; Missing counts them;
//   - "unknown": connected, but no heads of the organisation exchanged yet;
//   - "disconnected" and "error" as the peer book says; Behind and
//     Missing still tell how things stood at the last exchange.
//
// All of it is "as of the last exchange" (HeadsAt).
//
// # Reconciling
//
// A node that merges a peer's deltas does not commit, so nothing would
// tell the writer until the periodic exchange (15 s by default, an hour in
// the tests): the writer would show the peer behind, and a third node that
// missed a gossip announcement would wait as long. So the observer's
// sampler also queues a heads exchange with every connected peer whose
// last heads differ from this node's and are older than reconcileInterval
// (reconcile). Both sides record each other's heads in that exchange, so
// it stops once they agree; while a peer is still fetching it repeats at
// most every reconcileInterval.

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"maps"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sort"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/examnode/examnode/crdt"
	"github.com/examnode/examnode/mesh"
	"github.com/examnode/examnode/schema"
)

// Peer states beyond those of observe.go.
const (
	StateAhead   = "ahead"
	StateUnknown = "unknown"
)

// BundleStates are the states a result bundle is counted in (metrics,
// status page, Status.Bundles): not yet confirmed by an archive receipt
// (pending), receipted (archived), payload deleted by retention (deleted),
// or failed verification here and kept aside (kept_aside).
var BundleStates = []string{"pending", "archived", "deleted", "kept_aside"}

// BundleSummary counts an organisation's result bundles by state.
type BundleSummary struct {
	Org    string         `json:"org"`
	States map[string]int `json:"states"`
}

// bundleSummaries counts every organisation's bundles by state; an
// organisation without bundles reports zero in every state, so that
// dashboards keep their series.
func (n *Node) bundleSummaries(ctx context.Context) []BundleSummary {
	var out []BundleSummary
	idx := map[string]int{}
	for _, org := range n.Orgs() {
		b := BundleSummary{Org: org, States: map[string]int{}}
		for _, s := range BundleStates {
			b.States[s] = 0
		}
		idx[org] = len(out)
		out = append(out, b)
	}
	if n.bundles.Load() == nil {
		return out
	}
	all, err := n.Bundles(ctx, "")
	if err != nil {
		return out
	}
	for _, b := range all {
		i, ok := idx[b.Org]
		if !ok {
			continue
		}
		out[i].States[bundleCountState(b)]++
	}
	return out
}

// bundleCountState is the state a bundle is counted in.
func bundleCountState(b BundleStatus) string {
	switch {
	case !b.Deleted.IsZero():
		return "deleted"
	case b.Local.Failed != "":
		return "kept_aside"
	case len(b.Receipts) > 0:
		return "archived"
	}
	return "pending"
}

// versions lists examnode's version and those of the modules replication
// rests on, from the binary's build information.
func versions() map[string]string {
	out := map[string]string{"examnode": Version, "protocol": fmt.Sprint(mesh.ProtocolVersion)}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return out
	}
	out["go"] = bi.GoVersion
	for _, m := range bi.Deps {
		switch m.Path {
		case "github.com/ipfs/go-ds-crdt", "github.com/libp2p/go-libp2p", "github.com/libp2p/go-libp2p-pubsub",
			"github.com/dgraph-io/badger/v4", "github.com/ipfs/boxo":
			v := m.Version
			if m.Replace != nil {
				v = m.Replace.Version
			}
			out[m.Path[len("github.com/"):]] = v
		}
	}
	return out
}

// OrgSync is one organisation's line of GET /v1/sync: the replica, each
// peer's state, and, on a VM, what was written here that no other machine
// holds yet.
type OrgSync struct {
	ReplicaSummary
	PeerStates []PeerSync `json:"peer_states"`
	// Unconfirmed (VMs only): records written here that no peer's last
	// heads include.
	Unconfirmed *crdt.Unconfirmed `json:"unconfirmed,omitempty"`
}

// Sync reports the replication state of org ("" for every organisation).
func (n *Node) Sync(ctx context.Context, org string) ([]OrgSync, error) {
	n.mu.Lock()
	m := n.mesh
	n.mu.Unlock()
	if m == nil {
		return nil, ErrNotStarted
	}
	orgs := n.Orgs()
	if org != "" {
		orgs = []string{org}
	}
	states := n.peerSync(ctx, m, nil)
	out := []OrgSync{}
	for _, o := range orgs {
		rs, err := n.replicaSummary(ctx, o)
		if err != nil {
			return nil, err
		}
		s := OrgSync{ReplicaSummary: rs, PeerStates: []PeerSync{}}
		for _, ps := range states {
			if ps.Org == o {
				s.PeerStates = append(s.PeerStates, ps)
			}
		}
		if n.cfg.Has(schema.RoleVM) {
			if rep, err := n.Replica(o); err == nil {
				var heads [][]byte
				for _, ph := range m.HeadsOf(o) {
					heads = append(heads, ph.Heads)
				}
				if u, err := rep.Unconfirmed(ctx, heads); err == nil {
					s.Unconfirmed = &u
				}
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// inspectReplica adds the DAG size and refusals to a replica's summary.
func (n *Node) inspectReplica(ctx context.Context, rep *crdt.Replica, rs *ReplicaSummary) {
	rs.DAGSize, _ = rep.DAGSize(ctx)
	rs.Refused = rs.Announcements.Rejected
	rs.RefusedByReason = map[string]uint64{}
	maps.Copy(rs.RefusedByReason, rs.Announcements.RejectedByReason)
	// Records a gated replica's verified view refuses (trust.go), by code.
	for reason, c := range rs.RecordsRefused {
		rs.Refused += c
		rs.RefusedByReason["record "+reason] += c
	}
}

// headsState fills ps's state from the peer's last heads of org.
func headsState(ctx context.Context, rep *crdt.Replica, ps *PeerSync, ph mesh.PeerHeads, known bool) {
	if !known {
		ps.State, ps.Reason = StateUnknown, "no heads of this organisation exchanged yet"
		return
	}
	ps.HeadsAt = ph.At
	cmp, err := rep.CompareHeads(ctx, ph.Heads)
	if err != nil {
		ps.State, ps.Reason = StateError, "its heads: "+err.Error()
		return
	}
	ps.Behind, ps.Missing = cmp.Behind, cmp.Missing
	at := ph.At.Local().Format("15:04:05")
	switch {
	case cmp.Same:
		ps.State, ps.Reason = StateInSync, ""
	case cmp.Missing > 0:
		ps.State, ps.Reason = StateAhead, fmt.Sprintf("holds %d head(s) this node is still fetching (its heads at %s)", cmp.Missing, at)
	default:
		ps.State, ps.Reason = StateBehind, fmt.Sprintf("lacks %d delta(s) this node holds (its heads at %s)", cmp.Behind, at)
	}
}

// peerSync computes the state of every peer, per organisation both carry.
func (n *Node) peerSync(ctx context.Context, m *mesh.Mesh, links map[linkKey]linkStats) []PeerSync {
	mine := n.Orgs()
	reps := map[string]*crdt.Replica{}
	heads := map[string]map[string]mesh.PeerHeads{}
	exchanged := map[string][]string{} // peer -> organisations it exchanged heads of
	for _, org := range mine {
		if rep, err := n.Replica(org); err == nil {
			reps[org] = rep
			heads[org] = map[string]mesh.PeerHeads{}
			for _, ph := range m.HeadsOf(org) {
				id := ph.Peer.String()
				heads[org][id] = ph
				exchanged[id] = append(exchanged[id], org)
			}
		}
	}
	var out []PeerSync
	for _, p := range m.Peers() {
		var shared []string
		for _, org := range p.Orgs {
			if _, ok := heads[org]; ok {
				shared = append(shared, org)
			}
		}
		// A disconnected peer's orgs may be empty (never said): it still
		// counts for the organisations it last exchanged heads of.
		for _, org := range exchanged[p.ID] {
			if !slices.Contains(shared, org) {
				shared = append(shared, org)
			}
		}
		sort.Strings(shared)
		if len(shared) == 0 {
			shared = []string{""}
		}
		for _, org := range shared {
			ps := PeerSync{
				Org: org, Peer: p.ID, Roles: p.Roles, Connected: p.Connected, LAN: p.LAN,
				LastSeen: p.LastSeen, LastExchange: p.LastExchange, LastError: p.LastError, RTT: p.RTT,
			}
			if l, ok := links[linkKey{org, p.ID}]; ok {
				if p.Connected {
					ps.ConnectedSince = l.connectedSince
				}
				if len(l.received) > 0 {
					ps.Received = l.received
				}
				if len(l.offered) > 0 {
					ps.Offered = l.offered
				}
			}
			if rep := reps[org]; rep != nil {
				ph, known := heads[org][p.ID]
				headsState(ctx, rep, &ps, ph, known)
			} else {
				ps.State, ps.Reason = StateInSync, "connected; shares no organisation with this node"
			}
			switch {
			case !p.Connected:
				why := "not connected"
				if !ps.HeadsAt.IsZero() && ps.State != StateInSync {
					why += "; as of its last heads it " + ps.Reason
				}
				ps.State, ps.Reason = StateDisconnected, why
			case p.LastError != "":
				ps.State, ps.Reason = StateError, p.LastError
			}
			out = append(out, ps)
		}
	}
	return out
}

// reconcileInterval is how old a peer's differing heads must be before
// the sampler asks for another exchange with it.
const reconcileInterval = 2 * time.Second

// reconcile queues an exchange with every connected peer whose last heads
// of an organisation differ from this node's (see the package comment).
func (n *Node) reconcile(ctx context.Context) {
	n.mu.Lock()
	m := n.mesh
	n.mu.Unlock()
	if m == nil {
		return
	}
	connected := map[string]bool{}
	for _, p := range m.Peers() {
		connected[p.ID] = p.Connected
	}
	now := n.now()
	queued := map[peer.ID]bool{}
	for _, org := range n.Orgs() {
		rep, err := n.Replica(org)
		if err != nil {
			continue
		}
		mine, err := rep.HeadsAnnouncement(ctx)
		if err != nil {
			continue
		}
		for _, ph := range m.HeadsOf(org) {
			if queued[ph.Peer] || !connected[ph.Peer.String()] || now.Sub(ph.At) < reconcileInterval || bytes.Equal(ph.Heads, mine) {
				continue
			}
			if cmp, err := rep.CompareHeads(ctx, ph.Heads); err == nil && cmp.Same {
				continue
			}
			queued[ph.Peer] = true
			m.ExchangeWith(ph.Peer)
		}
	}
}

// storeBytes is what the badger store takes on disk: the blocks its files
// occupy. Badger preallocates its value log and memtable files sparsely,
// and its own size estimate is refreshed once a minute, so neither the
// files' lengths nor badger's figure would do.
func (n *Node) storeBytes() uint64 {
	var total uint64
	_ = filepath.WalkDir(filepath.Join(n.dir, StoreDir), func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == crdt.BallastFile {
			return nil // the ballast is space kept free for badger, not data
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		total += allocated(fi)
		return nil
	})
	return total
}

// catchingUp says whether a connected peer holds heads this node does not.
func catchingUp(states []PeerSync) bool {
	for _, ps := range states {
		if ps.State == StateAhead {
			return true
		}
	}
	return false
}
