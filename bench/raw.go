package bench

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/ipfs/boxo/bitswap"
	bsnet "github.com/ipfs/boxo/bitswap/network/bsnet"
	"github.com/ipfs/boxo/blockservice"
	"github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/boxo/ipld/merkledag"
	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
	badger "github.com/ipfs/go-ds-badger4"
	crdt "github.com/ipfs/go-ds-crdt"
	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
)

// RawOptions configures the raw go-ds-crdt stack. The zero value is
// go-ds-crdt's defaults throughout.
type RawOptions struct {
	// RebroadcastInterval overrides go-ds-crdt's RebroadcastInterval
	// (default one minute) so that tests can run quickly. Zero keeps the
	// default.
	RebroadcastInterval time.Duration
	// JoinTimeout bounds how long AddNode waits for gossipsub on the new
	// node and on every existing node to see each other on the topic
	// (default 10 s).
	JoinTimeout time.Duration
}

// rawTopic is the gossipsub topic of the raw stack's broadcaster.
const rawTopic = "examnode-bench-raw"

// RawFactory returns a Factory for raw go-ds-crdt as its README wires it:
// per node, a libp2p host on 127.0.0.1 (TCP), gossipsub with go-ds-crdt's
// own PubSubBroadcaster, a badger v4 datastore with default options, a
// boxo blockstore on it, bitswap without content routing, a blockservice
// and a merkledag DAG service (as hsanjuan/ipfs-lite composes them), and
// crdt.New with crdt.DefaultOptions.
func RawFactory(opts RawOptions) Factory {
	if opts.JoinTimeout <= 0 {
		opts.JoinTimeout = 10 * time.Second
	}
	return func(dir string) (Stack, error) {
		return &rawStack{dir: dir, opts: opts}, nil
	}
}

// rawStack is a set of rawNodes replicating one key space.
type rawStack struct {
	dir  string
	opts RawOptions

	addMu sync.Mutex // serialises AddNode

	mu     sync.RWMutex
	nodes  []*rawNode
	closed bool

	closeOnce sync.Once
	closeErr  error
}

// rawNode is one replica and everything it owns. Fields may be nil when
// construction failed part way; close skips those.
type rawNode struct {
	cancel  context.CancelFunc // stops gossipsub, the broadcaster and the blockstore cache
	store   *badger.Datastore
	host    host.Host
	psub    *pubsub.PubSub
	bserv   blockservice.BlockService // owns bitswap
	crdt    *crdt.Datastore
	batchMu sync.Mutex // go-ds-crdt batches share one pending delta per store
}

var _ Stack = (*rawStack)(nil)

// AddNode starts a node, connects it to every existing node, and returns
// once gossipsub on both sides sees the other subscribed to the topic, so
// that the first write is announced to it.
func (s *rawStack) AddNode(ctx context.Context) (int, error) {
	s.addMu.Lock()
	defer s.addMu.Unlock()
	s.mu.RLock()
	closed, existing := s.closed, slices.Clone(s.nodes)
	s.mu.RUnlock()
	if closed {
		return 0, ErrClosed
	}
	i := len(existing)
	n, err := s.startNode(filepath.Join(s.dir, fmt.Sprintf("node%d", i)))
	if err == nil {
		err = n.join(ctx, existing, s.opts.JoinTimeout)
	}
	if err != nil {
		return 0, errors.Join(fmt.Errorf("raw: starting node %d: %w", i, err), n.close())
	}
	s.mu.Lock() // Close waits for addMu, so the stack is still open
	s.nodes = append(s.nodes, n)
	s.mu.Unlock()
	return i, nil
}

// startNode builds one node under dir. On error the returned node holds
// what was built, for close.
func (s *rawStack) startNode(dir string) (*rawNode, error) {
	n := &rawNode{}
	var err error
	if n.store, err = badger.NewDatastore(filepath.Join(dir, "badger"), nil); err != nil {
		return n, fmt.Errorf("opening badger: %w", err)
	}
	if n.host, err = libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0")); err != nil {
		return n, fmt.Errorf("starting libp2p host: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	if n.psub, err = pubsub.NewGossipSub(ctx, n.host); err != nil {
		return n, fmt.Errorf("starting gossipsub: %w", err)
	}
	bcast, err := crdt.NewPubSubBroadcaster(ctx, n.psub, rawTopic)
	if err != nil {
		return n, fmt.Errorf("joining topic %s: %w", rawTopic, err)
	}
	bstore, err := blockstore.CachedBlockstore(ctx,
		blockstore.NewIdStore(blockstore.NewBlockstore(n.store)), blockstore.DefaultCacheOpts())
	if err != nil {
		return n, fmt.Errorf("building blockstore: %w", err)
	}
	// A nil ContentDiscovery disables content routing in boxo's bitswap
	// client (documented in client.New): peers are found by bitswap alone.
	bswap := bitswap.New(context.Background(), bsnet.NewFromIpfsHost(n.host), nil, bstore)
	n.bserv = blockservice.New(bstore, bswap)
	opts := crdt.DefaultOptions()
	if s.opts.RebroadcastInterval > 0 {
		opts.RebroadcastInterval = s.opts.RebroadcastInterval
	}
	dag := merkledag.NewDAGService(n.bserv)
	if n.crdt, err = crdt.New(n.store, ds.NewKey("/crdt"), dag, bcast, opts); err != nil {
		return n, fmt.Errorf("starting go-ds-crdt: %w", err)
	}
	return n, nil
}

// join connects n to every existing node and waits until gossipsub on each
// side lists the other on the topic.
func (n *rawNode) join(ctx context.Context, existing []*rawNode, timeout time.Duration) error {
	for _, e := range existing {
		info := peer.AddrInfo{ID: e.host.ID(), Addrs: e.host.Addrs()}
		if err := n.host.Connect(ctx, info); err != nil {
			return fmt.Errorf("connecting to %s: %w", info.ID, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for _, e := range existing {
		if err := waitTopicPeer(ctx, n.psub, e.host.ID()); err != nil {
			return err
		}
		if err := waitTopicPeer(ctx, e.psub, n.host.ID()); err != nil {
			return err
		}
	}
	return nil
}

// waitTopicPeer polls until ps lists p as subscribed to the topic.
func waitTopicPeer(ctx context.Context, ps *pubsub.PubSub, p peer.ID) error {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("gossipsub never saw peer %s on topic %s: %w", p, rawTopic, ctx.Err())
		case <-t.C:
		}
		if slices.Contains(ps.ListPeers(rawTopic), p) {
			return nil
		}
		t.Reset(10 * time.Millisecond)
	}
}

// close stops the node. Order matters: the broadcaster's context is
// cancelled first, otherwise crdt.Close waits forever on the broadcaster
// (go-ds-crdt's NewPubSubBroadcaster doc); then go-ds-crdt, whose workers
// use the DAG service; then the blockservice, which closes bitswap; then the
// host; badger last, since everything above writes to it.
func (n *rawNode) close() error {
	var errs []error
	if n.cancel != nil {
		n.cancel()
	}
	if n.crdt != nil {
		errs = append(errs, wrapErr("closing go-ds-crdt", n.crdt.Close()))
	}
	if n.bserv != nil {
		errs = append(errs, wrapErr("closing bitswap", n.bserv.Close()))
	}
	if n.host != nil {
		errs = append(errs, wrapErr("closing libp2p host", n.host.Close()))
	}
	if n.store != nil {
		errs = append(errs, wrapErr("closing badger", n.store.Close()))
	}
	return errors.Join(errs...)
}

// wrapErr prefixes err with what was being done, or returns nil.
func wrapErr(doing string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", doing, err)
}

// node returns node i, or an error saying why it cannot.
func (s *rawStack) node(i int) (*rawNode, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	if i < 0 || i >= len(s.nodes) {
		return nil, fmt.Errorf("%w: node %d of %d; call AddNode first", ErrNoNode, i, len(s.nodes))
	}
	return s.nodes[i], nil
}

// Put writes one record with crdt Put: one delta, one DAG node, one
// announcement.
func (s *rawStack) Put(ctx context.Context, i int, key string, value []byte) error {
	n, err := s.node(i)
	if err != nil {
		return err
	}
	return n.crdt.Put(ctx, ds.NewKey(key), value)
}

// PutBatch writes kvs as one crdt Batch committed once. Batches on one node
// are serialised, since go-ds-crdt keeps a single pending delta per store.
func (s *rawStack) PutBatch(ctx context.Context, i int, kvs []KV) error {
	n, err := s.node(i)
	if err != nil {
		return err
	}
	n.batchMu.Lock()
	defer n.batchMu.Unlock()
	b, err := n.crdt.Batch(ctx)
	if err != nil {
		return err
	}
	for _, kv := range kvs {
		if err := b.Put(ctx, ds.NewKey(kv.Key), kv.Value); err != nil {
			return err
		}
	}
	return b.Commit(ctx)
}

// Count counts the keys of a keys-only query.
func (s *rawStack) Count(ctx context.Context, i int) (int, error) {
	n, err := s.node(i)
	if err != nil {
		return 0, err
	}
	res, err := n.crdt.Query(ctx, query.Query{KeysOnly: true})
	if err != nil {
		return 0, err
	}
	defer res.Close()
	count := 0
	for r := range res.Next() {
		if r.Error != nil {
			return count, r.Error
		}
		count++
	}
	return count, nil
}

// Close stops every node, newest first, and joins their errors. It is safe
// to call more than once; later calls return the first call's result.
func (s *rawStack) Close() error {
	s.closeOnce.Do(func() {
		s.addMu.Lock() // wait for an AddNode under way
		defer s.addMu.Unlock()
		s.mu.Lock()
		s.closed = true
		nodes := s.nodes
		s.nodes = nil
		s.mu.Unlock()
		errs := make([]error, 0, len(nodes))
		for i := len(nodes) - 1; i >= 0; i-- {
			errs = append(errs, wrapErr(fmt.Sprintf("raw node %d", i), nodes[i].close()))
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}
