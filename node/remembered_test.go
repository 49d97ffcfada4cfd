package node

import (
	"context"
	"crypto/rand"
	"log/slog"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

func newPeerID(t *testing.T) peer.ID {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestRememberedPeersAreBoundedInAgeAndCount: what the mesh remembers is
// read back at the next start, most recent first; a peer unseen for
// rememberedFor, an unreadable entry and a forgotten peer are not, and
// beyond maxRememberedPeers the least recently seen go.
func TestRememberedPeersAreBoundedInAgeAndCount(t *testing.T) {
	ctx := context.Background()
	store := dssync.MutexWrap(ds.NewMapDatastore())
	now := time.Now()
	clock := func() time.Time { return now }
	r := newRememberedPeers(store, clock, slog.New(slog.DiscardHandler))
	addr := ma.StringCast("/ip4/10.0.0.1/tcp/4001")
	old, recent, newest, gone := newPeerID(t), newPeerID(t), newPeerID(t), newPeerID(t)
	r.remember(peer.AddrInfo{ID: old, Addrs: []ma.Multiaddr{addr}})
	now = now.Add(rememberedFor - time.Hour)
	r.remember(peer.AddrInfo{ID: recent, Addrs: []ma.Multiaddr{addr}})
	r.remember(peer.AddrInfo{ID: gone, Addrs: []ma.Multiaddr{addr}})
	r.forget(gone)
	now = now.Add(time.Minute)
	r.remember(peer.AddrInfo{ID: newest, Addrs: []ma.Multiaddr{addr}})
	if err := store.Put(ctx, peersKey.ChildString("not-a-peer-id"), []byte("{")); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Hour) // old is now unseen for longer than rememberedFor

	got, err := newRememberedPeers(store, clock, slog.New(slog.DiscardHandler)).load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != newest || got[1].ID != recent || !got[0].Addrs[0].Equal(addr) {
		t.Fatalf("loaded %v, want %s then %s", got, newest, recent)
	}
	res, err := store.Query(ctx, dsQueryKeys(peersKey))
	if err != nil {
		t.Fatal(err)
	}
	all, _ := res.Rest()
	if len(all) != 2 {
		t.Fatalf("%d entries left in the store, want 2 (expired and unreadable ones deleted)", len(all))
	}

	// The count bound: the least recently seen goes first.
	r = newRememberedPeers(store, clock, slog.New(slog.DiscardHandler))
	if _, err := r.load(ctx); err != nil {
		t.Fatal(err)
	}
	for range maxRememberedPeers - 1 {
		now = now.Add(time.Second)
		r.remember(peer.AddrInfo{ID: newPeerID(t), Addrs: []ma.Multiaddr{addr}})
	}
	if has, _ := store.Has(ctx, peersKey.ChildString(recent.String())); has {
		t.Fatal("the least recently seen peer is still remembered beyond the bound")
	}
	if has, _ := store.Has(ctx, peersKey.ChildString(newest.String())); !has {
		t.Fatal("a peer within the bound was forgotten")
	}
}
