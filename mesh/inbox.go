package mesh

import (
	"context"
	"sync"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/examnode/examnode/internal/heads"
)

// maxPendingHeads bounds the heads waiting from one peer; past it the
// oldest are dropped (counted), and the periodic exchange brings them back.
const maxPendingHeads = 4096

// inbox holds the head announcements waiting for go-ds-crdt, coalesced by
// sender: while a peer's announcement waits, a newer one from the same
// peer is merged into it (the union of their heads) instead of queued
// behind it. Under a burst, a replica then processes one announcement per
// peer per round instead of one per remote commit, and nothing is lost:
// a head it already processed is skipped at once by go-ds-crdt.
type inbox struct {
	mu      sync.Mutex
	order   []peer.ID // senders with pending heads, oldest first
	pending map[peer.ID]*pendingHeads
	ready   chan struct{} // holds a token while order is non-empty
}

type pendingHeads struct {
	heads []cid.Cid
	seen  map[cid.Cid]bool
}

func newInbox() *inbox {
	return &inbox{pending: map[peer.ID]*pendingHeads{}, ready: make(chan struct{}, 1)}
}

// add merges an announcement's heads into the sender's pending set. It
// returns how many heads it had to drop, and an error for a malformed
// announcement.
func (b *inbox) add(data []byte, from peer.ID) (dropped int, err error) {
	heads, err := decodeHeads(data)
	if err != nil {
		return 0, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.pending[from]
	if p == nil {
		p = &pendingHeads{seen: map[cid.Cid]bool{}}
		b.pending[from] = p
		b.order = append(b.order, from)
	}
	for _, h := range heads {
		if !p.seen[h] {
			p.seen[h] = true
			p.heads = append(p.heads, h)
		}
	}
	if over := len(p.heads) - maxPendingHeads; over > 0 {
		for _, h := range p.heads[:over] {
			delete(p.seen, h)
		}
		p.heads = append([]cid.Cid(nil), p.heads[over:]...)
		dropped = over
	}
	select {
	case b.ready <- struct{}{}:
	default:
	}
	return dropped, nil
}

// next waits for the oldest sender's pending heads and returns them as one
// announcement in go-ds-crdt's format.
func (b *inbox) next(ctx, closed context.Context) (announcement, error) {
	for {
		// A closed topic answers nothing more, even with heads pending
		// (go-ds-crdt's Close waits for Next to return an error).
		if err := closed.Err(); err != nil {
			return announcement{}, err
		}
		b.mu.Lock()
		if len(b.order) > 0 {
			from := b.order[0]
			b.order = b.order[1:]
			p := b.pending[from]
			delete(b.pending, from)
			if len(b.order) > 0 {
				select {
				case b.ready <- struct{}{}:
				default:
				}
			}
			b.mu.Unlock()
			data, err := encodeHeads(p.heads)
			return announcement{data: data, from: from}, err
		}
		b.mu.Unlock()
		select {
		case <-b.ready:
		case <-closed.Done():
			return announcement{}, closed.Err()
		case <-ctx.Done():
			return announcement{}, ctx.Err()
		}
	}
}

// decodeHeads and encodeHeads are the one heads codec (internal/heads):
// go-ds-crdt's broadcast format, shared with the crdt package.
func decodeHeads(data []byte) ([]cid.Cid, error) { return heads.Decode(data) }

func encodeHeads(hs []cid.Cid) ([]byte, error) { return heads.Encode(hs) }
