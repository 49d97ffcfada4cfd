package mesh

import (
	"context"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/examnode/examnode/policy"
)

// newMeshOpts is newMesh with options: the caller's Network, Peers,
// PrivateNetworkKey and schema versions are kept.
func newMeshOpts(t *testing.T, o Options) *Mesh {
	t.Helper()
	o.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0"}
	o.RedialMax, o.RedialMin = 200*time.Millisecond, 50*time.Millisecond
	return startTestMesh(t, o, Deps{})
}

func TestPeerOfAnotherSchemaVersionIsRefused(t *testing.T) {
	// a is a newer build: it writes schema 2 and reads 1 and 2. b reads
	// only 1, so it cannot take a's records: b refuses a, and says so to
	// a, each naming both versions.
	a := newMeshOpts(t, Options{Network: "n", SchemaVersion: 2, SchemaVersions: []int{1, 2}})
	b := newMeshOpts(t, Options{Network: "n", Peers: []string{a.Addrs()[0]}})
	msgB := waitPeerError(t, b, a.ID().String(), "schema version 2", "this node reads 1", "upgrade examnode on this node")
	msgA := waitPeerError(t, a, b.ID().String(), "schema version 2", "this node reads 1")
	t.Logf("refusal at b: %s", msgB)
	t.Logf("refusal seen by a: %s", msgA)
	// The refusal wraps both sentinels, and b is not connected to a.
	_, err := b.checkHello(a.ID(), a.myHello())
	if !errors.Is(err, ErrVersion) || !errors.Is(err, policy.ErrUnsupportedVersion) {
		t.Fatalf("checkHello: %v; want ErrVersion wrapping policy.ErrUnsupportedVersion", err)
	}
	waitDisconnected(t, b, a.ID())
}

func TestHelloCarriesSchemaVersions(t *testing.T) {
	a := newMeshOpts(t, Options{Network: "n"})
	b := newMeshOpts(t, Options{Network: "n", Peers: []string{a.Addrs()[0]}})
	ta, err := a.Join("org1")
	if err != nil {
		t.Fatal(err)
	}
	tb, err := b.Join("org1")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = ta, tb
	poll(t, "b's peer book shows a's protocol and schema versions", func() bool {
		for _, p := range b.Peers() {
			if p.ID == a.ID().String() && p.Connected && p.Schema == a.opts.SchemaVersion && p.Version == ProtocolVersion {
				return true
			}
		}
		return false
	})
}

func newPSK(t *testing.T) []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func TestPrivateNetworkKey(t *testing.T) {
	key := newPSK(t)
	a := newMeshOpts(t, Options{Network: "n", PrivateNetworkKey: key})
	ta, err := a.Join("org1")
	if err != nil {
		t.Fatal(err)
	}
	// Same key: b connects and the heads exchange runs both ways.
	b := newMeshOpts(t, Options{Network: "n", PrivateNetworkKey: key, Peers: []string{a.Addrs()[0]}})
	tb, err := b.Join("org1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	for _, tp := range []*Topic{ta, tb} {
		got, err := tp.Next(ctx)
		if err != nil {
			t.Fatalf("same key: no heads exchanged: %v", err)
		}
		if hs, err := decodeHeads(got); err != nil || len(hs) != 1 || !hs[0].Equals(testHead) {
			t.Fatalf("same key: heads %v %v", hs, err)
		}
	}

	// Another key, and no key: the handshake fails, and the peer book
	// says why.
	c := newMeshOpts(t, Options{Network: "n", PrivateNetworkKey: newPSK(t), Peers: []string{a.Addrs()[0]}})
	msgC := waitPeerError(t, c, a.ID().String(), "handshake failed", "uses a private-network key", "same key")
	d := newMeshOpts(t, Options{Network: "n", Peers: []string{a.Addrs()[0]}})
	msgD := waitPeerError(t, d, a.ID().String(), "handshake failed", "uses no private-network key")
	t.Logf("other key: %s", msgC)
	t.Logf("no key: %s", msgD)
	// And the other way: a dials the stranger without a key.
	dAddr, err := ParsePeerAddr(d.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Connect(ctx, dAddr); err == nil {
		t.Fatal("a pnet host connected to a host without its key")
	}
	for _, x := range []*Mesh{c, d} {
		for _, p := range a.Peers() {
			if p.ID == x.ID().String() && p.Connected {
				t.Fatalf("a is connected to %s, which lacks its key", x.ID())
			}
		}
	}
	if len(a.Peers()) != 1 {
		t.Fatalf("a's peer book holds %d peers, want only b: %+v", len(a.Peers()), a.Peers())
	}
}

func TestPrivateNetworkKeyOfWrongSizeIsRefused(t *testing.T) {
	k, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	_, err := New(Options{ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, PrivateNetworkKey: make([]byte, 16)}, Deps{Key: k})
	if err == nil {
		t.Fatal("a 16-byte private-network key was accepted")
	}
}
