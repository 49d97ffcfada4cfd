package node

import (
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// TestPullBudgetsRefillAndBound: a peer's and an organisation's byte
// budgets refuse what goes over them, refill with time, and the default
// budgets let a fresh VM's catch-up (300 MiB from one peer) through.
func TestPullBudgetsRefillAndBound(t *testing.T) {
	now := time.Unix(1000, 0)
	n := &Node{now: func() time.Time { return now }}
	n.cfg.Tuning = Tuning{PullPeerBudget: 4 << 20, PullPeerRate: 1 << 20, PullOrgBudget: 6 << 20, PullOrgRate: 1 << 20}
	a, b := peer.ID("a"), peer.ID("b")
	for range 4 {
		if err := n.takeBudget(a, "C1", 1<<20); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.takeBudget(a, "C1", 1); !errors.Is(err, errPeerBudget) {
		t.Fatalf("over the peer budget: %v", err)
	}
	if err := n.pullMayStart(a, "C1"); !errors.Is(err, errPeerBudget) {
		t.Fatalf("a pull from a peer with an empty budget may start: %v", err)
	}
	// Another peer of the same organisation: its own budget, the
	// organisation's remaining 2 MiB.
	if err := n.takeBudget(b, "C1", 2<<20); err != nil {
		t.Fatal(err)
	}
	if err := n.takeBudget(b, "C1", 1<<20); !errors.Is(err, errOrgBudget) {
		t.Fatalf("over the organisation's budget: %v", err)
	}
	if err := n.takeBudget(b, "C2", 1<<20); err != nil {
		t.Fatalf("another organisation's budget: %v", err)
	}
	now = now.Add(2 * time.Second)
	if err := n.takeBudget(a, "C1", 2<<20); err != nil {
		t.Fatalf("after 2 s at 1 MiB/s: %v", err)
	}

	d := &Node{now: func() time.Time { return now }}
	for i := 0; i < 300; i++ {
		if err := d.takeBudget(a, "C1", 1<<20); err != nil {
			t.Fatalf("default budgets: a catch-up of 300 MiB stopped at %d MiB: %v", i, err)
		}
	}
	u := &Node{now: func() time.Time { return now }}
	u.cfg.Tuning = Tuning{PullPeerBudget: -1, PullOrgBudget: -1}
	if err := u.takeBudget(a, "C1", 1<<40); err != nil {
		t.Fatalf("no limit: %v", err)
	}
}

// TestPullStrikesKeepAPeerOut: pullStrikes offences within the window keep
// a peer out for pullBan; strikes older than the window are forgotten; and
// the list stays bounded.
func TestPullStrikesKeepAPeerOut(t *testing.T) {
	now := time.Unix(1000, 0)
	n := &Node{now: func() time.Time { return now }}
	p := peer.ID("p")
	if n.strike(p) || n.strike(p) {
		t.Fatal("kept out before the bound")
	}
	now = now.Add(pullStrikeWindow)
	if n.strike(p) {
		t.Fatal("strikes older than the window still count")
	}
	n.strike(p)
	if !n.strike(p) || !n.keptOut(p) {
		t.Fatal("not kept out after the bound")
	}
	now = now.Add(pullBan)
	if n.keptOut(p) {
		t.Fatal("still kept out after the ban")
	}
	if !n.strikes(peer.ID("flood"), pullStrikes) || !n.keptOut(peer.ID("flood")) {
		t.Fatal("a flood does not keep the peer out at once")
	}
	for i := range 2 * pullGuardPeers {
		n.strike(peer.ID(rune(i)))
	}
	if len(n.pullGuard.pen) > pullGuardPeers {
		t.Fatalf("the penalty list holds %d peers, more than %d", len(n.pullGuard.pen), pullGuardPeers)
	}
}
