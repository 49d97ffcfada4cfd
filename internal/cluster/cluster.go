// Package cluster runs examnode nodes together in one process: real nodes
// (real libp2p on 127.0.0.1, real badger on disk, real gossipsub) with
// fault knobs to partition, heal, stop and restart them. The demo, the
// benchmark stack and the scale runner run on it; the multi-node tests use
// it through internal/clustertest, which adds what takes a testing.TB.
// It imports no testing package: the examnode binary links it.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/examnode/examnode/crdt"
	"github.com/examnode/examnode/mesh"
	"github.com/examnode/examnode/node"
	"github.com/examnode/examnode/policy"
	"github.com/examnode/examnode/schema"
)

// Options shape a cluster.
type Options struct {
	// Network is the mesh name; "test" if empty.
	Network string
	// Tuning is applied to every node.
	Tuning node.Tuning
	// API is the API address of every node: "127.0.0.1:0" (default) or "off".
	API    string
	Logger *slog.Logger
	// LANDiscovery turns on mDNS in every node (off by default: tests on
	// one machine would otherwise find each other's nodes).
	LANDiscovery bool
	// DropGossip makes every node drop every gossipsub announcement it
	// receives: heads then travel only by direct exchange. It is
	// GossipDropProbability 1.
	DropGossip bool
	// GossipDropProbability, in [0, 1], is the chance that a node drops
	// each gossipsub announcement it receives (independently per message
	// and node); what is dropped travels only by direct exchange.
	GossipDropProbability float64
	// NodeLogger, if set, gives each node its logger by name (and Logger
	// is ignored); else each node logs to Logger with a "node" attribute.
	NodeLogger func(name string) *slog.Logger
	// Store overrides the nodes' badger options.
	Store *crdt.StoreOptions
	// Bundles configures result bundles on every node (a Spec may
	// override it); BundleClock is the nodes' retention clock.
	Bundles     node.BundleConfig
	BundleClock func() time.Time
	// Authority, if set, gates the cluster: every node is configured with
	// its public key and a membership it grants from the node's Spec
	// (central and archive: every organisation; vm: its Orgs), valid for a
	// day. Nil: the nodes run open.
	Authority *policy.Authority
	// Encrypt encrypts every node's store at rest, each with its own key
	// in its data directory's store.key (see node/storekey.go).
	Encrypt bool
}

// Spec describes one node of a cluster.
type Spec struct {
	Name  string
	Role  schema.Role
	Orgs  []string
	Peers []int // indexes of existing nodes to keep connected to; nil: all
	// PeerAddrs are further peers to keep connected to, outside the cluster.
	PeerAddrs []string
	// Bundles, if set, replaces the cluster's bundle configuration for
	// this node (set it on a stopped member before Restart to reconfigure).
	Bundles *node.BundleConfig
	// Stranger, in a cluster with an Authority, makes this node run open
	// and without a membership: a machine that reaches the mesh but was
	// never granted.
	Stranger bool
	// PnetKey is the path of the node's private-network key file (see
	// node/pnet.go); empty: none.
	PnetKey string
}

// Member is one node of a cluster and what it takes to restart it.
type Member struct {
	Spec  Spec
	Dir   string
	Node  *node.Node // nil while stopped
	ID    peer.ID
	gater *gater
}

// Cluster is a set of nodes on 127.0.0.1.
type Cluster struct {
	dir  string
	opts Options

	mu      sync.Mutex
	members []*Member
}

// NewCluster makes an empty cluster whose nodes keep their data under dir.
func NewCluster(dir string, opts Options) *Cluster {
	return &Cluster{dir: dir, opts: withDefaults(opts)}
}

func withDefaults(opts Options) Options {
	if opts.Network == "" {
		opts.Network = "test"
	}
	if opts.API == "" {
		opts.API = "127.0.0.1:0"
	}
	return opts
}

// Add starts a node and connects it to the nodes spec.Peers names.
func (c *Cluster) Add(ctx context.Context, spec Spec) (*Member, error) {
	c.mu.Lock()
	i := len(c.members)
	if spec.Name == "" {
		spec.Name = fmt.Sprintf("%s-%d", spec.Role, i)
	}
	if spec.Peers == nil {
		for j := range c.members {
			spec.Peers = append(spec.Peers, j)
		}
	}
	m := &Member{Spec: spec, Dir: filepath.Join(c.dir, spec.Name), gater: newGater()}
	c.members = append(c.members, m)
	c.mu.Unlock()
	return m, c.start(ctx, m)
}

func (c *Cluster) config(m *Member) node.Config {
	cfg := node.DefaultConfig(m.Spec.Role, m.Spec.Orgs...)
	cfg.Network = c.opts.Network
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.API = c.opts.API
	cfg.Tuning = c.opts.Tuning
	cfg.LANDiscovery = c.opts.LANDiscovery
	cfg.Bundles = c.opts.Bundles
	if m.Spec.Bundles != nil {
		cfg.Bundles = *m.Spec.Bundles
	}
	for _, j := range m.Spec.Peers {
		if p := c.members[j]; p.Node != nil {
			cfg.Peers = append(cfg.Peers, p.Node.Addrs()...)
		}
	}
	cfg.Peers = append(cfg.Peers, m.Spec.PeerAddrs...)
	cfg.Encrypt = c.opts.Encrypt
	cfg.PnetKey = m.Spec.PnetKey
	// Test clusters keep the raw routes (a debugging aid) that tests use
	// to write plain values; a gated node still refuses raw writes.
	cfg.Debug = true
	return cfg
}

func (c *Cluster) start(ctx context.Context, m *Member) error {
	c.mu.Lock()
	cfg, opts := c.config(m), c.opts
	c.mu.Unlock()
	if err := grant(opts.Authority, m, &cfg); err != nil {
		return err
	}
	if cfg.Encrypt {
		if _, err := node.EnsureStoreKey(m.Dir); err != nil {
			return err
		}
	}
	logger := opts.Logger
	switch {
	case opts.NodeLogger != nil:
		logger = opts.NodeLogger(m.Spec.Name)
	case logger != nil:
		logger = logger.With("node", m.Spec.Name)
	}
	deps := node.Deps{Logger: logger, Gater: m.gater, StoreOptions: opts.Store, BundleClock: opts.BundleClock}
	switch p := opts.GossipDropProbability; {
	case opts.DropGossip || p >= 1:
		deps.GossipFilter = func(string, peer.ID) bool { return false }
	case p > 0:
		deps.GossipFilter = func(string, peer.ID) bool { return rand.Float64() >= p }
	}
	n, err := node.New(m.Dir, cfg, deps)
	if err != nil {
		return err
	}
	if err := n.Start(ctx); err != nil {
		return errors.Join(err, n.Close())
	}
	c.mu.Lock()
	m.Node, m.ID = n, n.ID()
	c.mu.Unlock()
	return nil
}

// grant configures a gated cluster's node with the authority's key and a
// membership for its identity (created here if new).
func grant(a *policy.Authority, m *Member, cfg *node.Config) error {
	if a == nil || m.Spec.Stranger {
		return nil
	}
	key, err := mesh.LoadOrCreateKey(filepath.Join(m.Dir, node.IdentityFile))
	if err != nil {
		return err
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return err
	}
	req := policy.GrantRequest{Network: cfg.Network, Peer: id.String(), Role: m.Spec.Role, Orgs: m.Spec.Orgs}
	if m.Spec.Role != schema.RoleVM {
		req.Orgs, req.AllOrgs = nil, true
	}
	now := time.Now()
	req.NotBefore, req.Expires = now.Add(-time.Minute), now.Add(24*time.Hour)
	mb, err := a.Grant(req, now)
	if err != nil {
		return err
	}
	cfg.Authority, cfg.Membership = a.Public().String(), mb.String()
	return nil
}

// Options returns the cluster's options (defaults filled).
func (c *Cluster) Options() Options {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.opts
}

// SetOptions replaces the options of the nodes (re)started from now on.
func (c *Cluster) SetOptions(opts Options) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.opts = withDefaults(opts)
}

// Dir is the directory under which the nodes keep their data.
func (c *Cluster) Dir() string { return c.dir }

// Members returns the cluster's members, in the order they were added.
func (c *Cluster) Members() []*Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.members)
}

// Node returns member i's running node (nil while stopped).
func (c *Cluster) Node(i int) *node.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members[i].Node
}

// Stop closes member i's node, keeping its data directory.
func (c *Cluster) Stop(i int) error {
	c.mu.Lock()
	m := c.members[i]
	n := m.Node
	m.Node = nil
	c.mu.Unlock()
	if n == nil {
		return nil
	}
	return n.Close()
}

// Restart reopens member i from its data directory.
func (c *Cluster) Restart(ctx context.Context, i int) error {
	c.mu.Lock()
	m := c.members[i]
	c.mu.Unlock()
	if m.Node != nil {
		return fmt.Errorf("cluster: node %s is running", m.Spec.Name)
	}
	return c.start(ctx, m)
}

// Partition cuts every connection between members i and j, both ways,
// until Heal.
func (c *Cluster) Partition(i, j int) {
	a, b := c.Members()[i], c.Members()[j]
	a.gater.block(b.ID)
	b.gater.block(a.ID)
	for _, x := range []*Member{a, b} {
		other := b
		if x == b {
			other = a
		}
		if x.Node != nil {
			_ = x.Node.Mesh().ClosePeer(other.ID)
		}
	}
}

// Heal undoes Partition and reconnects i and j.
func (c *Cluster) Heal(ctx context.Context, i, j int) error {
	a, b := c.Members()[i], c.Members()[j]
	a.gater.unblock(b.ID)
	b.gater.unblock(a.ID)
	if a.Node == nil || b.Node == nil {
		return nil
	}
	ai, err := AddrInfo(b.Node.Addrs())
	if err != nil {
		return err
	}
	return a.Node.Mesh().Connect(ctx, ai)
}

// Connect dials member j from member i.
func (c *Cluster) Connect(ctx context.Context, i, j int) error {
	ai, err := AddrInfo(c.Node(j).Addrs())
	if err != nil {
		return err
	}
	return c.Node(i).Mesh().Connect(ctx, ai)
}

// AddrInfo joins the p2p addresses of one peer (as node.Addrs lists them).
func AddrInfo(addrs []string) (peer.AddrInfo, error) {
	var out peer.AddrInfo
	for _, a := range addrs {
		m, err := ma.NewMultiaddr(a)
		if err != nil {
			return out, err
		}
		ai, err := peer.AddrInfoFromP2pAddr(m)
		if err != nil {
			return out, err
		}
		out.ID = ai.ID
		out.Addrs = append(out.Addrs, ai.Addrs...)
	}
	return out, nil
}

// Close stops every node and collects their errors. Safe twice.
func (c *Cluster) Close() error {
	var errs []error
	for i := range c.Members() {
		errs = append(errs, c.Stop(i))
	}
	return errors.Join(errs...)
}

// RemoveAll closes the cluster and deletes its data.
func (c *Cluster) RemoveAll() error {
	return errors.Join(c.Close(), os.RemoveAll(c.dir))
}

// WaitFor polls cond every 20 ms until it holds, it fails, or the deadline
// passes; it never sleeps longer than it must.
func WaitFor(ctx context.Context, timeout time.Duration, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	var lastErr error
	for {
		ok, err := cond()
		if ok && err == nil {
			return nil
		}
		lastErr = err
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return fmt.Errorf("%w (last error: %v)", ctx.Err(), lastErr)
			}
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Contents reads every value of org that n's replica merged (on a gated
// node, go-ds-crdt's raw state, not the verified view: see crdt.GetRaw),
// without the reserved keys (memberships, revocations).
func Contents(ctx context.Context, n *node.Node, org string) (map[string]string, error) {
	rep, err := n.Replica(org)
	if err != nil {
		return nil, err
	}
	es, err := rep.ListRaw(ctx, "/", false, 0, 0)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(es))
	for _, e := range es {
		if crdt.IsReserved(e.Key) {
			continue // memberships and revocations, not records
		}
		out[e.Key] = string(e.Value)
	}
	return out, nil
}

// gater refuses connections to and from blocked peers: the cluster's
// partition knob.
type gater struct {
	mu      sync.RWMutex
	blocked map[peer.ID]bool
}

func newGater() *gater { return &gater{blocked: map[peer.ID]bool{}} }

func (g *gater) block(p peer.ID)   { g.mu.Lock(); g.blocked[p] = true; g.mu.Unlock() }
func (g *gater) unblock(p peer.ID) { g.mu.Lock(); delete(g.blocked, p); g.mu.Unlock() }
func (g *gater) ok(p peer.ID) bool { g.mu.RLock(); defer g.mu.RUnlock(); return !g.blocked[p] }

func (g *gater) InterceptPeerDial(p peer.ID) bool                 { return g.ok(p) }
func (g *gater) InterceptAddrDial(p peer.ID, _ ma.Multiaddr) bool { return g.ok(p) }
func (g *gater) InterceptAccept(network.ConnMultiaddrs) bool      { return true }
func (g *gater) InterceptSecured(_ network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	return g.ok(p)
}
func (g *gater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }
