// Package mesh is examnode's libp2p layer: the host (identity, TCP
// transport, connection manager), gossipsub with one topic per
// organisation, the direct heads exchange that runs whenever two peers
// connect, the peer book, and the redialling of configured peers.
//
// The mesh knows organisations only as opaque IDs and head announcements
// only as bytes: it does not know record kinds.
//
// # Who closes what
//
// Mesh.Close closes every Topic it handed out, then stops its goroutines,
// then closes the libp2p host it created. Callers that feed a Topic to a
// go-ds-crdt replica must close the Topic (or the whole Mesh) before
// closing the replica: a replica's Close waits for its broadcaster's Next
// to return.
package mesh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	"github.com/libp2p/go-libp2p/p2p/host/eventbus"
	cmgr "github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/examnode/examnode/policy"
	"github.com/examnode/examnode/schema"
)

// ProtocolVersion is the version of examnode's mesh protocols. Peers that
// speak another version are refused with a message naming both.
const ProtocolVersion = 1

// Errors returned by this package.
var (
	ErrClosed        = errors.New("mesh: closed")
	ErrBadPeerAddr   = errors.New("mesh: invalid peer address")
	ErrVersion       = errors.New("mesh: unsupported peer version")
	ErrWrongNetwork  = errors.New("mesh: peer belongs to another network")
	ErrAlreadyJoined = errors.New("mesh: organisation already joined")
)

// Options configures the mesh.
type Options struct {
	// Network names the mesh; peers of different networks refuse each
	// other, and topic names include it.
	Network string
	// ListenAddrs are multiaddrs to listen on, e.g. /ip4/0.0.0.0/tcp/4001.
	ListenAddrs []string
	// Peers are multiaddrs, ending in /p2p/<id>, of hosts to keep
	// connected to (central, archive, bootstrap peers). They are dialled
	// at start and redialled with backoff, and protected from pruning.
	Peers []string
	// Roles are announced to peers in the hello exchange.
	Roles []string
	// ExchangeInterval is how often heads are exchanged with every
	// connected peer that shares an organisation, in addition to on
	// connect.
	ExchangeInterval time.Duration
	// RedialMin and RedialMax bound the backoff between dials of a
	// configured peer that is not connected.
	RedialMin, RedialMax time.Duration
	// InboxSize is how many announcements a topic buffers for its reader.
	InboxSize int
	// MDNS turns on LAN discovery: peers of the same network found by
	// mDNS are connected.
	MDNS bool
	// PrivateNetworkKey, if set (32 bytes), puts the host in a libp2p
	// private network: a peer without the same key cannot complete a
	// handshake with it (see pnet.go).
	PrivateNetworkKey []byte
	// SchemaVersion is the record schema version this node writes, and
	// SchemaVersions those it reads; both are announced in the hello and
	// checked with policy.CheckPeerVersion. Zero and nil mean
	// schema.CurrentVersion and schema.SupportedVersions().
	SchemaVersion  int
	SchemaVersions []int
	// HelloTimeout is how long, on a gated mesh, a peer that connected
	// may take to present a valid membership before it is disconnected as
	// a stranger (configured peers excepted). DenyFor is how long a
	// refused stranger may not reconnect. Zero: the defaults.
	HelloTimeout, DenyFor time.Duration
	// MaxPeers bounds the peer book (configured peers always stay).
	// Zero: DefaultMaxPeers.
	MaxPeers int
	// Limits are the libp2p resource manager's limits; zero fields take
	// DefaultLimits' values.
	Limits Limits
	// Remembered are peers this node met before (what Deps.RememberPeer
	// was handed, persisted by the node): they are dialled at start and
	// redialled while disconnected (remembered.go). Configured peers and
	// entries without addresses are skipped.
	Remembered []peer.AddrInfo
}

// Defaults of the options that bound what strangers cost.
const (
	DefaultHelloTimeout = 1500 * time.Millisecond
	DefaultDenyFor      = 30 * time.Second
	DefaultMaxPeers     = 2048
	maxDenied           = 8192 // entries of the deny set
)

// DefaultOptions returns what a daemon uses.
func DefaultOptions() Options {
	return Options{
		Network:          "examnode",
		ListenAddrs:      []string{"/ip4/0.0.0.0/tcp/4001"},
		ExchangeInterval: 15 * time.Second,
		RedialMin:        500 * time.Millisecond,
		RedialMax:        30 * time.Second,
		InboxSize:        1024,
	}
}

func (o *Options) validate() error {
	d := DefaultOptions()
	if o.Network == "" {
		o.Network = d.Network
	}
	if o.ListenAddrs == nil {
		o.ListenAddrs = d.ListenAddrs
	}
	if o.ExchangeInterval == 0 {
		o.ExchangeInterval = d.ExchangeInterval
	}
	if o.RedialMin == 0 {
		o.RedialMin = d.RedialMin
	}
	if o.RedialMax == 0 {
		o.RedialMax = d.RedialMax
	}
	if o.InboxSize == 0 {
		o.InboxSize = d.InboxSize
	}
	if o.HelloTimeout == 0 {
		o.HelloTimeout = DefaultHelloTimeout
	}
	if o.DenyFor == 0 {
		o.DenyFor = DefaultDenyFor
	}
	if o.MaxPeers == 0 {
		o.MaxPeers = DefaultMaxPeers
	}
	o.Limits.fill()
	if o.SchemaVersion == 0 {
		o.SchemaVersion = schema.CurrentVersion
	}
	if o.SchemaVersions == nil {
		o.SchemaVersions = schema.SupportedVersions()
	}
	if n := len(o.PrivateNetworkKey); n != 0 && n != pnetKeySize {
		return fmt.Errorf("mesh: a private-network key is %d bytes, got %d", pnetKeySize, n)
	}
	if o.RedialMax < o.RedialMin || o.ExchangeInterval < 0 || o.InboxSize < 0 ||
		o.HelloTimeout < 0 || o.DenyFor < 0 || o.MaxPeers < 0 {
		return errors.New("mesh: bad intervals or sizes in options")
	}
	for _, a := range o.ListenAddrs {
		if _, err := ma.NewMultiaddr(a); err != nil {
			return fmt.Errorf("mesh: listen address %q: %w", a, err)
		}
	}
	for _, p := range o.Peers {
		if _, err := ParsePeerAddr(p); err != nil {
			return err
		}
	}
	for _, ai := range o.Remembered {
		if err := ai.ID.Validate(); err != nil {
			return fmt.Errorf("mesh: remembered peer: %w", err)
		}
	}
	return nil
}

// Deps are the mesh's collaborators.
type Deps struct {
	// Key is the node's identity.
	Key crypto.PrivKey
	// Heads returns the current head announcement for an organisation
	// this node carries, for the direct exchange.
	Heads func(ctx context.Context, org string) ([]byte, error)
	// OnPeerOrgs, if set, is called after a hello with the organisations
	// and roles a peer carries (a central node uses it to open replicas of
	// organisations it has not seen yet).
	OnPeerOrgs func(p peer.ID, roles, orgs []string)
	// Prefetch, if set, is called by a topic's Next before it hands an
	// announcement to go-ds-crdt, with the peer it came from: the node
	// pulls the announced sub-DAG from that peer in bulk.
	Prefetch func(ctx context.Context, org string, from peer.ID, announcement []byte)
	// GossipFilter, if set, sees every gossipsub announcement before it is
	// delivered and drops those it returns false for (counted as dropped).
	// It is a fault-injection knob: tests use it to lose announcements on
	// purpose.
	GossipFilter func(org string, from peer.ID) bool
	// Gater, if set, may refuse connections (tests' partitions).
	Gater connmgr.ConnectionGater
	// Trust, if set, gates the mesh by membership (see trust.go): peers
	// must present a membership that policy accepts, and organisations'
	// heads and announcements flow only between their members. Its
	// Network must be Options.Network. Nil: the mesh is open.
	Trust *policy.Trust
	// Membership is this node's own membership (policy.Membership.Encode),
	// presented in every hello. Required when Trust is set, and it must
	// verify for this node's peer ID.
	Membership []byte
	// RememberPeer and ForgetPeer, if set, persist the remembered peers
	// (remembered.go): RememberPeer is called when a peer becomes
	// remembered, when its addresses change, and at most daily while it
	// stays; ForgetPeer when a remembered peer is refused. Both are called
	// from one goroutine, in order.
	RememberPeer func(peer.AddrInfo)
	ForgetPeer   func(peer.ID)
	Logger       *slog.Logger
	// Now is the clock for the peer book; time.Now if nil.
	Now func() time.Time
}

// Mesh is a running libp2p host with examnode's protocols.
type Mesh struct {
	opts   Options
	deps   Deps
	log    *slog.Logger
	host   host.Host
	ps     *pubsub.PubSub
	peers  []peer.AddrInfo
	now    func() time.Time
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	joinMu sync.Mutex // serialises Join

	headsMu     sync.Mutex // orders hellos' heads (exchange.go, HeadsAt)
	lastHeadsAt int64
	mu          sync.Mutex // guards topics, book, queued
	topics      map[string]*Topic
	book        map[peer.ID]*peerState

	cmu    sync.RWMutex              // guards counts; taken by the pubsub tracer
	counts map[string]*topicCounters // by topic name; outlives Topics

	own *policy.Membership // this node's verified membership; nil when open

	revMu sync.Mutex
	revs  policy.RevocationSet // revocations learnt from the replicas (AddRevocation)

	verifyCh chan struct{}    // closed and replaced when a peer is verified or refused (m.mu)
	deny     *denySet         // refused strangers, refused reconnection for a while
	recent   []refusedPeerLog // the last refused strangers forgotten from the book (m.mu)

	version     int // ProtocolVersion; tests override it
	exchangeQ   chan peer.ID
	queued      map[peer.ID]bool
	running     map[peer.ID]bool // an exchange with the peer is under way
	again       map[peer.ID]bool // queue another when it ends
	exchangesOK atomic.Uint64

	mdns interface{ Close() error }

	dirty             map[peer.ID]bool // remembered peers to hand to the node (m.mu)
	dirtyCh           chan struct{}
	rememberedDialing int // dials of remembered peers under way (m.mu)

	closeOnce sync.Once
	closeErr  error
}

// New starts a libp2p host listening on opts.ListenAddrs, gossipsub, the
// heads exchange and the redial loop.
func New(opts Options, deps Deps) (*Mesh, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if deps.Key == nil {
		return nil, errors.New("mesh: an identity key is required")
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	var peers []peer.AddrInfo
	for _, p := range opts.Peers {
		ai, _ := ParsePeerAddr(p)
		peers = append(peers, ai)
	}
	// The connection manager trims unprotected connections beyond its high
	// watermark: keep it under the resource manager's limit but high
	// enough for a central host's VMs (1,000+ peers).
	cm, err := cmgr.NewConnManager(opts.Limits.Conns/2, opts.Limits.Conns*3/4)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Mesh{
		opts:      opts,
		deps:      deps,
		log:       deps.Logger.With("component", "mesh"),
		peers:     peers,
		now:       deps.Now,
		ctx:       ctx,
		cancel:    cancel,
		topics:    map[string]*Topic{},
		book:      map[peer.ID]*peerState{},
		counts:    map[string]*topicCounters{},
		version:   ProtocolVersion,
		exchangeQ: make(chan peer.ID, 4096),
		queued:    map[peer.ID]bool{},
		running:   map[peer.ID]bool{},
		again:     map[peer.ID]bool{},
		verifyCh:  make(chan struct{}),
		deny:      newDenySet(maxDenied),
		dirty:     map[peer.ID]bool{},
		dirtyCh:   make(chan struct{}, 1),
	}
	var allow []ma.Multiaddr
	for _, p := range peers {
		allow = append(allow, p.Addrs...)
	}
	rm, err := m.resourceManager(opts.Limits, allow)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("mesh: resource manager: %w", err)
	}
	lopts := []libp2p.Option{
		libp2p.Identity(deps.Key),
		libp2p.ListenAddrStrings(opts.ListenAddrs...),
		// TCP only: it accepts a private-network key, where QUIC and
		// WebTransport refuse one.
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.ConnectionManager(cm),
		libp2p.ResourceManager(rm),
		libp2p.DisableRelay(),
		libp2p.Ping(true),
		// Refused strangers are denied for a while, then the caller's
		// gater decides (tests' partitions).
		libp2p.ConnectionGater(gater{m: m, inner: deps.Gater}),
	}
	if len(opts.PrivateNetworkKey) > 0 {
		lopts = append(lopts, libp2p.PrivateNetwork(pnet.PSK(opts.PrivateNetworkKey)))
	}
	h, err := libp2p.New(lopts...)
	if err != nil {
		cancel()
		_ = rm.Close()
		return nil, fmt.Errorf("mesh: start libp2p host: %w", err)
	}
	m.host = h
	// On a gated mesh gossipsub sees a peer only once its membership is
	// verified, and only the topics it may read (gate.go).
	var psHost host.Host = h
	if deps.Trust != nil {
		psHost = pubsubHost{Host: h, m: m}
	}
	psOpts := append([]pubsub.Option{
		pubsub.WithRawTracer(dropTracer{m}),
		pubsub.WithPeerOutboundQueueSize(1024),
		pubsub.WithValidateQueueSize(1024),
	}, m.gatedPubsubOptions()...)
	ps, err := pubsub.NewGossipSub(ctx, psHost, psOpts...)
	if err != nil {
		cancel()
		_ = h.Close()
		return nil, fmt.Errorf("mesh: start gossipsub: %w", err)
	}
	m.ps = ps
	if err := m.setupTrust(); err != nil {
		cancel()
		_ = h.Close()
		return nil, err
	}
	for _, p := range peers {
		h.Peerstore().AddAddrs(p.ID, p.Addrs, time.Hour)
		cm.Protect(p.ID, "examnode-configured")
		m.book[p.ID] = &peerState{configured: true, addr: firstAddr(p.Addrs)}
	}
	m.loadRemembered()
	idSub, err := h.EventBus().Subscribe(new(event.EvtPeerIdentificationCompleted), eventbus.BufSize(256))
	if err != nil {
		cancel()
		_ = h.Close()
		return nil, fmt.Errorf("mesh: subscribe to identify events: %w", err)
	}
	h.SetStreamHandler(syncProtocol, m.handleSync)
	h.Network().Notify(&network.NotifyBundle{
		ConnectedF:    func(_ network.Network, c network.Conn) { m.onConnected(c) },
		DisconnectedF: func(_ network.Network, c network.Conn) { m.onDisconnected(c) },
	})

	if opts.MDNS {
		if err := m.startMDNS(); err != nil {
			cancel()
			_ = idSub.Close()
			_ = h.Close()
			return nil, fmt.Errorf("mesh: start LAN discovery (mDNS): %w", err)
		}
	}
	m.wg.Add(6)
	go func() { defer m.wg.Done(); m.identifyLoop(idSub) }()
	go func() { defer m.wg.Done(); m.persistLoop() }()
	go func() { defer m.wg.Done(); m.strangerLoop() }()
	go func() { defer m.wg.Done(); m.exchangeLoop() }()
	go func() { defer m.wg.Done(); m.redialLoop() }()
	go func() { defer m.wg.Done(); m.periodicExchange() }()
	return m, nil
}

// ID is this node's peer ID.
func (m *Mesh) ID() peer.ID { return m.host.ID() }

// Host is the libp2p host (for the DAG service's bitswap network).
func (m *Mesh) Host() host.Host { return m.host }

// Addrs returns the node's listen addresses with /p2p/<id> appended, in a
// form another node's Peers option accepts.
func (m *Mesh) Addrs() []string {
	var out []string
	for _, a := range m.host.Addrs() {
		out = append(out, a.String()+"/p2p/"+m.host.ID().String())
	}
	return out
}

// Connect dials a peer now.
func (m *Mesh) Connect(ctx context.Context, ai peer.AddrInfo) error {
	return m.host.Connect(ctx, ai)
}

// ClosePeer closes every connection to p.
func (m *Mesh) ClosePeer(p peer.ID) error { return m.host.Network().ClosePeer(p) }

// Close closes the topics, stops the mesh's goroutines and closes the
// host. It is safe to call twice.
func (m *Mesh) Close() error {
	m.closeOnce.Do(func() {
		m.mu.Lock()
		topics := slices.Collect(maps.Values(m.topics))
		m.mu.Unlock()
		var errs []error
		if m.mdns != nil {
			errs = append(errs, m.mdns.Close())
		}
		for _, t := range topics {
			errs = append(errs, t.Close())
		}
		m.cancel()
		m.wg.Wait()
		errs = append(errs, m.host.Close())
		m.closeErr = errors.Join(errs...)
	})
	return m.closeErr
}

// ParsePeerAddr parses a multiaddr that ends in /p2p/<peer ID>.
func ParsePeerAddr(s string) (peer.AddrInfo, error) {
	a, err := ma.NewMultiaddr(s)
	if err != nil {
		return peer.AddrInfo{}, fmt.Errorf("%w %q: %w", ErrBadPeerAddr, s, err)
	}
	ai, err := peer.AddrInfoFromP2pAddr(a)
	if err != nil {
		return peer.AddrInfo{}, fmt.Errorf("%w %q: it must end in /p2p/<peer ID> (see `examnode status` on that host)", ErrBadPeerAddr, s)
	}
	return *ai, nil
}

func firstAddr(as []ma.Multiaddr) string {
	if len(as) == 0 {
		return ""
	}
	return as[0].String()
}
