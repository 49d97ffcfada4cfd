// Package node is the examnode daemon: it composes the mesh (libp2p,
// gossipsub, heads exchange), one CRDT replica per organisation over one
// shared badger database, the DAG service (bitswap + blockservice +
// merkledag), and the local HTTP API. It holds no replication logic of its
// own.
//
// # Lifecycle
//
// New validates the configuration, parses the authority key (once) and
// opens the data directory (identity, token, store). Start brings up the
// change feed, the mesh, the DAG service, the replicas, the observer, the
// bundle worker, the heads watcher and the API. Close undoes Start and New
// in reverse order and collects every error:
//
//  1. the API stops taking requests, then the bundle worker, the
//     observer's sampler and the heads watcher stop;
//  2. every organisation's topic closes, so go-ds-crdt's broadcaster
//     reader returns (a replica's Close waits for it);
//  3. every replica closes, committing writes already queued; then the
//     change feed writes what the replicas' hooks queued and marks the
//     shutdown clean (see feed.go);
//  4. bitswap, then the libp2p host, close;
//  5. the badger database closes last.
//
// Close is safe to call twice, and after a failed Start.
//
// docs/ARCHITECTURE.md walks through the write, receive and read paths.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/boxo/bitswap"
	bsnet "github.com/ipfs/boxo/bitswap/network/bsnet"
	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/examnode/examnode/crdt"
	"github.com/examnode/examnode/mesh"
	"github.com/examnode/examnode/policy"
	"github.com/examnode/examnode/schema"
)

// Version is examnode's release version.
const Version = "0.1.0"

// Errors returned by the node.
var (
	ErrNotStarted = errors.New("node: not started")
	ErrClosed     = errors.New("node: closed")
	ErrUnknownOrg = errors.New("node: organisation not held by this node")
)

// Deps are collaborators a caller may inject (tests, the demo).
type Deps struct {
	Logger *slog.Logger
	// Gater may refuse connections (tests' partitions).
	Gater connmgr.ConnectionGater
	// Now is the node's clock; time.Now if nil.
	Now func() time.Time
	// GossipFilter drops gossipsub announcements it returns false for
	// (fault injection; see mesh.Deps).
	GossipFilter func(org string, from peer.ID) bool
	// StoreOptions overrides the badger options.
	StoreOptions *crdt.StoreOptions
	// BundleClock is retention's clock (bundles.go); Now if nil. Tests
	// move it ahead without upsetting membership checks.
	BundleClock func() time.Time
}

// Node is one examnode daemon.
type Node struct {
	cfg   Config
	dir   string
	deps  Deps
	log   *slog.Logger
	now   func() time.Time
	key   crypto.PrivKey
	token string
	// trust is what the node trusts: the configured authority key,
	// parsed once by New (nil: the node runs open).
	trust *policy.Trust
	store *crdt.Store

	mesh *mesh.Mesh
	// touched: organisations whose records changed, for the heads
	// watcher (held.go).
	touched headsTouched
	// bswap is the one bitswap of the node: it serves blocks from the
	// shared blockstore, each only to a peer that may read an
	// organisation the block belongs to (blockfilter.go), and is the
	// exchange of every organisation's DAG service (orgDAG).
	bswap *bitswap.Bitswap

	// locks serialise local work on one key: a record's
	// read-check-write, an execution's resumption or attachments, a
	// bundle's export (keylock.go).
	locks keyLocks

	mu      sync.Mutex
	orgs    map[string]*orgReplica
	started time.Time
	closed  bool

	ctx    context.Context // cancelled first thing in Close
	cancel context.CancelFunc

	pulls, pulledBlocks, pullErrors atomic.Uint64
	pullGuard                       pullGuard // byte budgets and penalties of bulk pulls (pullguard.go)

	// Signing (trust.go): own is this node's membership (nil: open).
	own       *policy.Membership
	seqMu     sync.Mutex
	seq       uint64
	seqLoaded bool

	feed *feed     // the change feed (feed.go); opened by Start, closed after the replicas
	obs  *observer // history sampler and metrics (observe.go); started by Start, stopped after the API

	bundles atomic.Pointer[bundler] // bundle worker (bundles.go); started by Start, stopped before the replicas

	api   *http.Server
	apiLn net.Listener
	apiWG sync.WaitGroup

	watchWG sync.WaitGroup // the heads watcher (held.go)

	closeOnce sync.Once
	closeErr  error
}

type orgReplica struct {
	topic   *mesh.Topic
	replica *crdt.Replica
}

// New opens a node's data directory. It does not touch the network.
func New(dir string, cfg Config, deps Deps) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// The authority key is parsed here, once; everything after reads
	// n.trust.
	trust, err := cfg.Trust()
	if err != nil {
		return nil, err
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	key, err := mesh.LoadOrCreateKey(filepath.Join(dir, IdentityFile))
	if err != nil {
		return nil, err
	}
	token, err := loadOrCreateToken(dir)
	if err != nil {
		return nil, fmt.Errorf("node: API token: %w", err)
	}
	sopts := crdt.DefaultStoreOptions()
	if deps.StoreOptions != nil {
		sopts = *deps.StoreOptions
	}
	keySource := "the store options"
	if len(sopts.EncryptionKey) == 0 {
		if sopts.EncryptionKey, keySource, err = storeKey(dir, cfg); err != nil {
			return nil, err
		}
	}
	store, err := crdt.OpenStore(filepath.Join(dir, StoreDir), sopts)
	if err != nil {
		return nil, explainStoreErr(err, dir, cfg, keySource)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Node{
		cfg: cfg, dir: dir, deps: deps, log: deps.Logger, now: deps.Now,
		key: key, token: token, trust: trust, store: store, orgs: map[string]*orgReplica{},
		ctx: ctx, cancel: cancel,
	}, nil
}

// Start brings the node onto the mesh, opens its replicas and serves the
// local API (unless the configured API address is "off").
func (n *Node) Start(ctx context.Context) error {
	t := n.cfg.Tuning
	mopts := mesh.DefaultOptions()
	mopts.Network = n.cfg.Network
	mopts.ListenAddrs = n.cfg.Listen
	mopts.Peers = n.cfg.Peers
	mopts.MDNS = n.cfg.LANDiscovery
	for _, r := range n.cfg.Roles {
		mopts.Roles = append(mopts.Roles, string(r))
	}
	if t.ExchangeInterval > 0 {
		mopts.ExchangeInterval = time.Duration(t.ExchangeInterval)
	}
	if t.RedialMax > 0 {
		mopts.RedialMax = time.Duration(t.RedialMax)
		mopts.RedialMin = min(mopts.RedialMin, mopts.RedialMax)
	}
	if n.cfg.PnetKey != "" {
		psk, err := LoadPnetKey(n.dir, n.cfg.PnetKey)
		if err != nil {
			return err
		}
		mopts.PrivateNetworkKey = psk
	}
	trust := n.trust
	own, err := n.cfg.checkMembership(trust, n.ID(), n.now())
	if err != nil {
		return err
	}
	var ownBytes []byte
	if own != nil {
		ownBytes = own.Encode()
		n.own = own
	}
	// The feed opens before the mesh: a central node opens the replica of
	// an organisation a peer's hello names (onPeerOrgs) as soon as the
	// mesh runs, and a replica's hooks write to the feed.
	f, err := openFeed(ctx, n.store, n.now, n.log)
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.feed = f
	n.mu.Unlock()
	// The peers met before the restart are dialled back at once
	// (remembered.go).
	remembered := newRememberedPeers(n.store.Datastore(), n.now, n.log)
	if mopts.Remembered, err = remembered.load(ctx); err != nil {
		return fmt.Errorf("node: read remembered peers: %w", err)
	}
	m, err := mesh.New(mopts, mesh.Deps{
		Trust:        trust,
		Membership:   ownBytes,
		Key:          n.key,
		Heads:        n.headsFor,
		OnPeerOrgs:   n.onPeerOrgs,
		Prefetch:     n.prefetch,
		GossipFilter: n.deps.GossipFilter,
		Gater:        n.deps.Gater,
		RememberPeer: remembered.remember,
		ForgetPeer:   remembered.forget,
		Logger:       n.log,
		Now:          n.now,
	})
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.mesh = m
	// No content routing: a node asks the peers it is connected to.
	var bopts []bitswap.Option
	if m.Gated() {
		// Each block goes only to a peer that may read an organisation it
		// belongs to (blockfilter.go).
		bopts = append(bopts, bitswap.WithPeerBlockRequestFilter(n.bitswapMaySend))
	}
	n.bswap = bitswap.New(context.Background(), bsnet.NewFromIpfsHost(m.Host()), nil, n.store.Blockstore(), bopts...)
	n.started = n.now()
	n.mu.Unlock()
	m.Host().SetStreamHandler(pullProtocol, n.servePull)

	orgs, err := n.knownOrgs(ctx)
	if err != nil {
		return err
	}
	for _, org := range orgs {
		o, err := n.openOrg(org)
		if err != nil {
			return err
		}
		if err := n.writeOwnMembership(ctx, o.replica); err != nil {
			return err
		}
	}
	obs := newObserver(n)
	n.mu.Lock()
	n.obs = obs
	n.mu.Unlock()
	obs.start()
	n.startBundles()
	n.watchWG.Add(1)
	go func() {
		defer n.watchWG.Done()
		n.watchHeads()
	}()
	if n.cfg.API != "off" {
		return n.startAPI()
	}
	return nil
}

// knownOrgs is the configured organisations plus those the node opened
// later (a central node's, learnt from peers).
func (n *Node) knownOrgs(ctx context.Context) ([]string, error) {
	orgs := slices.Clone(n.cfg.Orgs)
	res, err := n.store.Datastore().Query(ctx, dsQueryKeys(orgsKey))
	if err != nil {
		return nil, err
	}
	defer res.Close()
	for e := range res.Next() {
		if e.Error != nil {
			return nil, e.Error
		}
		org := ds.RawKey(e.Key).BaseNamespace()
		if !slices.Contains(orgs, org) {
			orgs = append(orgs, org)
		}
	}
	sort.Strings(orgs)
	return orgs, nil
}

var orgsKey = ds.NewKey("/node/orgs")

func dsQueryKeys(prefix ds.Key) query.Query {
	return query.Query{Prefix: prefix.String(), KeysOnly: true}
}

// AddOrg opens the replica of an organisation (central and archive nodes
// hold many). It is a no-op if the node already holds it.
func (n *Node) AddOrg(org string) error {
	if err := crdt.ValidateOrg(org); err != nil {
		return err
	}
	if !n.cfg.Has(schema.RoleCentral) && !n.cfg.Has(schema.RoleArchive) && !slices.Contains(n.cfg.Orgs, org) {
		return fmt.Errorf("%w: %s; a vm holds only its own organisation (%v)", ErrUnknownOrg, org, n.cfg.Orgs)
	}
	o, err := n.openOrg(org)
	if err != nil {
		return err
	}
	return n.writeOwnMembership(n.ctx, o.replica)
}

func (n *Node) openOrg(org string) (*orgReplica, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, ErrClosed
	}
	if n.mesh == nil {
		return nil, ErrNotStarted
	}
	if o := n.orgs[org]; o != nil {
		return o, nil
	}
	ctx := context.Background()
	if err := n.store.Datastore().Put(ctx, orgsKey.ChildString(org), nil); err != nil {
		return nil, fmt.Errorf("node: record organisation %s: %w", org, err)
	}
	topic, err := n.mesh.Join(org)
	if err != nil {
		return nil, err
	}
	ropts := crdt.DefaultOptions(org)
	if t := n.cfg.Tuning.RebroadcastInterval; t > 0 {
		ropts.RebroadcastInterval = time.Duration(t)
	}
	ropts.GroupWindow = time.Duration(n.cfg.Tuning.GroupWindow)
	if ropts.Verify, err = n.verifyOptions(); err != nil {
		_ = topic.Close()
		return nil, err
	}
	if ropts.OnPut, ropts.OnDelete, err = n.feed.hooks(org); err != nil {
		_ = topic.Close()
		return nil, err
	}
	if feedPut := ropts.OnPut; feedPut != nil {
		ropts.OnPut = func(key string, v []byte) { feedPut(key, v); n.touched.touch(org); n.kickBundles(key) }
	}
	if feedDel := ropts.OnDelete; feedDel != nil {
		ropts.OnDelete = func(key string) { feedDel(key); n.touched.touch(org) }
	}
	rep, err := crdt.NewReplica(ropts, crdt.Deps{
		Store: n.store, DAG: n.orgDAG(org), Broadcaster: topic, Logger: n.log,
	})
	if err != nil {
		_ = topic.Close()
		return nil, err
	}
	if err := n.indexOrgBlocks(ctx, org, rep); err != nil {
		_ = rep.Close()
		_ = topic.Close()
		return nil, err
	}
	o := &orgReplica{topic: topic, replica: rep}
	n.orgs[org] = o
	n.log.Info("holding organisation", "org", org)
	return o, nil
}

// headsFor answers a peer's heads exchange.
func (n *Node) headsFor(ctx context.Context, org string) ([]byte, error) {
	rep, err := n.Replica(org)
	if err != nil {
		return nil, err
	}
	return rep.HeadsAnnouncement(ctx)
}

// onPeerOrgs opens, on a central node, the replicas of organisations a
// peer carries that this node has not held yet.
func (n *Node) onPeerOrgs(p peer.ID, roles, orgs []string) {
	if !n.cfg.Has(schema.RoleCentral) {
		return
	}
	for _, org := range orgs {
		if err := crdt.ValidateOrg(org); err != nil {
			n.log.Warn("peer presents an invalid organisation", "peer", p, "org", org)
			continue
		}
		held := slices.Contains(n.Orgs(), org)
		if err := n.AddOrg(org); err != nil && !errors.Is(err, ErrClosed) {
			n.log.Warn("cannot open organisation from peer", "peer", p, "org", org, "err", err)
		} else if err == nil && !held {
			// The hellos that told connected peers (p among them) which
			// organisations this node carries may have gone before this one
			// opened: exchange again, so that they push their commits here
			// and see this node's state.
			n.mu.Lock()
			m := n.mesh
			n.mu.Unlock()
			if m != nil {
				m.ExchangeNow()
			}
		}
	}
}

// Replica returns the replica of org.
func (n *Node) Replica(org string) (*crdt.Replica, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, ErrClosed
	}
	o := n.orgs[org]
	if o == nil {
		return nil, fmt.Errorf("%w: %s (holds %v)", ErrUnknownOrg, org, n.orgIDsLocked())
	}
	return o.replica, nil
}

// Orgs lists the organisations this node holds.
func (n *Node) Orgs() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.orgIDsLocked()
}

func (n *Node) orgIDsLocked() []string {
	out := make([]string, 0, len(n.orgs))
	for org := range n.orgs {
		out = append(out, org)
	}
	sort.Strings(out)
	return out
}

// Mesh is the node's libp2p layer (nil before Start).
func (n *Node) Mesh() *mesh.Mesh { return n.mesh }

// ID is the node's peer ID.
func (n *Node) ID() peer.ID {
	id, _ := peer.IDFromPrivateKey(n.key)
	return id
}

// Addrs are the node's libp2p addresses, each ending in /p2p/<id>.
func (n *Node) Addrs() []string {
	if n.mesh == nil {
		return nil
	}
	return n.mesh.Addrs()
}

// Config is the node's configuration.
func (n *Node) Config() Config { return n.cfg }

// Dir is the node's data directory.
func (n *Node) Dir() string { return n.dir }

// Close stops the node; see the package doc for the order. Safe twice.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.cancel()
		var errs []error
		if n.api != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			errs = append(errs, n.api.Shutdown(ctx))
			cancel()
			n.apiWG.Wait()
			_ = os.Remove(filepath.Join(n.dir, APIAddrFile))
		}
		if b := n.bundles.Load(); b != nil {
			b.stop()
		}
		n.mu.Lock()
		n.closed = true
		orgs, feed, obs := n.orgs, n.feed, n.obs
		n.mu.Unlock()
		if obs != nil {
			obs.stop()
		}
		n.watchWG.Wait()
		for _, o := range orgs {
			errs = append(errs, o.topic.Close())
		}
		for _, o := range orgs {
			errs = append(errs, o.replica.Close())
		}
		if feed != nil {
			errs = append(errs, feed.close())
		}
		if n.bswap != nil {
			errs = append(errs, n.bswap.Close())
		}
		if n.mesh != nil {
			errs = append(errs, n.mesh.Close())
		}
		errs = append(errs, n.store.Close())
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}
