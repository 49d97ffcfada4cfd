package mesh

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/examnode/examnode/policy"
	"github.com/examnode/examnode/schema"
)

const trustNet = "trust-net"

// testAuthority is one network authority and a clock nodes can share.
type testAuthority struct {
	auth  *policy.Authority
	trust policy.Trust
}

func newTestAuthority(t *testing.T) *testAuthority {
	t.Helper()
	a, err := policy.GenerateAuthority()
	if err != nil {
		t.Fatal(err)
	}
	return &testAuthority{auth: a, trust: policy.Trust{Network: trustNet, Authority: a.Public()}}
}

// member describes a gated mesh: its grant (nil: no membership) and its
// clock (nil: time.Now).
type member struct {
	role    schema.Role
	orgs    []string
	allOrgs bool
	from    time.Time // zero: an hour ago
	until   time.Time // zero: in a year
	now     func() time.Time
	open    bool // no Trust: an open (or stranger's) mesh
}

func (ta *testAuthority) grant(t *testing.T, id peer.ID, spec member) []byte {
	t.Helper()
	if spec.role == "" {
		return nil
	}
	from, until := spec.from, spec.until
	if from.IsZero() {
		from = time.Now().Add(-time.Hour)
	}
	if until.IsZero() {
		until = time.Now().AddDate(1, 0, 0)
	}
	m, err := ta.auth.Grant(policy.GrantRequest{Network: trustNet, Peer: id.String(), Role: spec.role,
		Orgs: spec.orgs, AllOrgs: spec.allOrgs, NotBefore: from, Expires: until}, from)
	if err != nil {
		t.Fatal(err)
	}
	return m.Encode()
}

// newGatedMesh starts a mesh of trustNet holding the membership spec
// describes.
func (ta *testAuthority) newGatedMesh(t *testing.T, spec member, peers ...string) *Mesh {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(k)
	deps := Deps{Key: k, Now: spec.now}
	if !spec.open {
		deps.Trust = &ta.trust
		deps.Membership = ta.grant(t, id, spec)
	}
	return startTestMesh(t, Options{Network: trustNet, ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, Peers: peers,
		RedialMax: 200 * time.Millisecond, RedialMin: 50 * time.Millisecond}, deps)
}

func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		}
	}
}

func connectOnce(t *testing.T, from, to *Mesh) {
	t.Helper()
	ai, err := ParsePeerAddr(to.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	// The dial may already be refused; what counts is the peer book.
	_ = from.Connect(t.Context(), ai)
}

func waitDisconnected(t *testing.T, m *Mesh, p peer.ID) {
	t.Helper()
	poll(t, "the peer is disconnected", func() bool {
		return m.Host().Network().Connectedness(p) != network.Connected
	})
}

func TestPeerWithoutMembershipIsRefused(t *testing.T) {
	ta := newTestAuthority(t)
	a := ta.newGatedMesh(t, member{role: schema.RoleVM, orgs: []string{"org1"}})
	if _, err := a.Join("org1"); err != nil {
		t.Fatal(err)
	}
	stranger := ta.newGatedMesh(t, member{open: true})
	if _, err := stranger.Join("org1"); err != nil {
		t.Fatal(err)
	}
	connectOnce(t, stranger, a)
	msg := waitPeerError(t, a, stranger.ID().String(), "no membership", "examnode grant")
	waitDisconnected(t, a, stranger.ID())
	if _, ok := a.PeerMembership(stranger.ID()); ok {
		t.Fatal("the stranger has a membership in the peer book")
	}
	if st := a.Stats("org1"); st.Exchanged != 0 {
		t.Fatalf("heads from the stranger were delivered: %+v", st)
	}
	t.Logf("refusal: %s", msg)
}

func TestExpiredMembershipIsRefused(t *testing.T) {
	ta := newTestAuthority(t)
	a := ta.newGatedMesh(t, member{role: schema.RoleCentral, allOrgs: true})
	// b's own clock is still inside its membership's window; a's is not.
	past := time.Now().Add(-2 * time.Hour)
	b := ta.newGatedMesh(t, member{role: schema.RoleVM, orgs: []string{"org1"},
		from: past.Add(-time.Hour), until: past.Add(time.Hour), now: func() time.Time { return past }})
	connectOnce(t, b, a)
	msg := waitPeerError(t, a, b.ID().String(), "expired", "renew it")
	waitDisconnected(t, a, b.ID())
	t.Logf("refusal: %s", msg)
}

func TestMembershipLapsingWhileConnectedIsRefused(t *testing.T) {
	ta := newTestAuthority(t)
	var offset atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	a := ta.newGatedMesh(t, member{role: schema.RoleCentral, allOrgs: true, now: clock})
	b := ta.newGatedMesh(t, member{role: schema.RoleVM, orgs: []string{"org1"}, until: time.Now().Add(time.Hour)})
	connectOnce(t, b, a)
	poll(t, "a verifies b's membership", func() bool { _, ok := a.PeerMembership(b.ID()); return ok })

	offset.Store(int64(2 * time.Hour))
	a.recheckMembers() // what the periodic exchange runs
	msg := waitPeerError(t, a, b.ID().String(), "expired")
	waitDisconnected(t, a, b.ID())
	t.Logf("refusal: %s", msg)
}

func TestValidMemberSyncs(t *testing.T) {
	ta := newTestAuthority(t)
	a := ta.newGatedMesh(t, member{role: schema.RoleCentral, allOrgs: true})
	ta1, err := a.Join("org1")
	if err != nil {
		t.Fatal(err)
	}
	b := ta.newGatedMesh(t, member{role: schema.RoleVM, orgs: []string{"org1"}}, a.Addrs()[0])
	tb1, err := b.Join("org1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for _, tp := range []*Topic{ta1, tb1} {
		got, err := tp.Next(ctx)
		if err != nil {
			t.Fatalf("%s: no heads exchanged: %v", tp.Org(), err)
		}
		if heads, _ := decodeHeads(got); len(heads) != 1 || !heads[0].Equals(testHead) {
			t.Fatalf("got heads %v, want [%s]", heads, testHead)
		}
	}
	m, ok := a.PeerMembership(b.ID())
	if !ok || m.Role != schema.RoleVM || m.Peer != b.ID().String() {
		t.Fatalf("a's book has b's membership %+v, %v", m, ok)
	}
	// A VM joins only its own organisation.
	if _, err := b.Join("org2"); !errors.Is(err, policy.ErrNotMember) {
		t.Fatalf("a VM of org1 joined org2: %v", err)
	}
	// Gossip from a member is accepted.
	data, _ := encodeHeads([]cid.Cid{testHead})
	poll(t, "a receives b's announcement by gossip", func() bool {
		_ = tb1.Broadcast(ctx, data)
		return a.Stats("org1").Received > 0
	})
	if st := a.Stats("org1"); st.Rejected != 0 {
		t.Fatalf("a member's announcements were rejected: %+v", st)
	}
}

// A peer with a valid membership of organisation orgB, modified to claim
// orgA: the exchange gives it no heads of orgA, and its announcements and
// heads for orgA are rejected.
func TestMemberOfAnotherOrganisationGetsNothingOfIt(t *testing.T) {
	const orgA, orgB = "org-a", "org-b"
	ta := newTestAuthority(t)
	a := ta.newGatedMesh(t, member{role: schema.RoleCentral, orgs: []string{orgA, orgB}})
	for _, org := range []string{orgA, orgB} {
		if _, err := a.Join(org); err != nil {
			t.Fatal(err)
		}
	}
	b := ta.newGatedMesh(t, member{role: schema.RoleVM, orgs: []string{orgB}})
	if _, err := b.Join(orgA); !errors.Is(err, policy.ErrNotMember) {
		t.Fatalf("a VM of %s joined %s: %v", orgB, orgA, err)
	}
	if _, err := b.Join(orgB); err != nil {
		t.Fatal(err)
	}
	connectOnce(t, b, a)
	poll(t, "a verifies b's membership", func() bool { _, ok := a.PeerMembership(b.ID()); return ok })
	if got := a.PeersOf(orgA); len(got) != 0 {
		t.Fatalf("a counts b as a peer of %s: %v", orgA, got)
	}

	// The sync protocol, spoken by a modified b that claims orgA.
	heads, _ := encodeHeads([]cid.Cid{testHead})
	req := b.myHello()
	req.Orgs = []string{orgA, orgB}
	req.Heads = map[string][]byte{orgA: heads}
	s, err := b.Host().NewStream(t.Context(), a.ID(), syncProtocol)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeMsg(s, req); err != nil {
		t.Fatal(err)
	}
	var reply hello
	if err := readMsg(bufio.NewReader(s), &reply); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	if reply.Error != "" {
		t.Fatalf("a refused b: %s", reply.Error)
	}
	if _, ok := reply.Heads[orgA]; ok {
		t.Fatalf("a sent heads of %s to a VM of %s", orgA, orgB)
	}
	if _, ok := reply.Heads[orgB]; !ok {
		t.Fatalf("a sent no heads of %s to a VM of %s: %v", orgB, orgB, reply.Heads)
	}
	if st := a.Stats(orgA); st.Exchanged != 0 || st.Rejected == 0 {
		t.Fatalf("b's heads of %s were not rejected: %+v", orgA, st)
	}

	// Gossip: b publishes on orgA's topic directly.
	rejectedBefore := a.Stats(orgA).Rejected
	topic, err := b.ps.Join(TopicName(trustNet, orgA))
	if err != nil {
		t.Fatal(err)
	}
	defer topic.Close()
	poll(t, "a rejects b's announcement on "+orgA, func() bool {
		_ = topic.Publish(t.Context(), heads)
		return a.Stats(orgA).Rejected > rejectedBefore
	})
	if st := a.Stats(orgA); st.Received != 0 {
		t.Fatalf("a delivered b's announcement on %s: %+v", orgA, st)
	}
	for _, p := range a.Peers() {
		if p.ID == b.ID().String() && (strings.Join(p.Orgs, ",") != orgB || strings.Join(p.Roles, ",") != "vm") {
			t.Fatalf("a's book for b: orgs %v roles %v, want [%s] [vm]", p.Orgs, p.Roles, orgB)
		}
	}
}

func TestOwnMembershipMustVerify(t *testing.T) {
	ta := newTestAuthority(t)
	k, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	other, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	otherID, _ := peer.IDFromPrivateKey(other)
	opts := Options{Network: trustNet, ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}}
	for name, deps := range map[string]Deps{
		"none":           {Key: k, Trust: &ta.trust},
		"another peer's": {Key: k, Trust: &ta.trust, Membership: ta.grant(t, otherID, member{role: schema.RoleVM, orgs: []string{"o"}})},
	} {
		if m, err := New(opts, deps); err == nil {
			_ = m.Close()
			t.Errorf("%s membership: New succeeded", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

func TestRevokedPeerIsRefused(t *testing.T) {
	ta := newTestAuthority(t)
	a := ta.newGatedMesh(t, member{role: schema.RoleCentral, allOrgs: true})
	b := ta.newGatedMesh(t, member{role: schema.RoleVM, orgs: []string{"org1"}})
	connectOnce(t, b, a)
	poll(t, "a verifies b's membership", func() bool { _, ok := a.PeerMembership(b.ID()); return ok })

	// A revocation not signed by this authority changes nothing.
	other := newTestAuthority(t)
	fake, err := other.auth.Revoke(policy.RevokeRequest{Network: trustNet, Peer: b.ID().String()}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	a.AddRevocation(fake)
	if _, ok := a.PeerMembership(b.ID()); !ok {
		t.Fatal("a revocation by another authority was honoured")
	}

	r, err := ta.auth.Revoke(policy.RevokeRequest{Network: trustNet, Peer: b.ID().String(), Reason: "stolen"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	a.AddRevocation(r)
	a.AddRevocation(r) // again: harmless
	msg := waitPeerError(t, a, b.ID().String(), "revoked", "stolen")
	waitDisconnected(t, a, b.ID())
	// b comes back: its hello is refused.
	connectOnce(t, b, a)
	waitDisconnected(t, a, b.ID())
	if _, ok := a.PeerMembership(b.ID()); ok {
		t.Fatal("the revoked peer has a verified membership again")
	}
	t.Logf("refusal: %s", msg)
}
