package mesh

import (
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
)

// TestFailedExchangeIsRetried: when the first heads exchange in each
// direction fails (both sides reset the first sync stream they are
// offered, as a loaded peer's timeout or a reset would), each side still
// learns the other's organisations within a second or so, without the
// periodic exchange (an hour away here) or a reconnect. Before the retry,
// the two stayed connected knowing nothing of each other.
func TestFailedExchangeIsRetried(t *testing.T) {
	mk := func(peers ...string) *Mesh {
		return startTestMesh(t, Options{Network: "n", Peers: peers,
			ExchangeInterval: time.Hour, RedialMin: 50 * time.Millisecond, RedialMax: 200 * time.Millisecond}, Deps{})
	}
	var resets atomic.Int32
	failFirst := func(m *Mesh) {
		var first atomic.Bool
		m.Host().SetStreamHandler(syncProtocol, func(s network.Stream) {
			if first.CompareAndSwap(false, true) {
				resets.Add(1)
				_ = s.Reset()
				return
			}
			m.handleSync(s)
		})
	}
	a := mk()
	failFirst(a)
	if _, err := a.Join("org-a"); err != nil {
		t.Fatal(err)
	}
	b := mk(a.Addrs()[0])
	failFirst(b)
	if _, err := b.Join("org-b"); err != nil {
		t.Fatal(err)
	}
	knows := func(m *Mesh, org string) bool {
		return slices.ContainsFunc(m.Peers(), func(p PeerInfo) bool { return p.Connected && slices.Contains(p.Orgs, org) })
	}
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !(knows(a, "org-b") && knows(b, "org-a")) {
		select {
		case <-deadline:
			t.Fatalf("after a failed first exchange each way (%d resets), a knows org-b: %v, b knows org-a: %v",
				resets.Load(), knows(a, "org-b"), knows(b, "org-a"))
		case <-tick.C:
		}
	}
	if resets.Load() < 1 {
		t.Fatal("no exchange was reset: the test did not test a retry")
	}
}
