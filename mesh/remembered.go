package mesh

import (
	"context"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// Remembered peers: who this node dials back.
//
// A peer that completes a hello with this node and shares an organisation
// it holds (on a gated mesh: a verified member) is remembered, with the
// addresses it can be dialled on, and redialled while it is disconnected.
// Configured peers are not: they are redialled anyway.
//
//   - Addresses: a LAN peer's are those mDNS gave; any other's are the
//     listen addresses its identify protocol reported on the connection
//     (event.EvtPeerIdentificationCompleted), not the connection's remote
//     address, whose port is ephemeral when the peer dialled in (a VM
//     dialling central). Identify is libp2p's own, authenticated by the
//     same secure channel as the hello, and older peers send it too; the
//     hello carries no addresses. Loopback addresses are dropped unless the
//     peer connected over loopback, and at most maxRememberedAddrs are kept.
//   - Persistence is the node's (Deps.RememberPeer, Deps.ForgetPeer),
//     called from one goroutine, in order, and rarely: when a peer becomes
//     remembered in this run, when its addresses change, and at most once
//     a rememberRefresh while it stays connected, never on every exchange.
//     Options.Remembered hands what was persisted back at start.
//   - Redial: at once at start, then after each failed dial with a
//     backoff from RedialMin doubling to RedialMax (lanRedialMax for a
//     peer found on the LAN in this run), jittered, at most
//     rememberedDialers dials at a time: a central whose centres' VMs are
//     off for the night tries each at most every RedialMax.
//   - A peer refused at the hello, either way (revoked, lapsed, wrong
//     network or version, nothing in common), is forgotten, in the book
//     and the node's store. A denied peer (gate.go: a refused stranger, a
//     peer kept out) is not dialled.
const (
	maxRememberedAddrs = 16
	rememberedDialers  = 64
	rememberRefresh    = 24 * time.Hour
	rememberedDialWait = 5 * time.Second
)

// loadRemembered puts the peers of Options.Remembered in the book, due
// for a dial at once (New, before the goroutines start).
func (m *Mesh) loadRemembered() {
	for _, ai := range m.opts.Remembered {
		if ai.ID == m.host.ID() || m.isConfigured(ai.ID) || len(ai.Addrs) == 0 {
			continue
		}
		s := m.book[ai.ID]
		if s == nil {
			s = &peerState{}
			m.book[ai.ID] = s
		}
		s.remembered = true // written again at its first hello (rememberLocked)
		s.addrs = capAddrs(ai.Addrs)
		s.addr = firstAddr(s.addrs)
	}
}

func capAddrs(as []ma.Multiaddr) []ma.Multiaddr {
	return slices.Clone(as[:min(len(as), maxRememberedAddrs)])
}

// rememberLocked remembers p after an accepted full hello if it shares an
// organisation this node holds (m.mu held; orgs are those notePeer kept,
// already narrowed to what a gated peer's membership may read).
func (m *Mesh) rememberLocked(p peer.ID, s *peerState, orgs []string) {
	if s.configured || (m.Gated() && s.member == nil) ||
		!slices.ContainsFunc(orgs, func(org string) bool { return m.topics[org] != nil }) {
		return
	}
	if !s.remembered || m.now().Sub(s.persistedAt) >= rememberRefresh {
		s.remembered = true
		s.persistedAt = time.Time{} // written again (persistLoop)
		m.markDirtyLocked(p)
	}
}

// forgetRememberedLocked forgets a remembered peer that was refused, or
// refused this node (m.mu held).
func (m *Mesh) forgetRememberedLocked(p peer.ID, s *peerState) {
	if s == nil || !s.remembered {
		return
	}
	s.remembered = false
	m.markDirtyLocked(p)
}

func (m *Mesh) markDirtyLocked(p peer.ID) {
	if m.deps.RememberPeer == nil && m.deps.ForgetPeer == nil {
		return
	}
	m.dirty[p] = true
	select {
	case m.dirtyCh <- struct{}{}:
	default:
	}
}

// dialAddrsLocked is where a remembered peer is dialled (m.mu held).
func (s *peerState) dialAddrsLocked() []ma.Multiaddr {
	if len(s.lanAddrs) > 0 {
		return s.lanAddrs
	}
	return s.addrs
}

// persistLoop hands the remembered peers that changed to the node, in the
// order they changed, from one goroutine, and what is left when the mesh
// closes (the node closes its store after the mesh).
func (m *Mesh) persistLoop() {
	for done := false; !done; {
		select {
		case <-m.ctx.Done():
			done = true
		case <-m.dirtyCh:
		}
		type op struct {
			ai       peer.AddrInfo
			remember bool
		}
		var ops []op
		m.mu.Lock()
		for p := range m.dirty {
			s := m.book[p]
			addrs := []ma.Multiaddr(nil)
			if s != nil {
				addrs = s.dialAddrsLocked()
			}
			switch {
			case s != nil && s.remembered && len(addrs) == 0:
				continue // persisted once identify reports its addresses
			case s != nil && s.remembered:
				s.persistedAt = m.now()
				ops = append(ops, op{peer.AddrInfo{ID: p, Addrs: slices.Clone(addrs)}, true})
			default:
				ops = append(ops, op{peer.AddrInfo{ID: p}, false})
			}
			delete(m.dirty, p)
		}
		m.mu.Unlock()
		for _, o := range ops {
			switch {
			case o.remember && m.deps.RememberPeer != nil:
				m.deps.RememberPeer(o.ai)
			case !o.remember && m.deps.ForgetPeer != nil:
				m.deps.ForgetPeer(o.ai.ID)
			}
		}
	}
}

// identifyLoop keeps the listen addresses each peer's identify reports.
func (m *Mesh) identifyLoop(sub event.Subscription) {
	defer sub.Close()
	for {
		select {
		case <-m.ctx.Done():
			return
		case e, ok := <-sub.Out():
			if !ok {
				return
			}
			ev, ok := e.(event.EvtPeerIdentificationCompleted)
			if !ok {
				continue
			}
			m.noteListenAddrs(ev.Peer, ev.Conn, ev.ListenAddrs)
		}
	}
}

// noteListenAddrs records the listen addresses p reported on conn.
func (m *Mesh) noteListenAddrs(p peer.ID, conn network.Conn, listen []ma.Multiaddr) {
	loopback := conn != nil && manet.IsIPLoopback(conn.RemoteMultiaddr())
	var addrs []ma.Multiaddr
	for _, a := range listen {
		if len(addrs) == maxRememberedAddrs {
			break
		}
		if manet.IsIPUnspecified(a) || (!loopback && manet.IsIPLoopback(a)) {
			continue
		}
		addrs = append(addrs, a)
	}
	if len(addrs) == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.book[p]
	if s == nil || s.configured {
		return
	}
	if slices.EqualFunc(s.addrs, addrs, func(a, b ma.Multiaddr) bool { return a.Equal(b) }) {
		return
	}
	s.addrs = addrs
	if s.remembered && len(s.lanAddrs) == 0 {
		m.markDirtyLocked(p)
	}
}

// dialRememberedDueLocked redials the remembered peers that are not
// connected and whose wait is over (m.mu held).
func (m *Mesh) dialRememberedDueLocked(now time.Time) {
	for p, s := range m.book {
		if m.rememberedDialing >= rememberedDialers {
			return
		}
		if !s.remembered || s.configured || s.connected || s.dialing || now.Before(s.nextDial) {
			continue
		}
		addrs := s.dialAddrsLocked()
		if len(addrs) == 0 || m.deny.denied(p, now) {
			continue // a denied peer is not dialled, not even to be refused
		}
		if m.host.Network().Connectedness(p) == network.Connected {
			continue
		}
		s.dialing = true
		m.rememberedDialing++
		ai := peer.AddrInfo{ID: p, Addrs: slices.Clone(addrs)}
		limit := m.opts.RedialMax
		if s.lan {
			limit = lanRedialMax
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			// The swarm's own dial backoff would refuse a dial this soon
			// after a failed one; the wait here is the backoff.
			ctx, cancel := context.WithTimeout(network.WithForceDirectDial(m.ctx, "redial of a remembered peer"), rememberedDialWait)
			err := m.host.Connect(ctx, ai)
			cancel()
			m.mu.Lock()
			defer m.mu.Unlock()
			s.dialing = false
			m.rememberedDialing--
			if err == nil {
				s.backoff = 0
				return
			}
			s.backoff = min(max(2*s.backoff, m.opts.RedialMin), limit)
			s.nextDial = m.now().Add(s.backoff + rand.N(s.backoff/4+1))
			if m.ctx.Err() == nil {
				kind := "remembered"
				if s.lan {
					kind = "LAN peer, remembered"
				}
				s.lastError = "dial (" + kind + "): " + err.Error()
			}
		}()
	}
}
