package node

// What a peer may make this node store through bulk pulls.
//
// crdt.PullWith stores only blocks the pull asked for or that accepted
// blocks link to, each verified against its CID; this file bounds the
// rest:
//
//   - Byte budgets. Every block a pull stores takes its size from two token
//     buckets: the peer's and the organisation's (Tuning.PullPeerBudget,
//     PullPeerRate, PullOrgBudget, PullOrgRate; defaults in config.go).
//     A pull that would go over either stops, and is counted under
//     mesh.RefuseBlockBudget. A pull does not start while either bucket
//     holds less than pullMinStart.
//   - The disk. Blocks from peers stop while less than twice the store's
//     reserve would remain free (crdt.Store.AdmitPeerBlock), so that a
//     member can never trip the guard that stops every organisation's
//     own writes.
//   - Penalties. A peer that sends an unrequested block or one that does
//     not match its CID (counted under mesh.RefuseUnrequestedBlock), or
//     that goes over its own budget, earns a strike; one whose pull
//     exceeds the bound of one pull (a flood) earns pullStrikes at once.
//     pullStrikes strikes within pullStrikeWindow disconnect it and keep
//     it out of pulls for pullBan: prefetch pulls nothing from it and
//     closes its connections again when it comes back with heads. The
//     pull stops at the first unrequested block, before reading its data,
//     so an offence costs this node one CID's worth of reading. The lists
//     are bounded (pullGuardPeers peers) and expire.

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/examnode/examnode/crdt"
	"github.com/examnode/examnode/mesh"
)

// Defaults of the pull budgets (Tuning zero values).
const (
	DefaultPullPeerBudget = 512 << 20
	DefaultPullPeerRate   = 1 << 20
	DefaultPullOrgBudget  = 1 << 30
	DefaultPullOrgRate    = 2 << 20
)

const (
	// pullStrikes offences within pullStrikeWindow disconnect a peer and
	// keep it out of pulls for pullBan.
	pullStrikes      = 3
	pullStrikeWindow = 10 * time.Minute
	pullBan          = 10 * time.Minute
	// pullGuardPeers bounds the peers the guard remembers (buckets and
	// penalties each).
	pullGuardPeers = 4096
	// pullMinStart: a pull starts only if both buckets hold this much.
	pullMinStart = 256 << 10
)

// Errors of the pull budgets.
var (
	errPeerBudget = errors.New("node: the peer used up its byte budget for blocks from pulls")
	errOrgBudget  = errors.New("node: the organisation used up its byte budget for blocks from pulls")
)

// pullGuard holds the budgets and penalties; its zero value is ready.
type pullGuard struct {
	mu    sync.Mutex
	peers map[peer.ID]*bucket
	orgs  map[string]*bucket
	pen   map[peer.ID]*penalty
}

// bucket is a token bucket of bytes.
type bucket struct {
	tokens float64
	at     time.Time
}

// limit is a bucket's size and refill rate; size <= 0 means no limit.
type limit struct {
	size, rate float64
}

func (l limit) on() bool { return l.size > 0 }

// refill brings b up to date at now.
func (b *bucket) refill(l limit, now time.Time) {
	if d := now.Sub(b.at); d > 0 {
		b.tokens = min(l.size, b.tokens+d.Seconds()*l.rate)
	}
	b.at = now
}

type penalty struct {
	strikes []time.Time
	until   time.Time
}

func (p *penalty) prune(now time.Time) {
	i := 0
	for i < len(p.strikes) && now.Sub(p.strikes[i]) >= pullStrikeWindow {
		i++
	}
	p.strikes = p.strikes[i:]
}

// pullLimits are the configured budgets.
func (n *Node) pullLimits() (peerL, orgL limit) {
	t := n.cfg.Tuning
	pick := func(v, def int64) float64 {
		switch {
		case v == 0:
			return float64(def)
		case v < 0:
			return 0
		}
		return float64(v)
	}
	rate := func(v, def int64) float64 { return pick(max(v, 0), def) }
	peerL = limit{size: pick(t.PullPeerBudget, DefaultPullPeerBudget), rate: rate(t.PullPeerRate, DefaultPullPeerRate)}
	orgL = limit{size: pick(t.PullOrgBudget, DefaultPullOrgBudget), rate: rate(t.PullOrgRate, DefaultPullOrgRate)}
	return peerL, orgL
}

// bucketOf returns key's bucket in m, refilled to now; a new one is full.
// m holds at most pullGuardPeers buckets: full ones (the same as none)
// go first, then any.
func bucketOf[K comparable](m map[K]*bucket, key K, l limit, now time.Time) *bucket {
	if b := m[key]; b != nil {
		b.refill(l, now)
		return b
	}
	if len(m) >= pullGuardPeers {
		for k, b := range m {
			if b.refill(l, now); b.tokens >= l.size {
				delete(m, k)
			}
		}
		for k := range m {
			if len(m) < pullGuardPeers {
				break
			}
			delete(m, k)
		}
	}
	b := &bucket{tokens: l.size, at: now}
	m[key] = b
	return b
}

// pullMayStart reports whether a pull of org from p may begin: both
// budgets hold at least pullMinStart.
func (n *Node) pullMayStart(p peer.ID, org string) error {
	g := &n.pullGuard
	peerL, orgL := n.pullLimits()
	now := n.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.peers == nil {
		g.peers, g.orgs = map[peer.ID]*bucket{}, map[string]*bucket{}
	}
	if peerL.on() && bucketOf(g.peers, p, peerL, now).tokens < min(pullMinStart, peerL.size) {
		return fmt.Errorf("%w (%s)", errPeerBudget, p)
	}
	if orgL.on() && bucketOf(g.orgs, org, orgL, now).tokens < min(pullMinStart, orgL.size) {
		return fmt.Errorf("%w (%s)", errOrgBudget, org)
	}
	return nil
}

// pullOptions are the bounds of one pull of org from p.
func (n *Node) pullOptions(p peer.ID, org string) crdt.PullOptions {
	var stored uint64 // by this pull, merged by go-ds-crdt after it (Admit runs on the pull's goroutine)
	return crdt.PullOptions{
		MaxBytes: n.cfg.Tuning.PullMaxBytes,
		Admit: func(size int) error {
			if err := n.store.AdmitPeerBlocks(size, stored); err != nil {
				return err
			}
			if err := n.takeBudget(p, org, size); err != nil {
				return err
			}
			stored += uint64(size)
			return nil
		},
	}
}

// takeBudget takes size bytes from p's and org's buckets, or refuses.
func (n *Node) takeBudget(p peer.ID, org string, size int) error {
	g := &n.pullGuard
	peerL, orgL := n.pullLimits()
	if !peerL.on() && !orgL.on() {
		return nil
	}
	now := n.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.peers == nil {
		g.peers, g.orgs = map[peer.ID]*bucket{}, map[string]*bucket{}
	}
	s := float64(size)
	var pb, ob *bucket
	if peerL.on() {
		if pb = bucketOf(g.peers, p, peerL, now); pb.tokens < s {
			return fmt.Errorf("%w: peer %s may store %s at once and %s a second", errPeerBudget, p, mibf(peerL.size), mibf(peerL.rate))
		}
	}
	if orgL.on() {
		if ob = bucketOf(g.orgs, org, orgL, now); ob.tokens < s {
			return fmt.Errorf("%w: %s may store %s at once and %s a second from all its peers", errOrgBudget, org, mibf(orgL.size), mibf(orgL.rate))
		}
	}
	if pb != nil {
		pb.tokens -= s
	}
	if ob != nil {
		ob.tokens -= s
	}
	return nil
}

// takeOrgBudget takes size bytes from org's bucket only (blocks bitswap
// fetched: bitswap does not say which peer sent them), or refuses.
func (n *Node) takeOrgBudget(org string, size int) error {
	g := &n.pullGuard
	_, orgL := n.pullLimits()
	if !orgL.on() {
		return nil
	}
	now := n.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.peers == nil {
		g.peers, g.orgs = map[peer.ID]*bucket{}, map[string]*bucket{}
	}
	ob := bucketOf(g.orgs, org, orgL, now)
	if ob.tokens < float64(size) {
		return fmt.Errorf("%w: %s may store %s at once and %s a second from all its peers", errOrgBudget, org, mibf(orgL.size), mibf(orgL.rate))
	}
	ob.tokens -= float64(size)
	return nil
}

func mibf(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }

// pullFailed counts what a failed pull of org from p refused, and
// penalises p when the failure was its doing.
func (n *Node) pullFailed(p peer.ID, org string, err error) {
	strike, flood := false, false
	switch {
	case errors.Is(err, crdt.ErrUnrequestedBlock), errors.Is(err, crdt.ErrBadBlock):
		n.mesh.CountRefused(org, mesh.RefuseUnrequestedBlock, 1)
		strike = true
	case errors.Is(err, crdt.ErrPullTooLarge):
		// More than one pull's bound (1 GiB read, or a million CIDs
		// awaited): a flood, kept out at once.
		n.mesh.CountRefused(org, mesh.RefuseBlockBudget, 1)
		flood = true
	case errors.Is(err, errPeerBudget):
		n.mesh.CountRefused(org, mesh.RefuseBlockBudget, 1)
		strike = true
	case errors.Is(err, errOrgBudget):
		// The organisation's budget is shared: the peer that reached it
		// need not be the one that used it.
		n.mesh.CountRefused(org, mesh.RefuseBlockBudget, 1)
	case errors.Is(err, crdt.ErrDiskFull):
		n.log.Warn("blocks from peers are refused: the disk is short of space", "org", org, "peer", p, "err", err)
	}
	if flood && n.strikes(p, pullStrikes) || strike && n.strikes(p, 1) {
		n.log.Warn("peer disconnected: it sent what this node did not ask for or more than its budget", "peer", p, "org", org,
			"strikes", pullStrikes, "within", pullStrikeWindow, "kept_out_for", pullBan, "err", err)
		n.mesh.KeepOut(p, pullBan, "it sent blocks this node did not ask for, or more than its budget")
	}
}

// strike records an offence of p and reports whether p is now kept out.
func (n *Node) strike(p peer.ID) bool { return n.strikes(p, 1) }

// strikes records k offences of p and reports whether p is now kept out.
func (n *Node) strikes(p peer.ID, k int) bool {
	g := &n.pullGuard
	now := n.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.pen == nil {
		g.pen = map[peer.ID]*penalty{}
	}
	pen := g.pen[p]
	if pen == nil {
		if len(g.pen) >= pullGuardPeers {
			for k, q := range g.pen {
				if q.prune(now); len(q.strikes) == 0 && !now.Before(q.until) {
					delete(g.pen, k)
				}
			}
			for k, q := range g.pen {
				if len(g.pen) < pullGuardPeers {
					break
				}
				if !now.Before(q.until) { // keep those kept out while others may go
					delete(g.pen, k)
				}
			}
			for k := range g.pen {
				if len(g.pen) < pullGuardPeers {
					break
				}
				delete(g.pen, k)
			}
		}
		pen = &penalty{}
		g.pen[p] = pen
	}
	pen.prune(now)
	for range k {
		pen.strikes = append(pen.strikes, now)
	}
	if len(pen.strikes) >= pullStrikes {
		pen.strikes = nil
		pen.until = now.Add(pullBan)
		return true
	}
	return now.Before(pen.until)
}

// keptOut reports whether p is kept out of pulls now.
// keptOutFor is how long p stays kept out of pulls (zero: it is not).
func (n *Node) keptOutFor(p peer.ID) time.Duration {
	g := &n.pullGuard
	now := n.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if pen := g.pen[p]; pen != nil && now.Before(pen.until) {
		return pen.until.Sub(now)
	}
	return 0
}

func (n *Node) keptOut(p peer.ID) bool {
	g := &n.pullGuard
	now := n.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	pen := g.pen[p]
	return pen != nil && now.Before(pen.until)
}
