package mesh

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
)

// LAN discovery: VMs of a centre find each other by mDNS, so they keep
// syncing with each other while central is unreachable (and when it was
// never reachable). go-libp2p's mdns service only reports peers; the mesh
// connects them. Discovery bypasses nothing: every connection still goes
// through the connection gater and the hello exchange, and a peer of
// another network, or without a membership, is refused there.

// mdnsServiceName is the DNS-SD service of a network, so that meshes of
// different networks on one LAN do not even try each other.
func mdnsServiceName(network string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(network) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
			b.WriteRune(r)
		default:
			b.WriteRune('-')
		}
	}
	name := b.String()
	if len(name) > 40 {
		name = name[:40]
	}
	return "_examnode-" + name + "._udp"
}

type mdnsNotifee struct{ m *Mesh }

// Dialling a peer found on the LAN. The two ends of a pair usually find
// each other in the same moment, and two TCP dials that cross between
// ports both ends reuse can become one connection on which both sides send
// a TLS ClientHello: the handshake fails on both ends and neither is
// connected. mdns reports a peer once, so nothing would try again. Hence:
// of a pair, the end with the lower peer ID dials at once and the other
// waits lanDialDelay (and dials only if still not connected); a failed
// dial is tried again after a growing, jittered wait, up to
// lanDialAttempts times.
const (
	lanDialDelay    = 2 * time.Second
	lanDialAttempts = 6
	lanDialMaxWait  = 30 * time.Second
)

// HandlePeerFound records a peer found on the LAN and dials it. mdns calls
// it on a goroutine of its own, also while the mesh is closing.
func (n mdnsNotifee) HandlePeerFound(ai peer.AddrInfo) {
	m := n.m
	if m.ctx.Err() != nil || ai.ID == m.host.ID() {
		return
	}
	m.host.Peerstore().AddAddrs(ai.ID, ai.Addrs, 10*time.Minute)
	m.mu.Lock()
	s := m.book[ai.ID]
	if s == nil {
		s = &peerState{}
		m.book[ai.ID] = s
	}
	s.lan = true
	if len(ai.Addrs) > 0 {
		s.lanAddrs = slices.Clone(ai.Addrs)
		if !s.connected {
			s.addr = ai.Addrs[0].String()
		}
	}
	dial := !s.connected && !s.dialing && m.ctx.Err() == nil
	if dial {
		s.dialing = true
		m.wg.Add(1)
	}
	m.mu.Unlock()
	if !dial {
		return
	}
	go func() {
		defer m.wg.Done()
		defer func() {
			m.mu.Lock()
			s.dialing = false
			m.mu.Unlock()
		}()
		var wait time.Duration
		if ai.ID < m.host.ID() {
			wait = lanDialDelay // the other end dials first
		}
		for attempt := range lanDialAttempts {
			if wait > 0 {
				t := time.NewTimer(wait + rand.N(wait/2+1))
				select {
				case <-t.C:
				case <-m.ctx.Done():
					t.Stop()
					return
				}
			}
			if m.host.Network().Connectedness(ai.ID) == network.Connected {
				return
			}
			ctx, cancel := context.WithTimeout(m.ctx, 10*time.Second)
			if attempt > 0 {
				// The swarm would refuse a dial this soon after a failed one
				// (its own dial backoff); this loop is the backoff here.
				ctx = network.WithForceDirectDial(ctx, "retry of a peer found on the LAN")
			}
			err := m.host.Connect(ctx, ai)
			cancel()
			if err == nil || m.ctx.Err() != nil || m.host.Network().Connectedness(ai.ID) == network.Connected {
				return
			}
			m.mu.Lock()
			s.lastError = fmt.Sprintf("dial (found on the LAN, attempt %d of %d): %v", attempt+1, lanDialAttempts, err)
			m.mu.Unlock()
			wait = min(time.Duration(attempt+1)*time.Second, lanDialMaxWait)
		}
	}()
}

func (m *Mesh) startMDNS() error {
	svc := mdns.NewMdnsService(m.host, mdnsServiceName(m.opts.Network), mdnsNotifee{m})
	if err := svc.Start(); err != nil {
		return err
	}
	m.mdns = svc
	return nil
}

// lanRedialMax bounds the wait between redials of a remembered LAN peer:
// a dial to a VM that is not there costs one SYN on the LAN, and a centre
// whose LAN comes back must be whole again within seconds.
const lanRedialMax = 4 * time.Second
