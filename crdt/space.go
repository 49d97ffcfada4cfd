package crdt

// Keeping badger off a full disk.
//
// Why a guard rather than an error: badger v4 writes its value log
// (*.vlog) and its memtables' write-ahead logs (*.mem) by copying into
// writable mmaps of sparse files (ristretto's z.OpenMmapFile truncates a new
// file to 2×ValueLogFileSize or 2×MemTableSize without allocating blocks;
// valueLog.write and memTable.Put then memmove into the mapping), and it
// builds every SSTable the same way (table.CreateTable: ftruncate, then copy
// into an mmap). When the file system has no block for a page badger
// touches, the kernel answers the store with SIGBUS (tmpfs and ext4 alike)
// and the Go runtime dies inside valueLog.write: there is no error to
// return, and no recover, since the fault is on badger's goroutine. badger
// v4 has no option to write through write(2) (v2's FileIO loading mode is
// gone), and preallocating the sparse files would tie up twice their sizes.
// So the store never lets badger reach the end of the disk:
//
//   - Every write to the store passes a guard: a replica's group commit
//     (before anything is staged, so a refused write is not stored later
//     either), go-ds-crdt's merges of peers' deltas, DAG blocks and the
//     node's own keys (through the datastore that [Store.Datastore]
//     returns). The guard reads the data directory's free space (statfs:
//     afresh for a group commit; for the writes inside one, at most every
//     spaceRecheck, counting what it admitted since) and refuses with
//     [ErrDiskFull] when less than the reserve would remain.
//   - The reserve covers what badger may write on its own after the last
//     admitted write: flushing its full memtables to SSTables, a compaction,
//     the discard-stats file and the manifest.
//   - A ballast file (the size of one memtable and a bit) is kept
//     allocated beside the store. Free space below half the reserve means
//     something other than the store took it (the store stops at the
//     reserve): the ballast is then given back, so a flush already under
//     way has room. It is also given back before badger opens or closes on
//     a disk short of space (opening replays the write-ahead log into a new
//     memtable; closing flushes the memtable), and made again once space
//     returns.
//   - Value-log garbage collection (it rewrites live values before it
//     deletes a file) runs from the store's monitor, only while space allows.
//   - File systems under smallDisk get smaller memtables and value-log
//     files (see sizeFor), so the reserve is a fraction of the disk.
//
// What remains: another process that takes the last free bytes while a
// commit is under way can still make badger fault. The reserve makes that a
// race for the last reserve bytes rather than for the first one.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	ds "github.com/ipfs/go-datastore"
	badger4 "github.com/ipfs/go-ds-badger4"
)

const (
	// spaceRecheck is how long the guard trusts one statfs reading (with
	// what it admitted since) for the store's internal writes. A group
	// commit always reads the disk afresh.
	spaceRecheck = 5 * time.Millisecond
	// spaceMonitor is how often the store's monitor looks at the disk.
	spaceMonitor = time.Second
	// smallDisk: below this file-system size, badger's files are sized
	// from the disk rather than the defaults.
	smallDisk = 4 << 30
	// BallastFile is the name of the ballast file in the store directory.
	BallastFile = "examnode.ballast"
)

// statfsFunc reports the free (available to this user) and total bytes of
// the file system holding dir.
type statfsFunc func(dir string) (free, total uint64, err error)

func statfs(dir string) (free, total uint64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, fmt.Errorf("crdt: statfs %s: %w", dir, err)
	}
	return st.Bavail * uint64(st.Bsize), st.Blocks * uint64(st.Bsize), nil
}

// sizes are the badger file sizes the guard's reserve follows from.
type sizes struct {
	memTable, baseTable, vlogFile int64
	memTables                     int
}

// sizeFor chooses badger's file sizes for a file system of total bytes:
// the defaults (16 MiB memtables, 64 MiB value-log files) from smallDisk up;
// below, a sixteenth and an eighth of the disk, at least 4 and 8 MiB.
func sizeFor(total uint64, memTable int64) sizes {
	s := sizes{memTable: 16 << 20, baseTable: 4 << 20, vlogFile: 64 << 20, memTables: 3}
	if memTable > 0 {
		s.memTable = memTable
	} else if total > 0 && total < smallDisk {
		s.memTable = min(max(int64(total/16), 4<<20), 16<<20)
		s.vlogFile = min(max(int64(total/8), 8<<20), 64<<20)
		s.baseTable = max(s.memTable/4, 1<<20)
	}
	return s
}

// reserve is what badger may write without asking after the last admitted
// write: every memtable flushed to an SSTable, a compaction's new tables
// before the old ones go, the discard-stats file doubling and the manifest.
func (s sizes) reserve() uint64 {
	return uint64(int64(s.memTables)*s.memTable + 2*s.baseTable + 2<<20)
}

// ballast is the size of the ballast file: one memtable's flush and a bit.
func (s sizes) ballast() int64 { return s.memTable + 1<<20 }

// spaceGuard admits writes while the disk keeps the reserve free.
type spaceGuard struct {
	dir     string
	reserve uint64
	statfs  statfsFunc
	now     func() time.Time

	mu       sync.Mutex
	free     uint64    // at checked
	checked  time.Time // zero: read again
	admitted uint64    // bytes admitted since checked
	readErr  error

	full    atomic.Bool
	refused atomic.Uint64

	peerRefused uint64 // blocks from peers refused (peerspace.go); under mu
}

// SpaceStatus describes the data directory's disk as the guard sees it.
type SpaceStatus struct {
	Free    uint64 `json:"free_bytes"`
	Reserve uint64 `json:"reserve_bytes"`
	Full    bool   `json:"full"`
	Refused uint64 `json:"writes_refused"`
}

// admit accounts n bytes about to be written, or refuses them with
// ErrDiskFull if fewer than the reserve would remain free.
func (g *spaceGuard) admit(n uint64, fresh bool) error {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	if fresh || g.checked.IsZero() || now.Sub(g.checked) >= spaceRecheck || g.admitted+n > g.free/8 {
		g.read(now)
	}
	if g.readErr != nil {
		// A disk that cannot be asked is not a full one; badger reports
		// its own errors.
		return nil
	}
	if g.free < g.reserve+g.admitted+n {
		g.full.Store(true)
		g.refused.Add(1)
		if g.free < g.reserve {
			return fmt.Errorf("%w: %s has %s free, less than the %s the store keeps for its own work; "+
				"free space on that disk (writes resume by themselves; reads keep working)",
				ErrDiskFull, g.dir, mib(g.free), mib(g.reserve))
		}
		return fmt.Errorf("%w: %s has %s free beyond the %s the store keeps for its own work, and this write needs %s; "+
			"free space on that disk (writes resume by themselves; reads keep working)",
			ErrDiskFull, g.dir, mib(g.free-g.reserve), mib(g.reserve), mib(g.admitted+n))
	}
	g.full.Store(false)
	g.admitted += n
	return nil
}

func (g *spaceGuard) read(now time.Time) {
	g.free, _, g.readErr = g.statfs(g.dir)
	g.checked, g.admitted = now, 0
}

// status reads the disk now.
func (g *spaceGuard) status() SpaceStatus {
	g.mu.Lock()
	g.read(g.now())
	st := SpaceStatus{Free: g.free, Reserve: g.reserve, Full: g.free < g.reserve, Refused: g.refused.Load()}
	g.mu.Unlock()
	g.full.Store(st.Full)
	return st
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// writeSize estimates what badger writes for one key and value: the value
// log or the write-ahead log, then the SSTable a flush makes of it.
func writeSize(key string, value []byte) uint64 {
	return 2*uint64(len(key)+len(value)) + 64
}

// ballast keeps a file of size allocated in dir, to be given back when the
// disk runs out under the store.
type ballast struct {
	path string
	size int64
}

// present reports whether the ballast file is there.
func (b ballast) present() bool {
	st, err := os.Stat(b.path)
	return err == nil && st.Size() == b.size
}

// make allocates the ballast file; a file system without fallocate gets none.
func (b ballast) make() error {
	f, err := os.OpenFile(b.path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	err = syscall.Fallocate(int(f.Fd()), 0, 0, b.size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(b.path)
		return fmt.Errorf("crdt: ballast %s: %w", b.path, err)
	}
	return nil
}

func (b ballast) release() error {
	err := os.Remove(b.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// tend makes the ballast when there is room for it beyond the reserve, and
// gives it back when free space fell below half the reserve.
func (s *Store) tend() {
	st := s.guard.status()
	switch {
	case st.Free < st.Reserve/2:
		if s.ballast.present() {
			_ = s.ballast.release()
		}
	case st.Free >= st.Reserve+2*uint64(s.ballast.size):
		if !s.ballast.present() {
			_ = s.ballast.make()
		}
	}
}

// monitor tends the ballast and runs value-log garbage collection while
// space allows. It stops when s.ctx is cancelled.
func (s *Store) monitor(gcEvery time.Duration) {
	tick := time.NewTicker(spaceMonitor)
	defer tick.Stop()
	lastGC := time.Now()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
		}
		s.tend()
		if gcEvery > 0 && time.Since(lastGC) >= gcEvery {
			lastGC = time.Now()
			// GC rewrites up to half a value-log file before it deletes one.
			if s.guard.admit(uint64(s.sizes.vlogFile), true) == nil {
				_ = s.ds.CollectGarbage(s.ctx)
			}
		}
	}
}

// Space reports the data directory's free space, the reserve the store
// keeps, and whether writes are being refused. It is zero for an in-memory
// store.
func (s *Store) Space() SpaceStatus {
	if s.guard == nil {
		return SpaceStatus{}
	}
	return s.guard.status()
}

// admit lets n bytes be written, or refuses them with ErrDiskFull; it
// reads the disk afresh.
func (s *Store) admit(n uint64) error { return s.guard.admit(n, true) }

func ballastPath(dir string) string { return filepath.Join(dir, BallastFile) }

// guardedDS is the store's badger datastore with every write admitted by
// the space guard first. It keeps every other method (and so every
// interface) of badger4.Datastore.
type guardedDS struct {
	*badger4.Datastore
	g *spaceGuard
}

func (d *guardedDS) Put(ctx context.Context, k ds.Key, v []byte) error {
	if err := d.g.admit(writeSize(k.String(), v), false); err != nil {
		return err
	}
	return classify(d.Datastore.Put(ctx, k, v))
}

func (d *guardedDS) PutWithTTL(ctx context.Context, k ds.Key, v []byte, ttl time.Duration) error {
	if err := d.g.admit(writeSize(k.String(), v), false); err != nil {
		return err
	}
	return classify(d.Datastore.PutWithTTL(ctx, k, v, ttl))
}

func (d *guardedDS) Delete(ctx context.Context, k ds.Key) error {
	if err := d.g.admit(writeSize(k.String(), nil), false); err != nil {
		return err
	}
	return classify(d.Datastore.Delete(ctx, k))
}

func (d *guardedDS) Batch(ctx context.Context) (ds.Batch, error) {
	b, err := d.Datastore.Batch(ctx)
	if err != nil {
		return nil, err
	}
	return &guardedBatch{Batch: b, g: d.g}, nil
}

func (d *guardedDS) NewTransaction(ctx context.Context, readOnly bool) (ds.Txn, error) {
	t, err := d.Datastore.NewTransaction(ctx, readOnly)
	if err != nil || readOnly {
		return t, err
	}
	return &guardedTxn{Txn: t, g: d.g}, nil
}

// guardedBatch admits each staged write: badger's write batch may write
// while it is being filled, not only at Commit.
type guardedBatch struct {
	ds.Batch
	g *spaceGuard
}

func (b *guardedBatch) Put(ctx context.Context, k ds.Key, v []byte) error {
	if err := b.g.admit(writeSize(k.String(), v), false); err != nil {
		return err
	}
	return classify(b.Batch.Put(ctx, k, v))
}

func (b *guardedBatch) Delete(ctx context.Context, k ds.Key) error {
	if err := b.g.admit(writeSize(k.String(), nil), false); err != nil {
		return err
	}
	return classify(b.Batch.Delete(ctx, k))
}

func (b *guardedBatch) Commit(ctx context.Context) error { return classify(b.Batch.Commit(ctx)) }

type guardedTxn struct {
	ds.Txn
	g *spaceGuard
}

func (t *guardedTxn) Put(ctx context.Context, k ds.Key, v []byte) error {
	if err := t.g.admit(writeSize(k.String(), v), false); err != nil {
		return err
	}
	return classify(t.Txn.Put(ctx, k, v))
}

func (t *guardedTxn) Delete(ctx context.Context, k ds.Key) error {
	if err := t.g.admit(writeSize(k.String(), nil), false); err != nil {
		return err
	}
	return classify(t.Txn.Delete(ctx, k))
}
