// Package crdt holds one replica per organisation: a go-ds-crdt datastore
// under the organisation's own namespace of one shared badger database,
// synchronised through a DAG service (boxo bitswap + blockservice +
// merkledag) and a Broadcaster that the caller supplies.
//
// The package does not import gossipsub: the network boundary is the
// two-method Broadcaster, as in go-ds-crdt itself. The mesh package supplies
// gossipsub; tests supply channels.
//
// # What an acknowledged write means
//
// The badger database runs with SyncWrites off. Writes to a replica go
// through a group committer: concurrent writes are gathered into one
// go-ds-crdt delta, the delta is applied, then the whole database is
// fsynced once, and only then is every caller in the group answered. An
// acknowledged write therefore survives a crash of the process or the
// machine; a write that was not yet acknowledged may be lost, and its caller
// was told nothing. One delta and one fsync per group, not per record, is
// what makes durable writes fast.
//
// # Gated replicas: the verified view
//
// go-ds-crdt merges any delta a connected peer announces and cannot refuse
// one. A replica opened with Options.Verify (a node with an authority)
// therefore keeps go-ds-crdt's state as the record of what was merged,
// and serves reads, hooks and counters from a verified view beside it:
// every delta go-ds-crdt reads or writes through its DAG service is also
// decided by policy (signature, membership, revocation, replay, who may
// write what), and each key shows the best valid value, so a forged value
// that wins in go-ds-crdt's order changes nothing the node serves. Why
// this design, and its costs, are in view.go; the rule for one key is
// policy.Decide. GetRaw and ListRaw still read go-ds-crdt's state.
//
// # Layout of the shared database
//
//	/blocks/...          DAG blocks of every organisation (content-addressed)
//	/blockorgs/<mh>/<org> which organisations each block belongs to (blockindex.go);
//	                     a block goes only to peers that may read one of them
//	/blockindexed/<org>  the organisation's blocks written before the index are indexed
//	/orgs/<org>/...      the go-ds-crdt state of one organisation
//	/view/<org>/...      a gated replica's verified view (local, see view.go)
//	/node/...            node metadata (see the node package)
package crdt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/ipfs/boxo/blockstore"
	ds "github.com/ipfs/go-datastore"
	badger4 "github.com/ipfs/go-ds-badger4"
)

// Errors returned by this package.
var (
	ErrClosed     = errors.New("crdt: replica closed")
	ErrBadOrg     = errors.New("crdt: invalid organisation ID")
	ErrBadKey     = errors.New("crdt: invalid key")
	ErrNotFound   = errors.New("crdt: not found")
	ErrStoreInUse = errors.New("crdt: store is in use by another process")
	ErrDiskFull   = errors.New("crdt: no space left on the data directory's disk")
	// ErrWrongStoreKey: the store was encrypted with another key, or not
	// encrypted while a key was given, or encrypted while none was given.
	ErrWrongStoreKey = errors.New("crdt: the encryption key does not match the store")
	// ErrBadStoreKey: an encryption key of a length AES does not take.
	ErrBadStoreKey = errors.New("crdt: an encryption key must be 16, 24 or 32 bytes")
)

// StoreOptions configures the shared badger database.
type StoreOptions struct {
	// InMemory keeps nothing on disk (for unit tests of logic only).
	InMemory bool
	// EncryptionKey, when set (16, 24 or 32 bytes), encrypts the database
	// at rest with badger's AES encryption (AES-CTR over every table and
	// value-log entry, with data keys badger rotates and keeps encrypted
	// under this key in its KEYREGISTRY file). A store keeps the
	// encryption it was created with: opening it with another key, with a
	// key when it was created without, or without one when it was created
	// with one, fails with ErrWrongStoreKey.
	EncryptionKey []byte
	// GCInterval is how often badger's value log is garbage-collected.
	// Zero disables it.
	GCInterval time.Duration
	// MemTableSize is badger's memtable size in bytes (default 16 MiB, or
	// a sixteenth of a file system under 4 GiB: see space.go).
	// Many small nodes in one process (the scale benchmark) use less.
	MemTableSize int64
}

// DefaultStoreOptions returns the options a daemon uses.
func DefaultStoreOptions() StoreOptions {
	return StoreOptions{GCInterval: 15 * time.Minute}
}

// Store is the one badger database of a node, shared by every replica and
// by the block store.
type Store struct {
	ds      *guardedDS
	blocks  blockstore.Blockstore
	dir     string
	guard   *spaceGuard // nil in memory
	ballast ballast
	sizes   sizes

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// OpenStore opens (or creates) the badger database in dir.
func OpenStore(dir string, opts StoreOptions) (*Store, error) {
	var total uint64
	var guard *spaceGuard
	if !opts.InMemory {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("crdt: create store directory: %w", classify(err))
		}
		var err error
		if _, total, err = statfs(dir); err != nil {
			return nil, err
		}
	}
	sz := sizeFor(total, opts.MemTableSize)
	bal := ballast{path: ballastPath(dir), size: sz.ballast()}
	if !opts.InMemory {
		guard = &spaceGuard{dir: dir, reserve: sz.reserve(), statfs: statfs, now: time.Now}
		// Opening replays the write-ahead logs into a new memtable: on a
		// disk short of space, give badger the ballast first.
		if st := guard.status(); st.Free < st.Reserve {
			_ = bal.release()
		}
	}
	bopts := badger4.DefaultOptions
	// Value-log GC runs from the store's monitor, only while space allows.
	bopts.GcInterval = 0
	bopts.GcSleep = 0
	bopts.SyncWrites = false // durability comes from the group committer's Sync
	// Small tables and memtables: a central host holds hundreds of
	// organisations in this one database, and a VM is a small machine.
	bopts.Options = bopts.Options.
		WithMemTableSize(16 << 20).
		WithBaseTableSize(4 << 20).
		WithValueLogFileSize(sz.vlogFile).
		WithNumMemtables(3).
		WithNumLevelZeroTables(3).
		WithNumLevelZeroTablesStall(8).
		WithBlockCacheSize(32 << 20).
		WithIndexCacheSize(16 << 20).
		WithCompression(options.ZSTD).
		// Values over 512 bytes (record bodies, DAG blocks) go to the value
		// log, so compactions move keys and pointers, not data: at 100,000
		// records of 1 KiB this cut peak heap from 2.6 GiB (badger's
		// default threshold of 1 MiB keeps every value in the LSM tree) to
		// 205 MiB, and catch-up time from 14.0 s to 3.8 s.
		WithValueThreshold(512).
		WithNumCompactors(2).
		WithLoggingLevel(badger.WARNING)
	if sz.memTable != 16<<20 {
		bopts.Options = bopts.Options.
			WithMemTableSize(sz.memTable).
			WithBaseTableSize(sz.baseTable).
			// badger refuses a value threshold above its batch bound (15% of a memtable).
			WithValueThreshold(min(512, sz.memTable/10)).
			WithBlockCacheSize(sz.memTable).
			WithIndexCacheSize(sz.memTable / 2)
	}
	if opts.InMemory {
		// In memory there is no value log: badger v4.5.1 still sends values
		// above its value threshold there and panics (index out of range in
		// writeToLSM), so keep every value up to badger's maximum (1 MiB)
		// in the LSM tree.
		bopts.Options = bopts.Options.WithInMemory(true).WithValueThreshold(1 << 20)
		dir = ""
	}
	if len(opts.EncryptionKey) > 0 {
		switch len(opts.EncryptionKey) {
		case 16, 24, 32:
		default:
			return nil, fmt.Errorf("%w, got %d", ErrBadStoreKey, len(opts.EncryptionKey))
		}
		// badger keeps decrypted table indexes only in its index cache:
		// without one it decrypts an index on every read.
		if bopts.Options.IndexCacheSize <= 0 {
			bopts.Options = bopts.Options.WithIndexCacheSize(16 << 20)
		}
		bopts.Options = bopts.Options.WithEncryptionKey(opts.EncryptionKey)
	}
	if !opts.InMemory {
		if err := checkStoreKey(dir, opts.EncryptionKey); err != nil {
			return nil, err
		}
	}
	d, err := badger4.NewDatastore(dir, &bopts)
	if err != nil {
		if isLockErr(err) {
			return nil, fmt.Errorf("%w: %s (is another examnode running on this data directory?)", ErrStoreInUse, filepath.Clean(dir))
		}
		if errors.Is(err, badger.ErrEncryptionKeyMismatch) {
			return nil, fmt.Errorf("%w: %s", ErrWrongStoreKey, filepath.Clean(dir))
		}
		return nil, fmt.Errorf("crdt: open store %s: %w", dir, classify(err))
	}
	gd := &guardedDS{Datastore: d, g: guard}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Store{
		ds:      gd,
		blocks:  blockstore.NewBlockstore(gd),
		dir:     dir,
		guard:   guard,
		ballast: bal,
		sizes:   sz,
		ctx:     ctx,
		cancel:  cancel,
	}
	if guard != nil {
		s.tend()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.monitor(opts.GCInterval)
		}()
	}
	return s, nil
}

// checkStoreKey checks key against the store's key registry before badger
// opens the store: badger's Open, failing on a wrong key, leaves two of
// its goroutines running (badger v4.5.1's cleanup does not stop them),
// where reading the registry read-only starts none.
func checkStoreKey(dir string, key []byte) error {
	kr, err := badger.OpenKeyRegistry(badger.KeyRegistryOptions{Dir: dir, ReadOnly: true, EncryptionKey: key})
	if errors.Is(err, badger.ErrEncryptionKeyMismatch) {
		return fmt.Errorf("%w: %s", ErrWrongStoreKey, filepath.Clean(dir))
	}
	if err != nil {
		return fmt.Errorf("crdt: open store %s: read its key registry: %w", dir, err)
	}
	return kr.Close()
}

// Datastore is the raw shared datastore. Callers namespace their keys.
func (s *Store) Datastore() ds.Batching { return s.ds }

// Blockstore holds every organisation's DAG blocks.
func (s *Store) Blockstore() blockstore.Blockstore { return s.blocks }

// Sync makes every write so far durable (one fsync of the whole database).
func (s *Store) Sync(ctx context.Context) error {
	if s.dir == "" {
		return nil // in memory: nothing to sync (badger's Sync would panic on its missing WAL)
	}
	return classify(s.ds.Sync(ctx, ds.NewKey("/")))
}

// DiskUsage reports the database's size on disk in bytes.
func (s *Store) DiskUsage(ctx context.Context) (uint64, error) {
	return s.ds.DiskUsage(ctx)
}

// Close closes the database. Every replica using it must be closed first.
// Close is safe to call twice.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		s.wg.Wait()
		// Closing flushes the memtable to an SSTable: on a disk short of
		// space, give badger the ballast first.
		if s.guard != nil {
			if st := s.guard.status(); st.Free < st.Reserve {
				_ = s.ballast.release()
			}
		}
		s.closeErr = s.ds.Close()
	})
	return s.closeErr
}
