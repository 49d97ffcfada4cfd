package mesh

import (
	"crypto/rand"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/examnode/examnode/policy"
	"github.com/examnode/examnode/schema"
)

// rememberLog is what a mesh handed to RememberPeer and ForgetPeer.
type rememberLog struct {
	mu     sync.Mutex
	peers  map[peer.ID][]ma.Multiaddr
	forgot []peer.ID
}

func (l *rememberLog) get(p peer.ID) ([]ma.Multiaddr, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a, ok := l.peers[p]
	return a, ok
}

// newRememberingMesh is a gated mesh of trustNet that persists its
// remembered peers into log, starting with remembered.
func (ta *testAuthority) newRememberingMesh(t *testing.T, spec member, log *rememberLog, remembered ...peer.AddrInfo) *Mesh {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(k)
	log.peers = map[peer.ID][]ma.Multiaddr{}
	return startTestMesh(t, Options{Network: trustNet,
		RedialMax: 200 * time.Millisecond, RedialMin: 50 * time.Millisecond, Remembered: remembered},
		Deps{Key: k, Trust: &ta.trust, Membership: ta.grant(t, id, spec),
			RememberPeer: func(ai peer.AddrInfo) {
				log.mu.Lock()
				defer log.mu.Unlock()
				log.peers[ai.ID] = ai.Addrs
			},
			ForgetPeer: func(p peer.ID) {
				log.mu.Lock()
				defer log.mu.Unlock()
				delete(log.peers, p)
				log.forgot = append(log.forgot, p)
			},
		})
}

func remembered(m *Mesh, p peer.ID) bool {
	return slices.ContainsFunc(m.Peers(), func(pi PeerInfo) bool { return pi.ID == p.String() && pi.Remembered })
}

// TestRememberedPeerIsDialledBackAndForgottenWhenRevoked: central remembers
// a VM that dialled it, with the VM's listen address (not the ephemeral
// port it dialled from); a central started with that memory dials the VM
// at once; once the VM is revoked it is forgotten (the store is told) and
// not dialled again.
func TestRememberedPeerIsDialledBackAndForgottenWhenRevoked(t *testing.T) {
	ta := newTestAuthority(t)
	var log1 rememberLog
	a := ta.newRememberingMesh(t, member{role: schema.RoleCentral, allOrgs: true}, &log1)
	b := ta.newGatedMesh(t, member{role: schema.RoleVM, orgs: []string{"org1"}})
	for _, m := range []*Mesh{a, b} {
		if _, err := m.Join("org1"); err != nil {
			t.Fatal(err)
		}
	}
	connectOnce(t, b, a)
	poll(t, "a remembers b with its addresses", func() bool { _, ok := log1.get(b.ID()); return ok })
	got, _ := log1.get(b.ID())
	listen := b.Host().Addrs()
	if len(got) == 0 || !slices.ContainsFunc(got, func(x ma.Multiaddr) bool { return slices.ContainsFunc(listen, x.Equal) }) {
		t.Fatalf("a remembers b at %v, want its listen addresses %v", got, listen)
	}
	for _, x := range got {
		if !slices.ContainsFunc(listen, x.Equal) {
			t.Fatalf("a remembers b at %v, which is not one of its listen addresses %v", x, listen)
		}
	}

	// A central that starts with that memory (a restart) dials b at once.
	var log2 rememberLog
	start := time.Now()
	a2 := ta.newRememberingMesh(t, member{role: schema.RoleCentral, allOrgs: true}, &log2, peer.AddrInfo{ID: b.ID(), Addrs: got})
	if _, err := a2.Join("org1"); err != nil {
		t.Fatal(err)
	}
	poll(t, "a2 dials b back and verifies it", func() bool { _, ok := a2.PeerMembership(b.ID()); return ok })
	t.Logf("dialled back and verified in %s", time.Since(start).Round(time.Millisecond))
	poll(t, "a2 writes b again at its first hello", func() bool { _, ok := log2.get(b.ID()); return ok })

	r, err := ta.auth.Revoke(policy.RevokeRequest{Network: trustNet, Peer: b.ID().String(), Reason: "stolen"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	a2.AddRevocation(r)
	waitDisconnected(t, a2, b.ID())
	poll(t, "a2 forgets the revoked b", func() bool {
		log2.mu.Lock()
		defer log2.mu.Unlock()
		return slices.Contains(log2.forgot, b.ID()) && log2.peers[b.ID()] == nil
	})
	if remembered(a2, b.ID()) {
		t.Fatal("a2 still remembers the revoked b")
	}
	// A redial pass (what the redial loop runs every tick) starts no dial
	// of the forgotten peer.
	a2.dialDue()
	if dialingPeer(a2, b.ID()) || a2.Host().Network().Connectedness(b.ID()) == network.Connected {
		t.Fatal("a2 dialled the revoked b again")
	}
}

// TestDeniedRememberedPeerIsNotDialled: a remembered peer in the deny set
// (a refused stranger, a peer kept out) is not dialled until its time is up.
func TestDeniedRememberedPeerIsNotDialled(t *testing.T) {
	a := newMesh(t, "remembered-deny")
	b := newMesh(t, "remembered-deny")
	a.mu.Lock()
	a.book[b.ID()] = &peerState{remembered: true, addrs: b.Host().Addrs()}
	a.deny.add(b.ID(), a.now().Add(time.Hour))
	a.mu.Unlock()
	// A redial pass (what the redial loop runs every tick) starts no dial
	// of the denied peer, though its wait is over.
	a.dialDue()
	if dialingPeer(a, b.ID()) || a.Host().Network().Connectedness(b.ID()) == network.Connected {
		t.Fatal("a dialled a denied peer")
	}
	if n := a.Refused(NodeWide)[RefuseStranger]; n != 0 {
		t.Fatalf("a's gater refused %d dials to the denied peer: the redial tried it", n)
	}
	a.deny.add(b.ID(), a.now().Add(-time.Second)) // its time is up
	poll(t, "a dials b once it is no longer denied", func() bool {
		return a.Host().Network().Connectedness(b.ID()) == network.Connected
	})
}

// dialingPeer reports whether m has a dial of p under way.
func dialingPeer(m *Mesh, p peer.ID) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.book[p]
	return st != nil && st.dialing
}
