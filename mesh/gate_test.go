package mesh

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"

	"github.com/examnode/examnode/schema"
)

// rawHost is a bare libp2p host on 127.0.0.1 with a fresh identity.
func rawHost(t testing.TB) host.Host {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h, err := libp2p.New(libp2p.Identity(k), libp2p.NoListenAddrs,
		libp2p.Transport(tcp.NewTCPTransport), libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// strangerHello connects h to m and sends a hello without a membership;
// it returns the reply's raw error (the refusal).
func strangerHello(ctx context.Context, h host.Host, m *Mesh) (hello, error) {
	ai, err := ParsePeerAddr(m.Addrs()[0])
	if err != nil {
		return hello{}, err
	}
	if err := h.Connect(ctx, ai); err != nil {
		return hello{}, err
	}
	s, err := h.NewStream(ctx, m.ID(), syncProtocol)
	if err != nil {
		return hello{}, err
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(10 * time.Second))
	if err := writeMsg(s, hello{Version: ProtocolVersion, Schema: schema.CurrentVersion, Network: trustNet}); err != nil {
		return hello{}, err
	}
	var reply hello
	err = readMsg(bufio.NewReader(s), &reply)
	return reply, err
}

func heapKB() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc >> 10
}

func rssKB() int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(l, "VmRSS:"), "kB")))
			return n
		}
	}
	return 0
}

// 3,000 throwaway identities refused at the hello leave a bounded peer
// book (and peerstore), and a small Peers listing.
func TestThrowawayIdentitiesLeaveABoundedPeerBook(t *testing.T) {
	n := 3000 // the figure: 2 minutes under -race on 2 cores
	if testing.Short() {
		n = 300
	}
	ta := newTestAuthority(t)
	a := ta.newGatedMesh(t, member{role: schema.RoleCentral, allOrgs: true})
	if _, err := a.Join("org1"); err != nil {
		t.Fatal(err)
	}
	heapBefore, rssBefore := heapKB(), rssKB()
	ctx := t.Context()
	var wg sync.WaitGroup
	work := make(chan int)
	var mu sync.Mutex
	var refused, failed int
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				h := rawHost(t)
				reply, err := strangerHello(ctx, h, a)
				_ = h.Close()
				mu.Lock()
				if err == nil && strings.Contains(reply.Error, "no membership") {
					refused++
				} else {
					failed++
				}
				mu.Unlock()
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	poll(t, "every stranger is disconnected", func() bool { return len(a.Host().Network().Peers()) == 0 })
	poll(t, "the peer book forgets the refused strangers", func() bool { return a.PeerBookSize() == 0 })
	heapAfter, rssAfter := heapKB(), rssKB()
	peers := a.Peers()
	js, _ := json.Marshal(peers)
	if len(peers) > recentRefusals || len(js) > 32<<10 {
		t.Fatalf("Peers lists %d entries, %d bytes of JSON", len(peers), len(js))
	}
	if got := len(a.Host().Peerstore().Peers()); got > 16 {
		t.Fatalf("the peerstore keeps %d peers", got)
	}
	if refused < n*9/10 {
		t.Fatalf("%d of %d strangers were refused with the reason (others: %d)", refused, n, failed)
	}
	if got := a.Refused(NodeWide)[RefuseStranger]; got < uint64(refused) {
		t.Fatalf("%d stranger refusals counted, %d refused", got, refused)
	}
	t.Logf("%d throwaway identities (%d refused with the reason, %d failed otherwise): peer book %d entries, Peers %d entries (%d bytes of JSON), peerstore %d peers, deny set %d; live heap after GC %d kB before, %d kB after; RSS %d kB before, %d kB after (in-process: the strangers' hosts and the race detector ran here too)",
		n, refused, failed, a.PeerBookSize(), len(peers), len(js), len(a.Host().Peerstore().Peers()), a.deny.len(), heapBefore, heapAfter, rssBefore, rssAfter)
}

// A peer opening many streams is capped by the resource manager, the
// refusals are counted, and the node still serves a legitimate peer.
func TestResourceManagerCapsAPeersStreams(t *testing.T) {
	const perPeer, opened = 16, 200
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Options{Network: "n", ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"},
		Limits: Limits{StreamsPerPeer: perPeer}},
		Deps{Key: k, Heads: func(context.Context, string) ([]byte, error) { return encodeHeads(nil) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	if _, err := a.Join("org1"); err != nil {
		t.Fatal(err)
	}
	attacker := rawHost(t)
	t.Cleanup(func() { _ = attacker.Close() })
	ai, _ := ParsePeerAddr(a.Addrs()[0])
	if err := attacker.Connect(t.Context(), ai); err != nil {
		t.Fatal(err)
	}
	// Streams of the sync protocol that send a partial hello and wait.
	var streams []network.Stream
	for range opened {
		s, err := attacker.NewStream(t.Context(), a.ID(), syncProtocol)
		if err != nil {
			continue
		}
		_, _ = s.Write([]byte{0x7f})
		streams = append(streams, s)
	}
	poll(t, "the node refuses streams beyond the limit", func() bool {
		return a.Refused(NodeWide)[RefuseResourceLimit] > 0
	})
	inbound := 0
	for _, c := range a.Host().Network().ConnsToPeer(attacker.ID()) {
		for _, s := range c.GetStreams() {
			if s.Stat().Direction == network.DirInbound {
				inbound++
			}
		}
	}
	if inbound > perPeer {
		t.Fatalf("the node holds %d inbound streams of the attacker, limit %d", inbound, perPeer)
	}

	// A legitimate peer still exchanges heads.
	b := newMesh(t, "n", a.Addrs()[0])
	if _, err := b.Join("org1"); err != nil {
		t.Fatal(err)
	}
	poll(t, "a legitimate peer exchanges heads", func() bool { return b.ExchangesCompleted() > 0 && len(a.HeadsOf("org1")) > 0 })
	t.Logf("%d streams opened, node holds %d inbound, %d refusals counted (%q)", len(streams), inbound,
		a.Refused(NodeWide)[RefuseResourceLimit], RefuseResourceLimit)
	for _, s := range streams {
		_ = s.Reset()
	}
}

func TestDenySetIsBoundedAndExpires(t *testing.T) {
	d := newDenySet(3)
	now := time.Now()
	var ids []string
	for range 5 {
		h := rawHost(t)
		ids = append(ids, h.ID().String())
		d.add(h.ID(), now.Add(time.Minute))
		_ = h.Close()
	}
	if d.len() != 3 {
		t.Fatalf("deny set holds %d, bound 3", d.len())
	}
	for i, want := range []bool{false, false, true, true, true} {
		p, _ := peer.Decode(ids[i])
		if got := d.denied(p, now); got != want {
			t.Fatalf("entry %d denied %v, want %v (the oldest go first)", i, got, want)
		}
	}
	p, _ := peer.Decode(ids[4])
	if d.denied(p, now.Add(2*time.Minute)) || d.len() != 2 {
		t.Fatalf("an expired entry is still denied (%d entries)", d.len())
	}
}
