package mesh

import (
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// The peer book is bounded: every peer that connects gets an entry, and
// throwaway identities must not grow it for ever.
//
//   - A peer that was refused or never verified (on a gated mesh) is
//     forgotten when it disconnects, and so is libp2p's peerstore entry
//     for it; the last recentRefusals of them stay in a small ring, shown
//     by Peers with the reason, so that `examnode peers` still says why.
//   - Beyond Options.MaxPeers entries, disconnected peers are forgotten,
//     oldest first, remembered peers (remembered.go) after all others.
//     Configured peers are never forgotten, nor is a connected peer.

// recentRefusals is how many forgotten refused peers Peers still shows.
const recentRefusals = 32

// refusedPeerLog is a forgotten refused peer, as Peers shows it.
type refusedPeerLog struct {
	id     peer.ID
	addr   string
	reason string
	at     time.Time
}

// forgetLocked forgets p, which has just disconnected, if it is a refused
// or unverified peer of a gated mesh, and bounds the book (m.mu held).
func (m *Mesh) forgetLocked(p peer.ID, s *peerState) {
	if s.configured || s.lan {
		return
	}
	if m.Gated() && s.member == nil && !s.remembered {
		delete(m.book, p)
		m.forgetPeerstore(p)
		if s.lastError != "" {
			m.recent = append(m.recent, refusedPeerLog{id: p, addr: s.addr, reason: s.lastError, at: s.lastSeen})
			if n := len(m.recent) - recentRefusals; n > 0 {
				m.recent = append(m.recent[:0:0], m.recent[n:]...)
			}
		}
	}
	for len(m.book) > m.opts.MaxPeers {
		var oldest peer.ID
		var at time.Time
		var rem bool
		for id, st := range m.book {
			if st.connected || st.configured || st.dialing {
				continue
			}
			// Remembered peers go last: they are the ones this node dials back.
			if oldest == "" || (rem && !st.remembered) || (rem == st.remembered && st.lastSeen.Before(at)) {
				oldest, at, rem = id, st.lastSeen, st.remembered
			}
		}
		if oldest == "" {
			return
		}
		delete(m.book, oldest)
		m.forgetPeerstore(oldest)
	}
}

// forgetPeerstore drops what libp2p keeps of a forgotten peer, unless it
// has connected again meanwhile.
func (m *Mesh) forgetPeerstore(p peer.ID) {
	if m.host.Network().Connectedness(p) == network.Connected {
		return
	}
	ps := m.host.Peerstore()
	ps.ClearAddrs(p)
	ps.RemovePeer(p)
}

// PeerBookSize is how many peers the peer book holds.
func (m *Mesh) PeerBookSize() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.book)
}

// recentLocked is the ring of forgotten refused peers, as PeerInfo
// entries not in the book (m.mu held).
func (m *Mesh) recentLocked() []PeerInfo {
	seen := map[peer.ID]bool{}
	var out []PeerInfo
	for i := len(m.recent) - 1; i >= 0; i-- {
		r := m.recent[i]
		if seen[r.id] || m.book[r.id] != nil {
			continue
		}
		seen[r.id] = true
		out = append(out, PeerInfo{ID: r.id.String(), Roles: []string{}, Orgs: []string{}, Addr: r.addr,
			LastSeen: r.at, LastError: r.reason})
	}
	return out
}
