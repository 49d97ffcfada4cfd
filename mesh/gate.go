package mesh

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
)

// What an unverified peer learns, on a gated mesh.
//
// Nothing about an organisation reaches a peer before its hello and
// membership are verified, and afterwards only what its membership may
// read:
//
//   - Gossipsub never sees an unverified peer: the host gossipsub is given
//     (pubsubHost) holds back both directions of its streams until the
//     peer's membership is verified, and resets them if the peer is
//     refused. So an unverified peer receives neither this node's
//     subscriptions (topic names carry organisation IDs) nor any message,
//     and its own subscriptions are read only once it is verified.
//   - A verified peer's subscriptions to the topic of an organisation its
//     membership may not read are dropped where they arrive (subFilter,
//     counted as RefuseSubscription), so gossipsub never sends it that
//     topic's messages, by mesh, fanout, flood publishing or gossip
//     (IHAVE/IWANT). A peer filter repeats the check for gossip and the
//     mesh.
//   - The heads exchange: the initiator presents its membership first and
//     nothing else (hello.Present); the responder answers only once it has
//     verified it, with what the membership may read. A refused peer's
//     reply carries the versions and the reason only (exchange.go).
//   - An inbound peer that has not presented a valid membership within
//     Options.HelloTimeout is disconnected, and a refused stranger is
//     denied reconnection for Options.DenyFor (denySet, a bounded set that
//     forgets the oldest).
//
// On an open mesh none of this applies.

// strangerTicks is how often pending strangers' deadlines are checked, as
// a fraction of HelloTimeout.
const strangerTicks = 10

// verifiedState is what a waiter learns about a peer.
type verifiedState int

const (
	pendingPeer verifiedState = iota
	verifiedPeer
	refusedPeer
)

// peerVerification reports whether p is verified, refused or pending.
func (m *Mesh) peerVerification(p peer.ID) (verifiedState, <-chan struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.book[p]
	switch {
	case s != nil && s.member != nil:
		return verifiedPeer, nil
	case s != nil && s.refused:
		return refusedPeer, nil
	case m.host.Network().Connectedness(p) != network.Connected:
		return refusedPeer, nil
	}
	return pendingPeer, m.verifyCh
}

// signalLocked wakes every awaitVerified (m.mu held).
func (m *Mesh) signalLocked() {
	close(m.verifyCh)
	m.verifyCh = make(chan struct{})
}

// awaitVerified waits until p's membership is verified (true) or it is
// refused, disconnected, or not verified within exchangeTimeout (false).
// On an open mesh it returns true at once.
func (m *Mesh) awaitVerified(ctx context.Context, p peer.ID) bool {
	if !m.Gated() {
		return true
	}
	t := time.NewTimer(exchangeTimeout)
	defer t.Stop()
	for {
		st, ch := m.peerVerification(p)
		switch st {
		case verifiedPeer:
			return true
		case refusedPeer:
			return false
		}
		select {
		case <-ch:
		case <-t.C:
			return false
		case <-ctx.Done():
			return false
		case <-m.ctx.Done():
			return false
		}
	}
}

// pubsubHost is the host gossipsub runs on, on a gated mesh: its streams,
// inbound and outbound, wait for the peer's verification.
type pubsubHost struct {
	host.Host
	m *Mesh
}

func (h pubsubHost) gate(handler network.StreamHandler) network.StreamHandler {
	return func(s network.Stream) {
		if !h.m.awaitVerified(h.m.ctx, s.Conn().RemotePeer()) {
			_ = s.Reset()
			return
		}
		handler(s)
	}
}

func (h pubsubHost) SetStreamHandler(pid protocol.ID, handler network.StreamHandler) {
	h.Host.SetStreamHandler(pid, h.gate(handler))
}

func (h pubsubHost) SetStreamHandlerMatch(pid protocol.ID, match func(protocol.ID) bool, handler network.StreamHandler) {
	h.Host.SetStreamHandlerMatch(pid, match, h.gate(handler))
}

// errUnverified is what gossipsub's stream to an unverified peer fails
// with.
var errUnverified = errors.New("mesh: the peer's membership is not verified")

func (h pubsubHost) NewStream(ctx context.Context, p peer.ID, pids ...protocol.ID) (network.Stream, error) {
	if !h.m.awaitVerified(ctx, p) {
		return nil, fmt.Errorf("%w: %s", errUnverified, p)
	}
	return h.Host.NewStream(ctx, p, pids...)
}

// orgOfTopic returns the organisation of one of this network's topics.
func (m *Mesh) orgOfTopic(topic string) (string, bool) {
	prefix := "/examnode/" + m.opts.Network + "/org/"
	if !strings.HasPrefix(topic, prefix) || !strings.HasSuffix(topic, "/heads") {
		return "", false
	}
	org := strings.TrimSuffix(strings.TrimPrefix(topic, prefix), "/heads")
	return org, org != ""
}

// mayReadTopic decides whether peer p may receive topic's messages.
func (m *Mesh) mayReadTopic(p peer.ID, topic string) (org string, ok bool) {
	org, isOrg := m.orgOfTopic(topic)
	if !isOrg {
		return NodeWide, false
	}
	member, verified := m.PeerMembership(p)
	return org, verified && m.mayRead(&member, org)
}

// subFilter drops, on a gated mesh, a peer's subscriptions to topics of
// organisations its membership may not read.
type subFilter struct{ m *Mesh }

func (subFilter) CanSubscribe(string) bool { return true }

func (f subFilter) FilterIncomingSubscriptions(p peer.ID, subs []*pb.RPC_SubOpts) ([]*pb.RPC_SubOpts, error) {
	out := subs[:0:0]
	for _, s := range subs {
		if !s.GetSubscribe() {
			out = append(out, s) // leaving is always allowed
			continue
		}
		org, ok := f.m.mayReadTopic(p, s.GetTopicid())
		if !ok {
			f.m.CountRefused(org, RefuseSubscription, 1)
			f.m.log.Debug("subscription refused", "peer", p, "topic", s.GetTopicid())
			continue
		}
		out = append(out, s)
	}
	return out, nil
}

// peerFilter is gossipsub's per-topic peer filter on a gated mesh (mesh
// grafts, gossip, IWANT): it repeats subFilter's decision.
func (m *Mesh) peerFilter(p peer.ID, topic string) bool {
	_, ok := m.mayReadTopic(p, topic)
	return ok
}

// pubsubOptions are gossipsub's options that gating adds.
func (m *Mesh) gatedPubsubOptions() []pubsub.Option {
	if !m.Gated() {
		return nil
	}
	return []pubsub.Option{
		pubsub.WithSubscriptionFilter(subFilter{m}),
		pubsub.WithPeerFilter(m.peerFilter),
	}
}

// strangerLoop refuses, on a gated mesh, connected peers that have not
// presented a valid membership within HelloTimeout of connecting
// (configured peers excepted: this node dials them and presents first).
func (m *Mesh) strangerLoop() {
	if !m.Gated() {
		return
	}
	t := time.NewTicker(max(m.opts.HelloTimeout/strangerTicks, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
		now := m.now()
		var late, declined []peer.ID
		m.mu.Lock()
		for p, s := range m.book {
			if !s.connected || s.member != nil || s.configured || s.refused || s.connectedAt.IsZero() ||
				s.presenting > 0 || now.Sub(s.connectedAt) < m.opts.HelloTimeout {
				continue
			}
			if s.declined {
				declined = append(declined, p)
			} else {
				late = append(late, p)
			}
			s.connectedAt = time.Time{}
		}
		m.mu.Unlock()
		for _, p := range late {
			m.refuseAfter(p, fmt.Errorf("%w: peer %s presented no valid membership within %s of connecting",
				ErrNotAMember, p, m.opts.HelloTimeout), 0)
		}
		for _, p := range declined { // it verified nothing of ours to offer: not a stranger
			_ = m.host.Network().ClosePeer(p)
		}
	}
}

// denySet is a bounded set of peers refused reconnection until a time;
// the oldest entry goes first when it is full.
type denySet struct {
	mu    sync.Mutex
	until map[peer.ID]time.Time
	why   map[peer.ID]string // the reason counted when a kept-out peer comes back (KeepOut); absent: a stranger
	order []peer.ID
	max   int
}

func newDenySet(n int) *denySet {
	return &denySet{until: map[peer.ID]time.Time{}, why: map[peer.ID]string{}, max: n}
}

func (d *denySet) add(p peer.ID, until time.Time) { d.addWhy(p, until, "") }

// addWhy denies p until a time, counting its returns under reason (a
// stranger's when empty).
func (d *denySet) addWhy(p peer.ID, until time.Time, reason string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.until[p]; !ok {
		d.order = append(d.order, p)
	}
	d.until[p] = until
	if reason != "" {
		d.why[p] = reason
	} else {
		delete(d.why, p)
	}
	for len(d.order) > d.max {
		delete(d.until, d.order[0])
		delete(d.why, d.order[0])
		d.order = slices.Delete(d.order, 0, 1)
	}
}

// reason is what a denied peer's return is counted as.
func (d *denySet) reason(p peer.ID) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if r := d.why[p]; r != "" {
		return r
	}
	return RefuseStranger
}

func (d *denySet) denied(p peer.ID, now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	u, ok := d.until[p]
	if !ok {
		return false
	}
	if now.Before(u) {
		return true
	}
	delete(d.until, p)
	delete(d.why, p)
	if i := slices.Index(d.order, p); i >= 0 {
		d.order = slices.Delete(d.order, i, i+1)
	}
	return false
}

func (d *denySet) len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.until)
}

// gater refuses the connections of denied peers and then asks the
// caller's gater (Deps.Gater), if any.
type gater struct {
	m     *Mesh
	inner connmgr.ConnectionGater
}

func (g gater) deny(p peer.ID) bool {
	if g.m.deny.denied(p, g.m.now()) && !g.m.isConfigured(p) {
		g.m.CountRefused(NodeWide, g.m.deny.reason(p), 1)
		return true
	}
	return false
}

func (g gater) InterceptPeerDial(p peer.ID) bool {
	if g.deny(p) {
		return false
	}
	return g.inner == nil || g.inner.InterceptPeerDial(p)
}

func (g gater) InterceptAddrDial(p peer.ID, a ma.Multiaddr) bool {
	return g.inner == nil || g.inner.InterceptAddrDial(p, a)
}

func (g gater) InterceptAccept(a network.ConnMultiaddrs) bool {
	return g.inner == nil || g.inner.InterceptAccept(a)
}

func (g gater) InterceptSecured(dir network.Direction, p peer.ID, a network.ConnMultiaddrs) bool {
	if dir == network.DirInbound && g.deny(p) {
		return false
	}
	return g.inner == nil || g.inner.InterceptSecured(dir, p, a)
}

func (g gater) InterceptUpgraded(c network.Conn) (bool, control.DisconnectReason) {
	if g.inner == nil {
		return true, 0
	}
	return g.inner.InterceptUpgraded(c)
}

func (m *Mesh) isConfigured(p peer.ID) bool {
	return slices.ContainsFunc(m.peers, func(ai peer.AddrInfo) bool { return ai.ID == p })
}

// startHello notes, on a gated mesh, that a hello from unverified peer p
// is being read (strangerLoop lets it finish); it reports whether p was
// unverified. endHello undoes it.
func (m *Mesh) startHello(p peer.ID) bool {
	if !m.Gated() {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.book[p]
	if s == nil || s.member != nil {
		return false
	}
	s.presenting++
	return true
}

func (m *Mesh) endHello(p peer.ID, started bool) {
	if !started {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.book[p]; s != nil && s.presenting > 0 {
		s.presenting--
	}
}

// KeepOut disconnects p and refuses its connections for d (configured
// peers excepted, as for strangers): another layer found it misbehaving
// (the node's pull guard, for blocks it did not ask for or over its
// budget). Without it the peer's redial, or this node's, would bring it
// straight back.
func (m *Mesh) KeepOut(p peer.ID, d time.Duration, why string) {
	if d <= 0 {
		return
	}
	m.deny.addWhy(p, m.now().Add(d), RefuseKeptOut)
	m.noteError(p, "kept out for "+d.String()+": "+why)
	_ = m.host.Network().ClosePeer(p)
}
