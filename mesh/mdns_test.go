package mesh

import (
	"crypto/rand"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// TestLANDialRetriesAFailedDial: mdns reports a peer once, so a dial to a
// peer found on the LAN that fails (here: nothing listens yet at its
// address) is tried again, and connects once the peer is up.
func TestLANDialRetriesAFailedDial(t *testing.T) {
	netName := fmt.Sprintf("lan-retry-%d", time.Now().UnixNano())
	newKey := func() crypto.PrivKey {
		k, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	// a dials b; a has the lower ID, so it dials at once rather than
	// leaving the first dial to b.
	ka, kb := newKey(), newKey()
	ida, _ := peer.IDFromPrivateKey(ka)
	idb, _ := peer.IDFromPrivateKey(kb)
	if idb < ida {
		ka, kb, ida, idb = kb, ka, idb, ida
	}
	a, err := New(Options{Network: netName, ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}}, Deps{Key: ka})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })

	// A free port, closed again: b will listen there later.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	addr := ma.StringCast(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", port))

	mdnsNotifee{a}.HandlePeerFound(peer.AddrInfo{ID: idb, Addrs: []ma.Multiaddr{addr}})
	lastError := func() string {
		for _, p := range a.Peers() {
			if p.ID == idb.String() {
				return p.LastError
			}
		}
		return ""
	}
	poll(t, "the first dial fails (nothing listens yet)", func() bool { return strings.Contains(lastError(), "attempt 1 of") })

	b, err := New(Options{Network: netName, ListenAddrs: []string{addr.String()}}, Deps{Key: kb})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	poll(t, "a connects to b once b is up (a retried dial)", func() bool { return a.host.Network().Connectedness(idb) == network.Connected })
}
