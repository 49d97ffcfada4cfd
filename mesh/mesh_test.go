package mesh

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	mh "github.com/multiformats/go-multihash"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreAnyFunction("github.com/ipfs/go-log/v2/writer.(*MirrorWriter).logRoutine"),
	)
}

var testHead = func() cid.Cid {
	h, _ := mh.Sum([]byte("a head"), mh.SHA2_256, -1)
	return cid.NewCidV1(cid.DagProtobuf, h)
}()

func newMesh(t *testing.T, network string, peers ...string) *Mesh {
	t.Helper()
	return startTestMesh(t, Options{Network: network, Peers: peers,
		RedialMax: 200 * time.Millisecond, RedialMin: 50 * time.Millisecond}, Deps{})
}

// startTestMesh starts a mesh for a test, closed when the test ends: o
// listens on 127.0.0.1 unless it says otherwise; deps gets a fresh key and
// a Heads that answers testHead where it has none.
func startTestMesh(t testing.TB, o Options, deps Deps) *Mesh {
	t.Helper()
	if o.ListenAddrs == nil {
		o.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0"}
	}
	if deps.Key == nil {
		k, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		deps.Key = k
	}
	if deps.Heads == nil {
		deps.Heads = func(context.Context, string) ([]byte, error) { return encodeHeads([]cid.Cid{testHead}) }
	}
	m, err := New(o, deps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Error(err)
		}
	})
	return m
}

// waitPeerError polls m's peer book until the entry of peer id carries an
// error containing want.
func waitPeerError(t *testing.T, m *Mesh, id string, want ...string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, p := range m.Peers() {
			if p.ID != id {
				continue
			}
			ok := p.LastError != ""
			for _, w := range want {
				ok = ok && strings.Contains(p.LastError, w)
			}
			if ok {
				return p.LastError
			}
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-t.Context().Done():
		}
	}
	t.Fatalf("peer %s never recorded an error containing %q; book: %+v", id, want, m.Peers())
	return ""
}

func TestPeerOfAnotherNetworkIsRefused(t *testing.T) {
	a := newMesh(t, "centre-net")
	b := newMesh(t, "other-net", a.Addrs()[0])
	msg := waitPeerError(t, b, a.ID().String(), "other-net", "centre-net")
	t.Logf("refusal: %s", msg)
}

func TestPeerOfAnotherProtocolVersionIsRefused(t *testing.T) {
	a := newMesh(t, "n")
	a.version = ProtocolVersion + 1
	b := newMesh(t, "n", a.Addrs()[0])
	msg := waitPeerError(t, b, a.ID().String(),
		fmt.Sprintf("version %d", ProtocolVersion+1), fmt.Sprintf("speaks %d", ProtocolVersion))
	t.Logf("refusal: %s", msg)
}

func TestHeadsExchangedOnConnect(t *testing.T) {
	a := newMesh(t, "n")
	ta, err := a.Join("org1")
	if err != nil {
		t.Fatal(err)
	}
	b := newMesh(t, "n", a.Addrs()[0])
	tb, err := b.Join("org1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Each side receives the other's heads without anything published.
	for _, tp := range []*Topic{ta, tb} {
		got, err := tp.Next(ctx)
		if err != nil {
			t.Fatalf("%s: no heads exchanged: %v", tp.Org(), err)
		}
		heads, err := decodeHeads(got)
		if err != nil || len(heads) != 1 || !heads[0].Equals(testHead) {
			t.Fatalf("got heads %v, %v; want [%s]", heads, err, testHead)
		}
	}
	if _, err := a.Join("org1"); err == nil {
		t.Fatal("joining twice succeeded")
	}
	if err := ta.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ta.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := ta.Next(ctx); err == nil {
		t.Fatal("Next on a closed topic returned no error")
	}
}

func TestInboxCoalescesBySender(t *testing.T) {
	b := newInbox()
	var hs []cid.Cid
	for i := range 3 {
		h, _ := mh.Sum([]byte{byte(i)}, mh.SHA2_256, -1)
		hs = append(hs, cid.NewCidV1(cid.DagProtobuf, h))
	}
	a1, _ := encodeHeads(hs[:1])
	a2, _ := encodeHeads(hs[1:])
	for _, a := range [][]byte{a1, a2, a1} {
		if _, err := b.add(a, "peer-a"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.add(a1, "peer-b"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.add([]byte("not protobuf \xff\xff"), "peer-c"); err == nil {
		t.Fatal("a malformed announcement was accepted")
	}
	ctx := context.Background()
	got, err := b.next(ctx, ctx)
	if err != nil || got.from != "peer-a" {
		t.Fatalf("first: %v from %q", err, got.from)
	}
	heads, _ := decodeHeads(got.data)
	if len(heads) != 3 {
		t.Fatalf("peer-a's three announcements merged into %d heads, want the union of 3", len(heads))
	}
	if got, _ = b.next(ctx, ctx); got.from != "peer-b" {
		t.Fatalf("second from %q, want peer-b", got.from)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := b.next(ctx, cctx); err == nil {
		t.Fatal("next on an empty, closed inbox returned no error")
	}
}

func TestParsePeerAddr(t *testing.T) {
	for _, s := range []string{"", "/ip4/1.2.3.4/tcp/1", "nonsense", "/ip4/1.2.3.4/tcp/1/p2p/notapeer"} {
		if _, err := ParsePeerAddr(s); err == nil {
			t.Errorf("ParsePeerAddr(%q) accepted", s)
		}
	}
}

func TestLANDiscoveryConnectsPeers(t *testing.T) {
	if !hasMulticastInterface() {
		t.Skip("no network interface here is up with multicast: mDNS cannot run (the netns scenarios cover LAN discovery)")
	}
	network := fmt.Sprintf("mdns-test-%d", time.Now().UnixNano())
	var ms []*Mesh
	for range 3 {
		m := startTestMesh(t, Options{Network: network, MDNS: true}, Deps{})
		if _, err := m.Join("org1"); err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok := true
		for _, m := range ms {
			if len(m.PeersOf("org1")) != 2 {
				ok = false
			}
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("LAN discovery did not connect the three peers: %+v", ms[0].Peers())
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-t.Context().Done():
		}
	}
	for _, p := range ms[0].Peers() {
		if !p.LAN {
			t.Errorf("peer %s not marked as found on the LAN", p.ID)
		}
	}
}

func hasMulticastInterface() bool {
	ifs, err := net.Interfaces()
	if err != nil {
		return false
	}
	for _, i := range ifs {
		if i.Flags&net.FlagUp != 0 && i.Flags&net.FlagMulticast != 0 && i.Flags&net.FlagLoopback == 0 {
			return true
		}
	}
	return false
}
