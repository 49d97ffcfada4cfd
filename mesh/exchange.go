package mesh

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/examnode/examnode/policy"
)

// syncProtocol is the direct heads exchange. It runs when two peers
// connect, after every local commit (towards each peer of the
// organisation), and every ExchangeInterval. The initiator says who it is
// (protocol version, network, roles, organisations) and sends its heads
// for the organisations it knows the peer carries; the responder delivers
// those and answers with its own heads for the organisations both carry.
// A missed gossipsub announcement, a gossipsub mesh that has not formed
// yet, or a new peer therefore never waits for a rebroadcast timer.
// Exchanges are coalesced per peer: at most one waits while one runs.
const syncProtocol = protocol.ID("/examnode/sync/1.0.0")

const (
	exchangeTimeout = 10 * time.Second
	maxHelloSize    = 8 << 20
	exchangeWorkers = 4
)

// hello is both the request and the reply of the sync protocol.
type hello struct {
	Version int `json:"version"` // mesh protocol version (ProtocolVersion)
	// Schema is the record schema version the sender writes; Schemas are
	// those it reads. A peer whose Schema this node cannot read is refused
	// (policy.CheckPeerVersion).
	Schema  int               `json:"schema"`
	Schemas []int             `json:"schemas,omitempty"`
	Network string            `json:"network"`
	Roles   []string          `json:"roles,omitempty"`
	Orgs    []string          `json:"orgs,omitempty"`
	Heads   map[string][]byte `json:"heads,omitempty"`
	Error   string            `json:"error,omitempty"`
	// Membership is the sender's encoded membership (policy), on a gated
	// mesh; the receiver checks it on every hello.
	Membership []byte `json:"membership,omitempty"`
	// Present marks a gated initiator's first hello to a peer it has not
	// verified: it carries the versions, the network and the membership,
	// nothing else, and the reply comes only once the responder verified
	// the membership.
	Present bool `json:"present,omitempty"`
	// HeadsAt orders the sender's hellos (nanoseconds, strictly increasing
	// per sender): exchanges run both ways at once, and a reply built
	// earlier must not overwrite heads reported later.
	HeadsAt int64 `json:"heads_at,omitempty"`
}

// peerState is the peer book's entry for one peer.
type peerState struct {
	configured   bool
	lan          bool // found by mDNS
	connected    bool
	inbound      bool
	addr         string
	roles, orgs  []string
	version      int
	schema       int
	lastSeen     time.Time
	lastExchange time.Time
	lastError    string
	exchanges    uint64
	member       *policy.Membership   // verified; nil on an open mesh or before the hello
	heads        map[string]PeerHeads // by organisation: the heads it last sent in an exchange
	lastPing     time.Time
	headsAt      int64 // HeadsAt of the last hello whose heads were kept

	refused     bool      // refused since it connected (gate.go)
	declined    bool      // it refused this node: nothing in common
	connectedAt time.Time // while it is connected and unverified: since when
	presenting  int       // hellos being read from it while it is unverified

	dialing  bool
	nextDial time.Time
	backoff  time.Duration

	// A failed exchange with a connected peer is tried again after
	// retryWait (doubling, at most ExchangeInterval), so that a hello lost
	// under load (a stream reset, a timeout) does not leave the peer's
	// organisations unknown until the periodic exchange or a reconnect.
	retryAt   time.Time
	retryWait time.Duration

	// A peer that completed a hello sharing an organisation is remembered
	// (remembered.go): while it is disconnected it is redialled, on the
	// addresses mDNS gave for a peer found on the LAN (lanAddrs), else on
	// those its identify reported (addrs), and it is persisted by the node
	// so that a restarted node dials it back. A LAN peer's backoff is at
	// most lanRedialMax, however long the two were apart: mDNS reports a
	// peer once, and its peerstore addresses expire; without this, VMs
	// whose LAN was cut never found each other again while central was
	// away.
	remembered  bool
	lanAddrs    []ma.Multiaddr
	addrs       []ma.Multiaddr // listen addresses from identify
	persistedAt time.Time      // when the node was last handed it (zero: due)
}

func (s *peerState) carries(org string) bool { return slices.Contains(s.orgs, org) }

// PeerInfo describes a peer the node knows of.
type PeerInfo struct {
	ID           string        `json:"id"`
	Roles        []string      `json:"roles"`
	Orgs         []string      `json:"orgs"`
	Connected    bool          `json:"connected"`
	Configured   bool          `json:"configured"`
	LAN          bool          `json:"lan"`
	Remembered   bool          `json:"remembered,omitempty"` // redialled while away, dialled back after a restart
	Direction    string        `json:"direction,omitempty"`
	Addr         string        `json:"addr,omitempty"`
	Version      int           `json:"version,omitempty"`
	Schema       int           `json:"schema,omitempty"`
	LastSeen     time.Time     `json:"last_seen,omitzero"`
	LastExchange time.Time     `json:"last_exchange,omitzero"`
	Exchanges    uint64        `json:"exchanges"`
	LastError    string        `json:"last_error,omitempty"`
	RTT          time.Duration `json:"rtt_ns,omitempty"`
}

// PeerHeads is what a peer last said its heads of one organisation were,
// in a heads exchange (either side's). Heads is in go-ds-crdt's broadcast
// format; an empty Heads means an empty replica.
type PeerHeads struct {
	Peer  peer.ID
	Heads []byte
	At    time.Time
}

// HeadsOf returns, for every peer that sent heads of org in an exchange,
// the last it sent, connected or not. Gossipsub announcements do not
// count: they carry one new head, not a peer's whole set.
func (m *Mesh) HeadsOf(org string) []PeerHeads {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []PeerHeads
	for _, s := range m.book {
		if h, ok := s.heads[org]; ok {
			out = append(out, h)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Peer < out[j].Peer })
	return out
}

// Peers returns the peer book, sorted by peer ID.
func (m *Mesh) Peers() []PeerInfo {
	m.mu.Lock()
	out := make([]PeerInfo, 0, len(m.book))
	ids := make(map[string]peer.ID, len(m.book))
	for id, s := range m.book {
		sid := id.String()
		ids[sid] = id
		pi := PeerInfo{
			ID: sid, Roles: slices.Clone(s.roles), Orgs: slices.Clone(s.orgs),
			Connected: s.connected, Configured: s.configured, LAN: s.lan, Addr: s.addr,
			Remembered: s.remembered && len(s.dialAddrsLocked()) > 0,
			Version:    s.version, Schema: s.schema, LastSeen: s.lastSeen, LastExchange: s.lastExchange,
			Exchanges: s.exchanges, LastError: s.lastError,
		}
		if s.connected {
			pi.Direction = "outbound"
			if s.inbound {
				pi.Direction = "inbound"
			}
		}
		out = append(out, pi)
	}
	out = append(out, m.recentLocked()...)
	m.mu.Unlock()
	for i := range out {
		out[i].RTT = m.host.Peerstore().LatencyEWMA(ids[out[i].ID])
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// PeersOf returns the connected peers that carry org.
func (m *Mesh) PeersOf(org string) []peer.ID {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []peer.ID
	for id, s := range m.book {
		if s.connected && s.carries(org) {
			out = append(out, id)
		}
	}
	return out
}

// Stats returns the announcement counters of an organisation's topic.
func (m *Mesh) Stats(org string) TopicStats {
	m.cmu.RLock()
	c := m.counts[TopicName(m.opts.Network, org)]
	m.cmu.RUnlock()
	if c == nil {
		return TopicStats{}
	}
	return c.snapshot()
}

// ExchangesCompleted counts heads exchanges this node initiated and
// completed since it started.
func (m *Mesh) ExchangesCompleted() uint64 { return m.exchangesOK.Load() }

// ExchangeWith queues a heads exchange with p, if it is connected.
func (m *Mesh) ExchangeWith(p peer.ID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.book[p]; s != nil && s.connected {
		m.enqueueLocked(p)
	}
}

// ExchangeNow queues a heads exchange with every connected peer.
func (m *Mesh) ExchangeNow() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for p, s := range m.book {
		if s.connected {
			m.enqueueLocked(p)
		}
	}
}

func (m *Mesh) onConnected(c network.Conn) {
	p := c.RemotePeer()
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.book[p]
	if s == nil {
		s = &peerState{}
		m.book[p] = s
	}
	if !s.connected && s.member == nil {
		s.connectedAt = m.now()
		s.refused, s.declined = false, false
	}
	s.connected = true
	s.inbound = c.Stat().Direction == network.DirInbound
	s.addr = c.RemoteMultiaddr().String()
	s.lastSeen = m.now()
	s.backoff = 0
	if m.Gated() && s.inbound && !s.configured && s.member == nil {
		// It presents first (see exchange): this node tells an
		// unverified peer that dialled it nothing, not even its own
		// membership.
		return
	}
	if m.Gated() && s.member == nil && m.ctx.Err() == nil {
		// Present at once, not behind exchanges that may hang on dead
		// links: the peer gives this node HelloTimeout to do it.
		m.wg.Add(1)
		go func() { defer m.wg.Done(); m.runExchange(p) }()
		return
	}
	m.enqueueLocked(p)
}

func (m *Mesh) onDisconnected(c network.Conn) {
	p := c.RemotePeer()
	if m.host.Network().Connectedness(p) == network.Connected {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.book[p]; s != nil {
		s.connected = false
		s.connectedAt = time.Time{}
		s.lastSeen = m.now()
		s.nextDial = m.now().Add(m.opts.RedialMin)
		m.forgetLocked(p, s)
	}
	m.signalLocked()
}

func (m *Mesh) enqueue(p peer.ID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.enqueueLocked(p)
}

// enqueueLocked queues an exchange with p. At most one exchange with a
// peer runs at a time (one that waits behind it is remembered in again):
// exchanges with a peer whose link died hang until exchangeTimeout, and
// must not take every worker from the peers still reachable (a centre's
// VMs while its WAN is cut).
func (m *Mesh) enqueueLocked(p peer.ID) {
	if m.queued[p] {
		return
	}
	if m.running[p] {
		m.again[p] = true
		return
	}
	select {
	case m.exchangeQ <- p:
		m.queued[p] = true
	default: // the periodic exchange will catch up
	}
}

func (m *Mesh) exchangeLoop() {
	done := make(chan struct{}, exchangeWorkers)
	for range exchangeWorkers {
		go func() {
			defer func() { done <- struct{}{} }()
			for {
				select {
				case <-m.ctx.Done():
					return
				case p := <-m.exchangeQ:
					m.mu.Lock()
					delete(m.queued, p)
					m.mu.Unlock()
					m.runExchange(p)
				}
			}
		}()
	}
	for range exchangeWorkers {
		<-done
	}
}

// runExchange runs an exchange with p unless one is running (then another
// follows it).
func (m *Mesh) runExchange(p peer.ID) {
	m.mu.Lock()
	if m.running[p] {
		m.again[p] = true
		m.mu.Unlock()
		return
	}
	m.running[p] = true
	m.mu.Unlock()
	err := m.exchange(p)
	if err != nil && m.ctx.Err() == nil {
		m.log.Debug("heads exchange failed", "peer", p, "err", err)
		m.refuseSilent(p, err)
	}
	m.mu.Lock()
	m.scheduleRetryLocked(p, err)
	delete(m.running, p)
	if m.again[p] {
		delete(m.again, p)
		m.enqueueLocked(p)
	}
	m.mu.Unlock()
}

func (m *Mesh) periodicExchange() {
	if m.opts.ExchangeInterval <= 0 {
		return
	}
	t := time.NewTicker(m.opts.ExchangeInterval)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
			m.recheckMembers()
			m.exchangePeriodic()
		}
	}
}

// exchangePeriodic queues an exchange with every connected peer whose ID
// sorts after this node's: an exchange carries heads both ways, so one
// side initiating the periodic one is enough.
func (m *Mesh) exchangePeriodic() {
	self := m.host.ID()
	m.mu.Lock()
	defer m.mu.Unlock()
	for p, s := range m.book {
		if s.connected && self < p {
			m.enqueueLocked(p)
		}
	}
}

func (m *Mesh) myHello() hello {
	m.mu.Lock()
	defer m.mu.Unlock()
	orgs := make([]string, 0, len(m.topics))
	for org := range m.topics {
		orgs = append(orgs, org)
	}
	sort.Strings(orgs)
	return hello{Version: m.version, Schema: m.opts.SchemaVersion, Schemas: m.opts.SchemaVersions,
		Network: m.opts.Network, Roles: m.opts.Roles, Orgs: orgs, Membership: m.deps.Membership}
}

// exchange asks p who it is and for its heads of the organisations both
// carry, and hands those heads to the topics. On a gated mesh, to a peer
// it has not verified yet, it first presents its membership alone (one
// side has to go first: the initiator, which chose to dial), and sends
// its organisations and heads in a second hello once the reply verified.
// To an unverified peer that dialled this node it sends nothing: that
// peer presents first.
func (m *Mesh) exchange(p peer.ID) error {
	if !m.Gated() {
		return m.exchangeOnce(p, false)
	}
	m.mu.Lock()
	s := m.book[p]
	verified := s != nil && s.member != nil
	waitForIt := s != nil && !verified && s.inbound && !s.configured
	m.mu.Unlock()
	if waitForIt {
		return nil
	}
	if !verified {
		if err := m.exchangeOnce(p, true); err != nil {
			return err
		}
	}
	return m.exchangeOnce(p, false)
}

func (m *Mesh) exchangeOnce(p peer.ID, present bool) error {
	ctx, cancel := context.WithTimeout(m.ctx, exchangeTimeout)
	defer cancel()
	s, err := m.host.NewStream(network.WithAllowLimitedConn(ctx, "sync"), p, syncProtocol)
	if err != nil {
		return err
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(exchangeTimeout))
	req := m.presentation()
	if !present {
		req = m.helloWithHeads(p, nil)
	}
	if err := writeMsg(s, req); err != nil {
		s.Reset()
		return err
	}
	var reply hello
	if err := readMsg(bufio.NewReader(s), &reply); err != nil {
		s.Reset()
		return err
	}
	if reply.Error != "" && m.Gated() {
		// A gated node's refusal carries its versions and the reason only.
		m.mu.Lock()
		if st := m.book[p]; st != nil {
			st.declined = true
			m.forgetRememberedLocked(p, st)
		}
		m.mu.Unlock()
		m.noteError(p, reply.Error)
		return fmt.Errorf("%w: peer %s refused: %s", errPeerRefused, p, reply.Error)
	}
	member, err := m.checkHello(p, reply)
	if err != nil {
		return err
	}
	if reply.Error != "" {
		m.noteError(p, reply.Error)
		return fmt.Errorf("%w: peer %s refused: %s", errPeerRefused, p, reply.Error)
	}
	if present {
		reply.Present = true // its organisations follow in the full exchange
	}
	m.notePeer(p, reply, member, !present)
	m.deliverHeads(p, member, reply.Heads, reply.HeadsAt)
	if present {
		return nil
	}
	m.exchangesOK.Add(1)
	m.pingMaybe(ctx, p)
	return nil
}

// pingInterval is how often, at most, the exchange worker measures a
// peer's round trip time.
const pingInterval = 10 * time.Second

// pingMaybe measures p's round trip with libp2p's ping protocol, which
// records it in the peerstore (PeerInfo.RTT), if the last measure is
// older than pingInterval. It runs in the exchange worker, after an
// exchange, so a peer is pinged only while heads are exchanged with it.
func (m *Mesh) pingMaybe(ctx context.Context, p peer.ID) {
	m.mu.Lock()
	s := m.book[p]
	due := s != nil && m.now().Sub(s.lastPing) >= pingInterval
	if due {
		s.lastPing = m.now()
	}
	m.mu.Unlock()
	if !due {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	select {
	case res := <-ping.Ping(ctx, m.host, p):
		if res.Error != nil {
			m.log.Debug("ping failed", "peer", p, "err", res.Error)
		}
	case <-ctx.Done():
	}
}

// handleSync answers a peer's hello with this node's heads for the
// organisations both carry.
func (m *Mesh) handleSync(s network.Stream) {
	defer s.Close()
	p := s.Conn().RemotePeer()
	deadline := exchangeTimeout
	unverified := m.startHello(p)
	if unverified {
		// A peer presenting itself has a little longer than HelloTimeout
		// (strangerLoop waits while it does), not exchangeTimeout.
		deadline = 2 * m.opts.HelloTimeout
	}
	_ = s.SetDeadline(time.Now().Add(deadline))
	var req hello
	err := readMsg(bufio.NewReader(s), &req)
	m.endHello(p, unverified)
	if err != nil {
		s.Reset()
		m.refuseSilent(p, err)
		return
	}
	member, err := m.checkHello(p, req)
	if err != nil {
		reply := m.myHello()
		reply.Error = err.Error()
		if m.Gated() {
			reply = m.refusal(err.Error())
		}
		_ = writeMsg(s, reply)
		return
	}
	orgs := m.notePeer(p, req, member, false)
	if req.Present {
		orgs = nil // what the peer's book says it carries, if anything
	}
	m.deliverHeads(p, member, req.Heads, req.HeadsAt)
	reply := m.helloWithHeads(p, orgs)
	if m.Gated() && !m.mayKnowMe(member) {
		// A verified member of none of this node's organisations learns
		// nothing of them, not even this node's membership.
		reply = m.refusal(fmt.Sprintf("nothing in common: this node holds no organisation the membership of peer %s may read", p))
	}
	if err := writeMsg(s, reply); err != nil {
		s.Reset()
	}
}

// presentation is a gated initiator's first hello to a peer it has not
// verified: versions, network and membership.
func (m *Mesh) presentation() hello {
	return hello{Version: m.version, Schema: m.opts.SchemaVersion, Schemas: m.opts.SchemaVersions,
		Network: m.opts.Network, Membership: m.deps.Membership, Present: true}
}

// refusal is a gated node's reply to a peer it refuses or has nothing to
// offer: the versions and the reason, nothing else.
func (m *Mesh) refusal(reason string) hello {
	return hello{Version: m.version, Schema: m.opts.SchemaVersion, Schemas: m.opts.SchemaVersions, Error: reason}
}

// mayKnowMe reports whether a verified peer may learn this node's
// membership, roles and organisations: it may read one of the
// organisations this node's membership names (a central or archive
// membership for every organisation names none).
func (m *Mesh) mayKnowMe(member *policy.Membership) bool {
	if m.own == nil || m.own.AllOrgs {
		return true
	}
	return slices.ContainsFunc(m.own.Orgs, func(org string) bool { return m.mayRead(member, org) })
}

// helloWithHeads is this node's hello carrying its heads for the
// organisations it holds that the peer carries: those in orgs, or, when
// orgs is nil, those the peer book says it carries. On a gated mesh both
// are already narrowed to what the peer's membership may read (notePeer).
func (m *Mesh) helloWithHeads(p peer.ID, orgs []string) hello {
	h := m.myHello()
	if orgs == nil {
		m.mu.Lock()
		if st := m.book[p]; st != nil {
			orgs = slices.Clone(st.orgs)
		}
		m.mu.Unlock()
	}
	member, _ := m.PeerMembership(p)
	orgs = slices.DeleteFunc(orgs, func(org string) bool { return !m.mayRead(&member, org) })
	// The organisations this node tells a peer of are those it may read.
	h.Orgs = slices.DeleteFunc(h.Orgs, func(org string) bool { return !m.mayRead(&member, org) })
	if m.deps.Heads == nil {
		return h
	}
	m.headsMu.Lock()
	defer m.headsMu.Unlock()
	h.HeadsAt = max(m.now().UnixNano(), m.lastHeadsAt+1)
	m.lastHeadsAt = h.HeadsAt
	for _, org := range h.Orgs {
		if !slices.Contains(orgs, org) {
			continue
		}
		b, err := m.deps.Heads(m.ctx, org)
		if err != nil {
			m.log.Warn("cannot read heads for exchange", "org", org, "err", err)
			continue
		}
		if h.Heads == nil {
			h.Heads = map[string][]byte{}
		}
		h.Heads[org] = b
	}
	return h
}

// deliverHeads hands heads a peer sent to the topics of the organisations
// this node holds, on a gated mesh only those the peer's membership may
// announce in (others are counted as rejected). It keeps them as the
// peer's last heads (HeadsOf) unless a hello built later (at, see
// hello.HeadsAt) already brought newer ones.
func (m *Mesh) deliverHeads(p peer.ID, member *policy.Membership, heads map[string][]byte, at int64) {
	m.mu.Lock()
	var deliveries []func()
	keep := true
	if st := m.book[p]; st != nil && at != 0 {
		keep = at > st.headsAt
		if keep {
			st.headsAt = at
		}
	}
	for org, h := range heads {
		if t := m.topics[org]; t != nil {
			if !m.mayAnnounce(member, org) {
				t.count.reject(RejectNoMembership)
				continue
			}
			if st := m.book[p]; st != nil && keep {
				if st.heads == nil {
					st.heads = map[string]PeerHeads{}
				}
				st.heads[org] = PeerHeads{Peer: p, Heads: h, At: m.now()}
			}
			deliveries = append(deliveries, func() { t.deliver(h, p, &t.count.exchanged) })
		}
	}
	m.mu.Unlock()
	for _, d := range deliveries {
		d()
	}
}

// PushHeads queues a heads exchange with every connected peer of org (the
// node calls it when its heads change by merging a peer's deltas, so that
// the writer learns quickly that its records are held here).
func (m *Mesh) PushHeads(org string) { m.pushOrg(org) }

// pushOrg queues an exchange with every connected peer of org, so that
// they learn this node's new heads directly.
func (m *Mesh) pushOrg(org string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for p, st := range m.book {
		if st.connected && st.carries(org) {
			m.enqueueLocked(p)
		}
	}
}

// checkHello refuses a peer of another protocol version, of a record
// schema version this node cannot read (policy.CheckPeerVersion; the
// message names both sides' versions), of another network, or, on a gated
// mesh, without a valid membership of its own, and disconnects it. It returns the peer's verified membership
// (nil on an open mesh).
func (m *Mesh) checkHello(p peer.ID, h hello) (*policy.Membership, error) {
	var err error
	var member *policy.Membership
	verr := policy.CheckPeerVersion(h.Version, h.Schema, m.version, m.opts.SchemaVersions)
	switch {
	case verr != nil:
		err = fmt.Errorf("%w: peer %s: %w", ErrVersion, p, verr)
	case h.Network != m.opts.Network:
		err = fmt.Errorf("%w: peer %s is in network %q, this node in %q; check the network name in both configs",
			ErrWrongNetwork, p, h.Network, m.opts.Network)
	case m.Gated():
		var merr error
		if member, merr = m.verifyMembership(p, h.Membership); merr == nil {
			return member, nil
		}
		err = fmt.Errorf("%w: peer %s: %w", ErrNotAMember, p, merr)
	default:
		return nil, nil
	}
	m.refuse(p, err)
	return nil, err
}

// refuseSilent disconnects, on a gated mesh, a peer whose exchange failed
// before it presented a valid membership (a stranger that does not speak
// the sync protocol). Verified members stay: the failure may be transient.
func (m *Mesh) refuseSilent(p peer.ID, err error) {
	if !m.Gated() || errors.Is(err, ErrNotAMember) || errors.Is(err, ErrVersion) ||
		errors.Is(err, ErrWrongNetwork) || errors.Is(err, errPeerRefused) {
		return // already refused, with its own reason
	}
	m.mu.Lock()
	s := m.book[p]
	unverified := s != nil && s.connected && s.member == nil
	m.mu.Unlock()
	if unverified {
		m.refuse(p, fmt.Errorf("%w: peer %s did not complete the hello, so it presented no membership: %w", ErrNotAMember, p, err))
	}
}

func (m *Mesh) noteError(p peer.ID, msg string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.book[p]; s != nil {
		s.lastError = msg
	}
}

// notePeer records a peer's accepted hello. On a gated mesh the peer's
// roles are its membership's and its organisations are those it claims
// that its membership may read; it returns those organisations.
func (m *Mesh) notePeer(p peer.ID, h hello, member *policy.Membership, initiated bool) []string {
	orgs := slices.DeleteFunc(slices.Clone(h.Orgs), func(org string) bool { return !m.mayRead(member, org) })
	if orgs == nil {
		orgs = []string{}
	}
	roles := slices.Clone(h.Roles)
	if member != nil {
		roles = []string{string(member.Role)}
	}
	m.mu.Lock()
	s := m.book[p]
	if s == nil {
		s = &peerState{}
		m.book[p] = s
	}
	s.member = member
	s.roles = roles
	if member != nil {
		s.connectedAt = time.Time{}
		m.signalLocked()
	}
	if h.Present {
		s.lastSeen = m.now()
		s.lastError = ""
		orgs := slices.Clone(s.orgs)
		m.mu.Unlock()
		return orgs
	}
	// An organisation this node holds that the peer is newly seen to
	// carry gets an exchange of its own: the hello that revealed it may
	// have crossed this node's Join, so neither side sent heads for it
	// (Join enqueues only peers already known to carry the organisation).
	for _, org := range orgs {
		if m.topics[org] != nil && !s.carries(org) && s.connected {
			m.enqueueLocked(p)
			break
		}
	}
	s.orgs = orgs
	m.rememberLocked(p, s, orgs) // redialled while apart, dialled back after a restart
	s.version = h.Version
	s.schema = h.Schema
	s.lastSeen = m.now()
	s.lastError = ""
	if initiated {
		s.lastExchange = m.now()
		s.exchanges++
	}
	m.mu.Unlock()
	if m.deps.OnPeerOrgs != nil {
		m.deps.OnPeerOrgs(p, roles, orgs)
	}
	return orgs
}

// redialLoop keeps the configured peers connected, with exponential
// backoff between failed dials.
// Bounds of the wait before a failed exchange is tried again.
const (
	exchangeRetryMin = 250 * time.Millisecond
	exchangeRetryMax = 15 * time.Second
)

// scheduleRetryLocked notes the outcome of an exchange with p: a success
// clears its retry; a failure with a peer still connected and not refused
// schedules another exchange (retryDue queues it).
func (m *Mesh) scheduleRetryLocked(p peer.ID, err error) {
	s := m.book[p]
	if s == nil {
		return
	}
	if err == nil || !s.connected || s.refused || s.declined || errors.Is(err, ErrNotAMember) ||
		errors.Is(err, ErrVersion) || errors.Is(err, ErrWrongNetwork) || errors.Is(err, errPeerRefused) {
		s.retryAt, s.retryWait = time.Time{}, 0
		return
	}
	limit := exchangeRetryMax
	if m.opts.ExchangeInterval > 0 {
		limit = min(limit, m.opts.ExchangeInterval)
	}
	s.retryWait = min(max(2*s.retryWait, exchangeRetryMin), limit)
	s.retryAt = m.now().Add(s.retryWait)
}

// retryDue queues the exchanges whose retry time has come.
func (m *Mesh) retryDue() {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for p, s := range m.book {
		if s.retryAt.IsZero() || now.Before(s.retryAt) {
			continue
		}
		s.retryAt = time.Time{}
		if s.connected {
			m.enqueueLocked(p)
		}
	}
}

func (m *Mesh) redialLoop() {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		m.dialDue()
		m.retryDue()
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (m *Mesh) dialDue() {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.dialRememberedDueLocked(now)
	for _, ai := range m.peers {
		s := m.book[ai.ID]
		if s.connected || s.dialing || now.Before(s.nextDial) {
			continue
		}
		if m.host.Network().Connectedness(ai.ID) == network.Connected {
			continue
		}
		s.dialing = true
		m.wg.Add(1)
		go func(ai peer.AddrInfo) {
			defer m.wg.Done()
			ctx, cancel := context.WithTimeout(m.ctx, 10*time.Second)
			err := m.host.Connect(ctx, ai)
			cancel()
			m.mu.Lock()
			defer m.mu.Unlock()
			s := m.book[ai.ID]
			s.dialing = false
			if err == nil {
				s.backoff = 0
				return
			}
			if s.backoff == 0 {
				s.backoff = m.opts.RedialMin
			} else {
				s.backoff = min(2*s.backoff, m.opts.RedialMax)
			}
			s.nextDial = m.now().Add(s.backoff)
			if m.ctx.Err() == nil {
				herr := m.pnetHint(err)
				msg := "dial: " + herr.Error()
				if msg != s.lastError && errors.Is(herr, ErrHandshake) {
					m.log.Warn("cannot connect to a configured peer", "peer", ai.ID, "err", msg)
				}
				s.lastError = msg
			}
		}(ai)
	}
}

func writeMsg(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	buf := binary.AppendUvarint(make([]byte, 0, len(b)+binary.MaxVarintLen64), uint64(len(b)))
	_, err = w.Write(append(buf, b...))
	return err
}

var (
	errTooLarge    = errors.New("mesh: message too large")
	errPeerRefused = errors.New("mesh: refused by the peer")
)

func readMsg(r *bufio.Reader, v any) error {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return err
	}
	if n > maxHelloSize {
		return errTooLarge
	}
	// Grow with what arrives rather than allocating the announced length:
	// a peer that announces 8 MiB and sends nothing costs nothing.
	b, err := io.ReadAll(io.LimitReader(r, int64(n)))
	if err != nil {
		return err
	}
	if uint64(len(b)) != n {
		return io.ErrUnexpectedEOF
	}
	return json.Unmarshal(b, v)
}
