package crdt

// Blocks from peers stop before the disk guard trips.
//
// The space guard (space.go) refuses every write, of every organisation,
// once less than the reserve would remain free. Blocks that peers send are
// the one kind of write that another machine decides, so they stop at a
// higher threshold: PeerReserveFactor times the reserve, counting what
// merging them will write (PeerMergeFactor). A member filling the disk
// through replication is refused while the node's own writes (and every
// other organisation's) still have at least one reserve of room beyond the
// guard's.

import "fmt"

// PeerReserveFactor: blocks from peers need this many reserves free.
const PeerReserveFactor = 2

// PeerMergeFactor: once stored, a block from a peer is merged into
// go-ds-crdt's state (the value under the set's element and value keys)
// and a gated replica's verified view, which writes about this many times
// its size again. Those writes pass the guard at the ordinary reserve, so
// the peer threshold counts them in advance. (Measured on a 64 MiB tmpfs:
// 8 MiB of pulled blocks of records took another 15 MiB when merged.)
const PeerMergeFactor = 3

// AdmitPeerBlock is AdmitPeerBlocks with nothing pending.
func (s *Store) AdmitPeerBlock(size int) error { return s.AdmitPeerBlocks(size, 0) }

// AdmitPeerBlocks lets a block of size bytes that a peer sent be stored,
// or refuses it with ErrDiskFull, unless PeerReserveFactor reserves would
// remain free after the block and its merge, and the merge of pending
// bytes of blocks from peers stored already and not merged yet (those of
// the same pull: go-ds-crdt merges them after the pull). It accounts
// nothing: the write itself passes the guard. A store in memory admits
// everything.
func (s *Store) AdmitPeerBlocks(size int, pending uint64) error {
	g := s.guard
	if g == nil {
		return nil
	}
	n := writeSize("/blocks/", nil) + 64 + 2*uint64(size) // the key of a block is under 64 bytes
	merge := PeerMergeFactor * (pending + uint64(size))
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	if g.checked.IsZero() || now.Sub(g.checked) >= spaceRecheck || g.admitted+n > g.free/8 {
		g.read(now)
	}
	if g.readErr != nil {
		return nil
	}
	if g.free < PeerReserveFactor*g.reserve+g.admitted+n+merge {
		g.peerRefused++
		return fmt.Errorf("%w: %s has %s free; blocks from peers stop while less than %s (%d× the %s the store keeps for its own work) "+
			"would remain after they are stored and merged, so that this node's own writes go on", ErrDiskFull, g.dir, mib(g.free),
			mib(PeerReserveFactor*g.reserve), PeerReserveFactor, mib(g.reserve))
	}
	return nil
}

// PeerBlocksRefused counts the blocks from peers that AdmitPeerBlocks refused.
func (s *Store) PeerBlocksRefused() uint64 {
	if s.guard == nil {
		return 0
	}
	s.guard.mu.Lock()
	defer s.guard.mu.Unlock()
	return s.guard.peerRefused
}
