package mesh

import (
	"context"
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
	if len(ai.Addrs) > 0 && !s.connected {
		s.addr = ai.Addrs[0].String()
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
		ctx, cancel := context.WithTimeout(m.ctx, 10*time.Second)
		err := m.host.Connect(ctx, ai)
		cancel()
		m.mu.Lock()
		defer m.mu.Unlock()
		s.dialing = false
		if err != nil && m.ctx.Err() == nil && m.host.Network().Connectedness(ai.ID) != network.Connected {
			s.lastError = "dial (found on the LAN): " + err.Error()
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
