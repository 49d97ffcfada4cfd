package mesh

import (
	"github.com/libp2p/go-libp2p/core/network"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	ma "github.com/multiformats/go-multiaddr"
)

// Limits are the libp2p resource manager's limits, per peer and for the
// whole node. A connection, stream or memory reservation beyond one is
// refused where it arrives and counted (RefuseResourceLimit, node-wide).
// Configured peers are allowlisted: they get the node-wide limits again
// on top when the normal ones are used up.
type Limits struct {
	// Conns and ConnsPerPeer bound connections (both directions).
	Conns, ConnsPerPeer int
	// Streams and StreamsPerPeer bound streams in each direction.
	Streams, StreamsPerPeer int
	// Memory and MemoryPerPeer bound the memory libp2p reserves for
	// connections and streams (muxer windows, gossipsub queues), in bytes.
	Memory, MemoryPerPeer int64
}

// DefaultLimits are high enough for a central host with the VMs of 200
// organisations (1,000+ peers, each with a few connections) and for the
// benchmarks' bitswap, dag-pull and sync streams; low enough that one
// peer cannot take the node's memory or file descriptors.
func DefaultLimits() Limits {
	return Limits{
		Conns: 4096, ConnsPerPeer: 8,
		Streams: 32768, StreamsPerPeer: 512,
		Memory: 2 << 30, MemoryPerPeer: 128 << 20,
	}
}

func (l *Limits) fill() {
	d := DefaultLimits()
	for _, f := range []struct{ v, d *int }{
		{&l.Conns, &d.Conns}, {&l.ConnsPerPeer, &d.ConnsPerPeer},
		{&l.Streams, &d.Streams}, {&l.StreamsPerPeer, &d.StreamsPerPeer},
	} {
		if *f.v <= 0 {
			*f.v = *f.d
		}
	}
	if l.Memory <= 0 {
		l.Memory = d.Memory
	}
	if l.MemoryPerPeer <= 0 {
		l.MemoryPerPeer = d.MemoryPerPeer
	}
}

// resourceManager builds libp2p's resource manager with l's limits (the
// scopes l does not name keep go-libp2p's scaled defaults).
func (m *Mesh) resourceManager(l Limits, allow []ma.Multiaddr) (network.ResourceManager, error) {
	lv := func(n int) rcmgr.LimitVal { return rcmgr.LimitVal(n) }
	system := rcmgr.ResourceLimits{
		Conns: lv(l.Conns), ConnsInbound: lv(l.Conns), ConnsOutbound: lv(l.Conns),
		Streams: lv(2 * l.Streams), StreamsInbound: lv(l.Streams), StreamsOutbound: lv(l.Streams),
		Memory: rcmgr.LimitVal64(l.Memory),
	}
	// Transient: connections and streams not yet tied to a peer or a
	// protocol (handshakes, protocol negotiation).
	transient := rcmgr.ResourceLimits{
		Conns: lv(max(l.Conns/8, 64)), ConnsInbound: lv(max(l.Conns/8, 64)), ConnsOutbound: lv(max(l.Conns/8, 64)),
		Streams: lv(max(l.Streams/8, 256)), StreamsInbound: lv(max(l.Streams/16, 128)), StreamsOutbound: lv(max(l.Streams/16, 128)),
		Memory: rcmgr.LimitVal64(max(l.Memory/8, 64<<20)),
	}
	perPeer := rcmgr.ResourceLimits{
		Conns: lv(l.ConnsPerPeer), ConnsInbound: lv(l.ConnsPerPeer), ConnsOutbound: lv(l.ConnsPerPeer),
		Streams: lv(2 * l.StreamsPerPeer), StreamsInbound: lv(l.StreamsPerPeer), StreamsOutbound: lv(l.StreamsPerPeer),
		Memory: rcmgr.LimitVal64(l.MemoryPerPeer),
	}
	// One protocol of one peer (bitswap, dag-pull, sync, gossipsub) may use
	// the peer's whole stream allowance.
	protoPeer := rcmgr.ResourceLimits{
		Streams: lv(2 * l.StreamsPerPeer), StreamsInbound: lv(l.StreamsPerPeer), StreamsOutbound: lv(l.StreamsPerPeer),
		Memory: rcmgr.LimitVal64(l.MemoryPerPeer),
	}
	cfg := rcmgr.PartialLimitConfig{
		System: system, Transient: transient,
		AllowlistedSystem: system, AllowlistedTransient: transient,
		PeerDefault: perPeer, ProtocolPeerDefault: protoPeer, ServicePeerDefault: protoPeer,
		ProtocolDefault: system, ServiceDefault: system,
	}
	limiter := rcmgr.NewFixedLimiter(cfg.Build(rcmgr.DefaultLimits.AutoScale()))
	return rcmgr.NewResourceManager(limiter,
		rcmgr.WithTraceReporter(limitCounter{m}),
		rcmgr.WithAllowlistedMultiaddrs(allow),
		rcmgr.WithMetricsDisabled(),
	)
}

// limitCounter counts the resource manager's refusals.
type limitCounter struct{ m *Mesh }

func (c limitCounter) ConsumeEvent(e rcmgr.TraceEvt) {
	switch e.Type {
	case rcmgr.TraceBlockAddConnEvt, rcmgr.TraceBlockAddStreamEvt, rcmgr.TraceBlockReserveMemoryEvt:
		c.m.CountRefused(NodeWide, RefuseResourceLimit, 1)
	}
}
