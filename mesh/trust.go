package mesh

import (
	"context"
	"errors"
	"fmt"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/examnode/examnode/policy"
)

// Membership gating.
//
// A mesh with Deps.Trust set is gated; without it, it is open (any peer
// of the network and protocol version is accepted: the demo, the tests and
// the benchmarks run open). Every trust decision is policy's; this file
// only applies them:
//
//   - Every hello carries the sender's encoded membership. The receiver
//     decodes it, runs policy.Check and policy.MayConnect, and requires it
//     to name the peer ID the connection authenticated (libp2p's secure
//     channel proves the peer holds that key, so a copied membership is
//     worthless to anyone else). A peer that fails is refused like a peer
//     of another version: the reason goes into the peer book (LastError),
//     into the reply (with the versions only), and the connection is
//     closed. A gated node initiates an exchange on every connection it
//     dialled, presenting its membership first; a peer that dialled it must
//     present its own within Options.HelloTimeout, so a stranger that never
//     says hello, or cannot, is disconnected too (gate.go).
//   - The verified membership is kept in the peer book. It decides which
//     organisations the peer is taken to carry (what it claims, narrowed by
//     policy.MayRead), so heads of an organisation are sent only to peers
//     that may read it, and heads a peer sends are accepted only for
//     organisations it may announce in (policy.MayAnnounce). Roles shown in
//     the peer book are the membership's, not the peer's claim.
//   - Every organisation's gossipsub topic has a validator: an announcement
//     whose author (msg.GetFrom(), signed by gossipsub) has a verified
//     membership that does not cover the organisation is rejected; one from
//     an author with no verified membership yet is ignored (not forwarded,
//     not penalised: its hello may simply not have completed). The tracer
//     counts both as rejected.
//   - Memberships lapse while connected: every ExchangeInterval each
//     connected peer's membership is checked again (MayConnect at the
//     current time), and every hello re-presents and re-checks it.
//   - Other protocols ask PeerMembership (the node's bulk pull server, its
//     bitswap filter).
//
// Revocations reach the mesh through AddRevocation (the node calls it for
// every revocation its replicas hold): a connected peer whose membership
// is revoked is refused at once, and at every later hello.
//
// What an unverified peer learns, and what strangers cost, is gate.go's
// and book.go's.
//
// Known limits: a relayed announcement whose author
// has never said hello to this node is ignored, the heads exchange carries
// its data instead; a host presents one membership (one role).

// ErrNotAMember is returned (wrapping the policy sentinel) when a peer is
// refused for its membership.
var ErrNotAMember = errors.New("mesh: peer refused by membership")

// Gated reports whether this mesh checks memberships.
func (m *Mesh) Gated() bool { return m.deps.Trust != nil }

// PeerMembership returns the membership peer p presented and this node
// verified, if any.
func (m *Mesh) PeerMembership(p peer.ID) (policy.Membership, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.book[p]; s != nil && s.member != nil {
		return *s.member, true
	}
	return policy.Membership{}, false
}

// setupTrust checks the gating dependencies at New: the trust's network is
// the mesh's, and this node's own membership verifies for its own peer ID.
func (m *Mesh) setupTrust() error {
	tr := m.deps.Trust
	if tr == nil {
		return nil
	}
	if tr.Network != m.opts.Network {
		return fmt.Errorf("mesh: trust is for network %q but the mesh is network %q", tr.Network, m.opts.Network)
	}
	if len(m.deps.Membership) == 0 {
		return fmt.Errorf("mesh: %w: this node has no membership; run `examnode grant --peer %s …` on the central host", policy.ErrNoMembership, m.host.ID())
	}
	own, err := m.verifyMembership(m.host.ID(), m.deps.Membership)
	if err != nil {
		return fmt.Errorf("mesh: this node's own membership: %w", err)
	}
	m.own = own
	return nil
}

// verifyMembership decodes and checks the membership bytes peer p
// presented.
func (m *Mesh) verifyMembership(p peer.ID, b []byte) (*policy.Membership, error) {
	now := m.now()
	if len(b) == 0 {
		return nil, policy.MayConnect(nil, now)
	}
	mb, err := policy.DecodeMembership(b)
	if err != nil {
		return nil, err
	}
	if err := policy.Check(mb, m.revocations(), *m.deps.Trust, now); err != nil {
		return nil, err
	}
	if mb.Peer != p.String() {
		return nil, fmt.Errorf("%w: peer %s presented the membership of peer %s; a membership is valid only for the peer it names",
			policy.ErrMembershipMismatch, p, mb.Peer)
	}
	if err := policy.MayConnect(&mb, now); err != nil {
		return nil, err
	}
	return &mb, nil
}

// refuse notes why p is refused and closes its connections shortly after,
// so that a refusal sent in a reply reaches it first.
func (m *Mesh) refuse(p peer.ID, err error) { m.refuseAfter(p, err, 200*time.Millisecond) }

// refuseAfter is refuse with the delay before the connections close (none
// when no reply is on its way).
func (m *Mesh) refuseAfter(p peer.ID, err error, delay time.Duration) {
	m.noteError(p, err.Error())
	m.log.Warn("refusing peer", "peer", p, "err", err)
	stranger := errors.Is(err, ErrNotAMember)
	m.mu.Lock()
	s := m.book[p]
	if s != nil {
		s.member = nil
		s.refused = true
		s.connectedAt = time.Time{}
		stranger = stranger && !s.configured
		m.forgetRememberedLocked(p, s)
	}
	m.signalLocked()
	m.mu.Unlock()
	if stranger {
		// Counted where it is refused, and denied reconnection for a
		// while (gate.go).
		m.CountRefused(NodeWide, RefuseStranger, 1)
		m.deny.add(p, m.now().Add(m.opts.DenyFor))
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-m.ctx.Done():
		}
		_ = m.host.Network().ClosePeer(p)
	}()
}

// recheckMembers refuses connected peers whose membership has lapsed
// since it was checked (run every ExchangeInterval).
func (m *Mesh) recheckMembers() {
	if !m.Gated() {
		return
	}
	now := m.now()
	type lapse struct {
		p   peer.ID
		err error
	}
	var lapsed []lapse
	revs := m.revocations()
	m.mu.Lock()
	for p, s := range m.book {
		if !s.connected || s.member == nil {
			continue
		}
		if err := policy.MayConnect(s.member, now); err != nil {
			lapsed = append(lapsed, lapse{p, fmt.Errorf("%w: %w", ErrNotAMember, err)})
		} else if err := policy.Check(*s.member, revs, *m.deps.Trust, now); err != nil {
			lapsed = append(lapsed, lapse{p, fmt.Errorf("%w: %w", ErrNotAMember, err)})
		}
	}
	m.mu.Unlock()
	for _, l := range lapsed {
		m.refuse(l.p, l.err)
	}
}

// mayRead and mayAnnounce apply policy to peer p's verified membership
// (everything is allowed on an open mesh).
func (m *Mesh) mayRead(member *policy.Membership, org string) bool {
	return !m.Gated() || (member != nil && policy.MayRead(*member, org) == nil)
}

func (m *Mesh) mayAnnounce(member *policy.Membership, org string) bool {
	return !m.Gated() || (member != nil && policy.MayAnnounce(*member, org) == nil)
}

// validator is the gossipsub validator of org's topic on a gated mesh.
func (m *Mesh) validator(org string) func(context.Context, peer.ID, *pubsub.Message) pubsub.ValidationResult {
	self := m.host.ID()
	return func(_ context.Context, _ peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
		from := msg.GetFrom()
		if from == self {
			return pubsub.ValidationAccept
		}
		member, ok := m.PeerMembership(from)
		if !ok {
			return pubsub.ValidationIgnore
		}
		if err := policy.MayAnnounce(member, org); err != nil {
			m.log.Debug("announcement rejected", "org", org, "peer", from, "err", err)
			return pubsub.ValidationReject
		}
		return pubsub.ValidationAccept
	}
}

// AddRevocation adds a verified revocation to those the mesh honours
// (a revocation not signed by the authority is ignored), and refuses at
// once every connected peer it revokes. Safe to call again with the same
// revocation.
func (m *Mesh) AddRevocation(r policy.Revocation) {
	if !m.Gated() {
		return
	}
	m.revMu.Lock()
	revs, err := m.revs.With(r, *m.deps.Trust)
	if err == nil {
		m.revs = revs
	}
	m.revMu.Unlock()
	if err != nil {
		m.log.Warn("ignoring a revocation that does not verify", "peer", r.Peer, "err", err)
		return
	}
	m.recheckMembers()
}

func (m *Mesh) revocations() policy.RevocationSet {
	m.revMu.Lock()
	defer m.revMu.Unlock()
	return m.revs
}
