package crdt

// Blocks from peers stop before the disk guard trips.
//
// The space guard (space.go) refuses every write, of every organisation,
// once less than the reserve would remain free. Blocks that peers send are
// the one kind of write that another machine decides, so they stop at a
// higher threshold: PeerReserveFactor times the reserve. A member filling
// the disk through replication is refused while the node's own writes (and
// every other organisation's) still have at least one reserve of room
// beyond the guard's.

import "fmt"

// PeerReserveFactor: blocks from peers need this many reserves free.
const PeerReserveFactor = 2

// AdmitPeerBlock lets a block of size bytes that a peer sent be stored, or
// refuses it with ErrDiskFull if fewer than PeerReserveFactor reserves
// would remain free. It accounts nothing: the write itself passes the
// guard. A store in memory admits everything.
func (s *Store) AdmitPeerBlock(size int) error {
	g := s.guard
	if g == nil {
		return nil
	}
	n := writeSize("/blocks/", nil) + 64 + 2*uint64(size) // the key of a block is under 64 bytes
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	if g.checked.IsZero() || now.Sub(g.checked) >= spaceRecheck || g.admitted+n > g.free/8 {
		g.read(now)
	}
	if g.readErr != nil {
		return nil
	}
	need := PeerReserveFactor*g.reserve + g.admitted + n
	if g.free < need {
		g.peerRefused++
		return fmt.Errorf("%w: %s has %s free; blocks from peers stop while less than %s (%d× the %s the store keeps for its own work) "+
			"would remain, so that this node's own writes go on", ErrDiskFull, g.dir, mib(g.free), mib(PeerReserveFactor*g.reserve),
			PeerReserveFactor, mib(g.reserve))
	}
	return nil
}

// PeerBlocksRefused counts the blocks from peers that AdmitPeerBlock refused.
func (s *Store) PeerBlocksRefused() uint64 {
	if s.guard == nil {
		return 0
	}
	s.guard.mu.Lock()
	defer s.guard.mu.Unlock()
	return s.guard.peerRefused
}
