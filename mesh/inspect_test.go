package mesh

import (
	"testing"
	"time"

	"github.com/ipfs/go-cid"
)

// The peer book keeps each peer's last exchanged heads and its round trip
// time; a malformed announcement is counted as rejected, with its reason.
func TestPeerHeadsRTTAndRejectionReasons(t *testing.T) {
	a := newMesh(t, "n")
	ta, err := a.Join("org1")
	if err != nil {
		t.Fatal(err)
	}
	b := newMesh(t, "n", a.Addrs()[0])
	if _, err := b.Join("org1"); err != nil {
		t.Fatal(err)
	}
	want, _ := encodeHeads([]cid.Cid{testHead})
	for _, m := range []*Mesh{a, b} {
		other := a
		if m == a {
			other = b
		}
		poll(t, "heads of the other side recorded", func() bool {
			hs := m.HeadsOf("org1")
			return len(hs) == 1 && hs[0].Peer == other.ID() && string(hs[0].Heads) == string(want) && !hs[0].At.IsZero()
		})
	}
	if hs := a.HeadsOf("org2"); len(hs) != 0 {
		t.Fatalf("heads of an organisation nobody carries: %+v", hs)
	}
	// b initiated the exchange on connect (both do), so it measured a round trip.
	poll(t, "b knows its RTT to a", func() bool {
		for _, p := range b.Peers() {
			if p.ID == a.ID().String() && p.RTT > 0 && p.RTT < 10*time.Second {
				return true
			}
		}
		return false
	})

	ta.deliver([]byte{0xff, 0x01, 0x02}, b.ID(), &ta.count.received)
	st := ta.Stats()
	if st.Rejected != 1 || st.RejectedByReason[RejectMalformed] != 1 {
		t.Fatalf("a malformed announcement: %+v", st)
	}
}
