package node

// Remembered peers across restarts.
//
// The mesh remembers the peers that completed a hello sharing an
// organisation (on a gated mesh: verified members), with the addresses it
// can dial them on (mesh/remembered.go). The node keeps them in its badger
// store under /node/peers/<peer ID>, written rarely (when a peer becomes
// remembered in a run, when its addresses change, at most daily while it
// stays), and hands them back to the mesh at Start, which dials them at
// once: a central restarted without configured peers dials back the VMs
// that dialled it, rather than waiting for their redial backoff. At most
// maxRememberedPeers are kept (the least recently seen go first), and a
// peer unseen for rememberedFor is forgotten.

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"time"

	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

const (
	maxRememberedPeers = 4096
	rememberedFor      = 30 * 24 * time.Hour
)

var peersKey = ds.NewKey("/node/peers")

// rememberedRecord is the stored value of a remembered peer.
type rememberedRecord struct {
	Addrs []string  `json:"addrs"`
	Seen  time.Time `json:"seen"`
}

// rememberedPeers is the node's store of remembered peers.
type rememberedPeers struct {
	store ds.Datastore
	now   func() time.Time
	log   interface{ Warn(string, ...any) }

	mu   sync.Mutex
	seen map[peer.ID]time.Time
}

func newRememberedPeers(store ds.Datastore, now func() time.Time, log interface{ Warn(string, ...any) }) *rememberedPeers {
	return &rememberedPeers{store: store, now: now, log: log, seen: map[peer.ID]time.Time{}}
}

// load reads the remembered peers, most recently seen first, and deletes
// those that are unreadable, unseen for rememberedFor, or beyond
// maxRememberedPeers.
func (r *rememberedPeers) load(ctx context.Context) ([]peer.AddrInfo, error) {
	res, err := r.store.Query(ctx, query.Query{Prefix: peersKey.String()})
	if err != nil {
		return nil, err
	}
	type entry struct {
		ai   peer.AddrInfo
		seen time.Time
	}
	var out []entry
	var drop []ds.Key
	now := r.now()
	for e := range res.Next() {
		if e.Error != nil {
			_ = res.Close()
			return nil, e.Error
		}
		k := ds.RawKey(e.Key)
		id, err := peer.Decode(k.BaseNamespace())
		var rec rememberedRecord
		if err == nil {
			err = json.Unmarshal(e.Value, &rec)
		}
		var addrs []ma.Multiaddr
		for _, s := range rec.Addrs {
			if a, aerr := ma.NewMultiaddr(s); aerr == nil {
				addrs = append(addrs, a)
			}
		}
		if err != nil || len(addrs) == 0 || now.Sub(rec.Seen) > rememberedFor {
			drop = append(drop, k)
			continue
		}
		out = append(out, entry{peer.AddrInfo{ID: id, Addrs: addrs}, rec.Seen})
	}
	_ = res.Close()
	slices.SortFunc(out, func(a, b entry) int { return b.seen.Compare(a.seen) })
	for _, e := range out[min(len(out), maxRememberedPeers):] {
		drop = append(drop, peersKey.ChildString(e.ai.ID.String()))
	}
	out = out[:min(len(out), maxRememberedPeers)]
	for _, k := range drop {
		if err := r.store.Delete(ctx, k); err != nil {
			return nil, err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	ais := make([]peer.AddrInfo, 0, len(out))
	for _, e := range out {
		r.seen[e.ai.ID] = e.seen
		ais = append(ais, e.ai)
	}
	return ais, nil
}

// remember stores p's addresses, seen now, and forgets the least recently
// seen peer beyond maxRememberedPeers.
func (r *rememberedPeers) remember(ai peer.AddrInfo) {
	rec := rememberedRecord{Seen: r.now().UTC()}
	for _, a := range ai.Addrs {
		rec.Addrs = append(rec.Addrs, a.String())
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	ctx := context.Background()
	if err := r.store.Put(ctx, peersKey.ChildString(ai.ID.String()), b); err != nil {
		r.log.Warn("cannot remember a peer", "peer", ai.ID, "err", err)
		return
	}
	r.seen[ai.ID] = rec.Seen
	for len(r.seen) > maxRememberedPeers {
		var oldest peer.ID
		var at time.Time
		for id, t := range r.seen {
			if oldest == "" || t.Before(at) {
				oldest, at = id, t
			}
		}
		r.forgetLocked(oldest)
	}
}

// forget deletes p (the mesh refused it, or it refused this node).
func (r *rememberedPeers) forget(p peer.ID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.forgetLocked(p)
}

func (r *rememberedPeers) forgetLocked(p peer.ID) {
	if err := r.store.Delete(context.Background(), peersKey.ChildString(p.String())); err != nil {
		r.log.Warn("cannot forget a peer", "peer", p, "err", err)
	}
	delete(r.seen, p)
}
