package crdt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
	gocrdt "github.com/ipfs/go-ds-crdt"
	ipld "github.com/ipfs/go-ipld-format"

	"github.com/examnode/examnode/internal/heads"
	"github.com/examnode/examnode/schema"
)

// Broadcaster sends and receives head announcements for one organisation.
// It is go-ds-crdt's own two-method interface.
type Broadcaster interface {
	// Broadcast sends data to the other replicas of the organisation.
	Broadcast(ctx context.Context, data []byte) error
	// Next blocks until a payload arrives from another replica.
	Next(ctx context.Context) ([]byte, error)
}

// ErrNoMoreBroadcast tells a replica that its broadcaster has stopped.
var ErrNoMoreBroadcast = gocrdt.ErrNoMoreBroadcast

// Options configures one replica.
type Options struct {
	// Org is the organisation ID the replica holds.
	Org string
	// RebroadcastInterval is how often go-ds-crdt re-announces heads that it
	// has not seen announced by others. Heads are also exchanged directly
	// on connect (see the mesh package), so this is a backstop.
	RebroadcastInterval time.Duration
	// DAGSyncerTimeout bounds one attempt to fetch a DAG node. A failed
	// attempt is retried at the next announcement of the same head.
	DAGSyncerTimeout time.Duration
	// NumWorkers is the number of go-ds-crdt DAG-walking workers.
	NumWorkers int
	// MaxGroupRecords bounds how many records one group commit gathers.
	MaxGroupRecords int
	// GroupWindow is how long the committer waits for more writes after
	// the first one of a group. Zero means natural batching: a group is
	// whatever queued up while the previous group was being made durable.
	GroupWindow time.Duration
	// OnPut and OnDelete are called, from go-ds-crdt's goroutines, for every
	// local or replicated change that takes effect.
	OnPut    func(key string, value []byte)
	OnDelete func(key string)
	// Verify, when set, keeps a verified view (view.go): reads, the
	// hooks and Stats follow what policy accepts, not everything
	// go-ds-crdt merged. Nil: the replica is open (demo, benchmarks).
	Verify *VerifyOptions
}

// DefaultOptions returns the options for org that a daemon uses.
func DefaultOptions(org string) Options {
	return Options{
		Org:                 org,
		RebroadcastInterval: time.Minute,
		DAGSyncerTimeout:    30 * time.Second,
		NumWorkers:          4,
		MaxGroupRecords:     2000,
	}
}

func (o *Options) validate() error {
	if err := ValidateOrg(o.Org); err != nil {
		return err
	}
	d := DefaultOptions(o.Org)
	if o.RebroadcastInterval == 0 {
		o.RebroadcastInterval = d.RebroadcastInterval
	}
	if o.DAGSyncerTimeout == 0 {
		o.DAGSyncerTimeout = d.DAGSyncerTimeout
	}
	if o.NumWorkers == 0 {
		o.NumWorkers = d.NumWorkers
	}
	if o.MaxGroupRecords == 0 {
		o.MaxGroupRecords = d.MaxGroupRecords
	}
	switch {
	case o.RebroadcastInterval < 0, o.DAGSyncerTimeout < 0, o.GroupWindow < 0:
		return fmt.Errorf("crdt: negative interval in options for %s", o.Org)
	case o.NumWorkers < 0, o.MaxGroupRecords < 0:
		return fmt.Errorf("crdt: negative count in options for %s", o.Org)
	}
	return nil
}

// Deps are the replica's collaborators. The replica closes none of them.
type Deps struct {
	Store *Store
	// DAG stores and fetches DAG nodes (shared by every replica of a node).
	DAG ipld.DAGService
	// Broadcaster is nil for an offline replica.
	Broadcaster Broadcaster
	Logger      *slog.Logger
}

// Op is one write: a Put, or a Delete when Delete is true.
type Op struct {
	Key    string
	Value  []byte
	Delete bool
}

type writeReq struct {
	ops  []Op
	done chan error
}

// Replica is one organisation's CRDT datastore.
type Replica struct {
	org    string
	opts   Options
	store  *Store
	crdt   *gocrdt.Datastore
	view   *view // nil unless Options.Verify
	logger *slog.Logger

	writes chan *writeReq
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	closeOnce sync.Once
	closeErr  error

	groups      atomic.Uint64
	written     atomic.Uint64
	writeErrors atomic.Uint64
	lastCommit  atomic.Int64 // unix nanos

	omu       sync.Mutex
	own       []ownDelta // own deltas no peer is known to hold (inspect.go)
	forgotten int
}

// Namespace is where an organisation's CRDT state lives in the shared store.
func Namespace(org string) ds.Key { return ds.NewKey("/orgs").ChildString(org) }

// NewReplica opens (or creates) the replica for opts.Org.
func NewReplica(opts Options, deps Deps) (*Replica, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if deps.Store == nil || deps.DAG == nil {
		return nil, fmt.Errorf("crdt: replica %s needs a store and a DAG service", opts.Org)
	}
	logger := deps.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("org", opts.Org)

	copts := gocrdt.DefaultOptions()
	copts.Logger = slogAdapter{logger.With("component", "go-ds-crdt")}
	copts.RebroadcastInterval = opts.RebroadcastInterval
	copts.DAGSyncerTimeout = opts.DAGSyncerTimeout
	copts.NumWorkers = opts.NumWorkers
	copts.RepairInterval = time.Hour
	dag := deps.DAG
	var vw *view
	if opts.Verify != nil {
		// The view calls the hooks, for what it accepts.
		vw = newView(opts.Org, *opts.Verify, deps.Store.Datastore(), deps.DAG, logger, opts.OnPut, opts.OnDelete)
		dag = &observingDAG{DAGService: deps.DAG, v: vw}
	} else {
		if opts.OnPut != nil {
			f := opts.OnPut
			copts.PutHook = func(k ds.Key, v []byte) { f(k.String(), v) }
		}
		if opts.OnDelete != nil {
			f := opts.OnDelete
			copts.DeleteHook = func(k ds.Key) { f(k.String()) }
		}
	}

	var bc gocrdt.Broadcaster
	if deps.Broadcaster != nil {
		bc = captureBroadcaster{deps.Broadcaster}
	}
	cd, err := gocrdt.New(deps.Store.Datastore(), Namespace(opts.Org), dag, bc, copts)
	if err != nil {
		return nil, fmt.Errorf("crdt: open replica %s: %w", opts.Org, err)
	}
	if vw != nil {
		if err := vw.open(context.Background(), Namespace(opts.Org)); err != nil {
			return nil, errors.Join(fmt.Errorf("crdt: open the verified view of %s: %w", opts.Org, err), cd.Close())
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Replica{
		org:    opts.Org,
		opts:   opts,
		store:  deps.Store,
		crdt:   cd,
		view:   vw,
		logger: logger,
		writes: make(chan *writeReq, 4*opts.MaxGroupRecords),
		ctx:    ctx,
		cancel: cancel,
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.commitLoop()
	}()
	return r, nil
}

// Org is the organisation this replica holds.
func (r *Replica) Org() string { return r.org }

// Put writes one record and returns once it is durable.
func (r *Replica) Put(ctx context.Context, key string, value []byte) error {
	return r.Apply(ctx, []Op{{Key: key, Value: value}})
}

// Delete removes a record and returns once the removal is durable.
func (r *Replica) Delete(ctx context.Context, key string) error {
	return r.Apply(ctx, []Op{{Key: key, Delete: true}})
}

// Apply writes ops in one delta, together with whatever other writes are
// in flight, and returns once they are durable. If it returns an error, the
// ops were not acknowledged; they may still take effect later (a delta that
// failed to be published stays pending in go-ds-crdt and is published with
// the next group), so a caller retrying is always safe.
func (r *Replica) Apply(ctx context.Context, ops []Op) error {
	if len(ops) == 0 {
		return nil
	}
	for _, op := range ops {
		if err := ValidateKey(op.Key); err != nil {
			return err
		}
	}
	req := &writeReq{ops: ops, done: make(chan error, 1)}
	select {
	case r.writes <- req:
	case <-r.ctx.Done():
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.done:
		if err == nil && r.view != nil {
			// Read-your-writes: the view has decided the delta.
			err = r.view.wait(ctx)
		}
		return err
	case <-r.ctx.Done():
		// The committer commits what was queued before it exits; a request
		// that arrived after its last look was never committed.
		r.wg.Wait()
		select {
		case err := <-req.done:
			return err
		default:
			return ErrClosed
		}
	case <-ctx.Done():
		// The write may still become durable; the caller was not told so.
		return ctx.Err()
	}
}

// commitLoop is the single writer of the replica's go-ds-crdt batch: the
// batch's pending delta is shared by the whole datastore, so only one
// goroutine may build it.
func (r *Replica) commitLoop() {
	var group []*writeReq
	for {
		group = group[:0]
		select {
		case <-r.ctx.Done():
			r.commitQueued()
			return
		case req := <-r.writes:
			group = append(group, req)
		}
		n := len(group[0].ops)
		if r.opts.GroupWindow > 0 {
			timer := time.NewTimer(r.opts.GroupWindow)
		window:
			for n < r.opts.MaxGroupRecords {
				select {
				case req := <-r.writes:
					group = append(group, req)
					n += len(req.ops)
				case <-timer.C:
					break window
				}
			}
			timer.Stop()
		}
	drain:
		for n < r.opts.MaxGroupRecords {
			select {
			case req := <-r.writes:
				group = append(group, req)
				n += len(req.ops)
			default:
				break drain
			}
		}
		r.finish(group, n)
	}
}

// finish commits a group and answers every request in it.
func (r *Replica) finish(group []*writeReq, n int) {
	err := r.commit(group)
	if err != nil {
		r.writeErrors.Add(uint64(n))
	} else {
		r.groups.Add(1)
		r.written.Add(uint64(n))
		r.lastCommit.Store(time.Now().UnixNano())
	}
	for _, req := range group {
		req.done <- err
	}
}

// commitQueued commits, on Close, whatever writes are already queued, so a
// caller that got its write in is answered with its outcome.
func (r *Replica) commitQueued() {
	for {
		var group []*writeReq
		n := 0
	drain:
		for n < r.opts.MaxGroupRecords {
			select {
			case req := <-r.writes:
				group = append(group, req)
				n += len(req.ops)
			default:
				break drain
			}
		}
		if len(group) == 0 {
			return
		}
		r.finish(group, n)
	}
}

func (r *Replica) commit(group []*writeReq) error {
	// Writes in flight finish even while Close waits: Close cancels r.ctx
	// only after it stops accepting writes, so a background context here
	// never outlives the replica.
	col := &collector{}
	ctx := context.WithValue(context.Background(), collectorKey{}, col)
	// Refuse the whole group before anything is staged: a delta that
	// go-ds-crdt failed to publish would stay pending and be published with
	// a later group, so a refused write would appear after all. Each value
	// is written about twice (the delta block and the set's entry).
	var need uint64
	for _, req := range group {
		for _, op := range req.ops {
			need += 2 * writeSize(op.Key, op.Value)
		}
	}
	if err := r.store.admit(need); err != nil {
		return fmt.Errorf("crdt: %s: %w", r.org, err)
	}
	b, err := r.crdt.Batch(ctx)
	if err != nil {
		return err
	}
	for _, req := range group {
		for _, op := range req.ops {
			if op.Delete {
				err = b.Delete(ctx, ds.NewKey(op.Key))
			} else {
				err = b.Put(ctx, ds.NewKey(op.Key), op.Value)
			}
			if err != nil {
				return fmt.Errorf("crdt: %s: stage %s: %w", r.org, op.Key, classify(err))
			}
		}
	}
	if err := b.Commit(ctx); err != nil {
		return fmt.Errorf("crdt: %s: commit: %w", r.org, classify(err))
	}
	if err := r.store.Sync(ctx); err != nil {
		return fmt.Errorf("crdt: %s: sync: %w", r.org, err)
	}
	n := 0
	for _, req := range group {
		n += len(req.ops)
	}
	r.noteOwn(ctx, col, n)
	return nil
}

// Verified reports whether the replica keeps a verified view.
func (r *Replica) Verified() bool { return r.view != nil }

// Check is the sender's side of the rules: it decides key as every
// receiver's verified view will once value (signed, as it will be sent)
// arrives in a new delta from this node, beside the elements merged at
// key here, with this view's memberships, revocations and records
// (policy.Decide, the function receivers run). It returns nil if
// receivers would accept value, else the verdict (an error) by which they
// would refuse or park it. An open replica (no view) checks nothing.
func (r *Replica) Check(ctx context.Context, key string, value []byte) error {
	if r.view == nil {
		return nil
	}
	if err := ValidateKey(key); err != nil {
		return err
	}
	v, err := r.view.check(ctx, key, value)
	if err != nil || v == nil {
		return err
	}
	return v
}

// Get returns the value of key, or ErrNotFound. A verified replica
// answers from its view: the best value policy accepts.
func (r *Replica) Get(ctx context.Context, key string) ([]byte, error) {
	if r.view == nil {
		return r.GetRaw(ctx, key)
	}
	if err := ValidateKey(key); err != nil {
		return nil, err
	}
	v, err := r.view.get(ctx, key)
	if err == nil && v == nil {
		return nil, fmt.Errorf("%w: %s in %s", ErrNotFound, key, r.org)
	}
	return v, err
}

// GetRaw returns go-ds-crdt's value of key, whoever wrote it: what was
// merged, not what is valid. For inspection and tests.
func (r *Replica) GetRaw(ctx context.Context, key string) ([]byte, error) {
	if err := ValidateKey(key); err != nil {
		return nil, err
	}
	v, err := r.crdt.Get(ctx, ds.NewKey(key))
	if errors.Is(err, ds.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s in %s", ErrNotFound, key, r.org)
	}
	return v, err
}

// Has reports whether key is present.
func (r *Replica) Has(ctx context.Context, key string) (bool, error) {
	if err := ValidateKey(key); err != nil {
		return false, err
	}
	if r.view != nil {
		return r.store.Datastore().Has(ctx, r.view.valueKey(key))
	}
	return r.crdt.Has(ctx, ds.NewKey(key))
}

// Entry is one record of a listing.
type Entry struct {
	Key   string
	Value []byte
}

// List returns the records under prefix ("/" for all), in key order,
// skipping offset and returning at most limit (0: no limit). A verified
// replica lists its view.
func (r *Replica) List(ctx context.Context, prefix string, keysOnly bool, offset, limit int) ([]Entry, error) {
	if r.view == nil {
		return r.ListRaw(ctx, prefix, keysOnly, offset, limit)
	}
	base := r.view.base + "/v"
	p := base
	if prefix != "" && prefix != "/" {
		p = base + ds.NewKey(prefix).String()
	}
	res, err := r.store.Datastore().Query(ctx, query.Query{
		Prefix: p, KeysOnly: keysOnly, Orders: []query.Order{query.OrderByKey{}}, Offset: offset, Limit: limit,
	})
	if err != nil {
		return nil, err
	}
	return entries(res, base)
}

// entries collects a query's results, each key without prefix.
func entries(res query.Results, prefix string) ([]Entry, error) {
	defer res.Close()
	var out []Entry
	for e := range res.Next() {
		if e.Error != nil {
			return nil, e.Error
		}
		out = append(out, Entry{Key: strings.TrimPrefix(e.Key, prefix), Value: e.Value})
	}
	return out, nil
}

// Refusals lists, for a verified replica, the elements its view refused
// or parked (at most limit; 0: all), by key.
func (r *Replica) Refusals(ctx context.Context, limit int) ([]Refusal, error) {
	if r.view == nil {
		return []Refusal{}, nil
	}
	return r.view.refusals(ctx, limit)
}

// ListRaw lists go-ds-crdt's values, whoever wrote them (see GetRaw).
func (r *Replica) ListRaw(ctx context.Context, prefix string, keysOnly bool, offset, limit int) ([]Entry, error) {
	res, err := r.crdt.Query(ctx, query.Query{
		Prefix:   prefix,
		KeysOnly: keysOnly,
		Orders:   []query.Order{query.OrderByKey{}},
		Offset:   offset,
		Limit:    limit,
	})
	if err != nil {
		return nil, err
	}
	return entries(res, "")
}

// Count returns how many records the replica holds under prefix (a
// verified replica: in its view).
//
// It scans keys only. go-ds-crdt's own keys-only query still reads every
// value; here the count comes from the set's layout in the store: a record
// is present exactly when its "<ns>/s/k/<key>/v" entry exists (tombstoning
// removes or replaces it). TestCountMatchesQuery guards that layout
// against a go-ds-crdt upgrade.
func (r *Replica) Count(ctx context.Context, prefix string) (int, error) {
	if r.view != nil {
		return r.countView(ctx, prefix)
	}
	keys := Namespace(r.org).ChildString("s").ChildString("k")
	p := keys.String()
	if prefix != "" && prefix != "/" {
		p = keys.Child(ds.NewKey(prefix)).String()
	}
	return r.countKeys(ctx, p, func(k string) bool { return strings.HasSuffix(k, "/v") })
}

// countKeys counts the store's keys under prefix for which keep holds
// (keys only: values are not read).
func (r *Replica) countKeys(ctx context.Context, prefix string, keep func(key string) bool) (int, error) {
	res, err := r.store.Datastore().Query(ctx, query.Query{Prefix: prefix, KeysOnly: true})
	if err != nil {
		return 0, err
	}
	defer res.Close()
	n := 0
	for e := range res.Next() {
		if e.Error != nil {
			return n, e.Error
		}
		if keep(e.Key) {
			n++
		}
	}
	return n, nil
}

// countView counts the records of a verified replica's view (reserved
// keys are not records).
func (r *Replica) countView(ctx context.Context, prefix string) (int, error) {
	base := r.view.base + "/v"
	p := base
	if prefix != "" && prefix != "/" {
		p = base + ds.NewKey(prefix).String()
	}
	return r.countKeys(ctx, p, func(k string) bool { return !IsReserved(strings.TrimPrefix(k, base)) })
}

// Stats describes a replica's replication state.
type Stats struct {
	Org         string    `json:"org"`
	Heads       []string  `json:"heads"`
	MaxHeight   uint64    `json:"max_height"`
	QueuedJobs  int       `json:"queued_jobs"`
	Dirty       bool      `json:"dirty"`
	Groups      uint64    `json:"groups_committed"`
	Written     uint64    `json:"records_written"`
	WriteErrors uint64    `json:"write_errors"`
	LastCommit  time.Time `json:"last_commit,omitzero"`
	// Verified: the replica keeps a verified view; RecordsRefused counts
	// the values it refuses now, by reason (the Reason* codes);
	// RecordsParked those waiting for a membership or an execution.
	Verified       bool              `json:"verified"`
	RecordsRefused map[string]uint64 `json:"records_refused,omitempty"`
	RecordsParked  int               `json:"records_parked,omitempty"`
}

// Stats reports the replica's heads, height, queue and write counters.
func (r *Replica) Stats(ctx context.Context) Stats {
	in := r.crdt.InternalStats(ctx)
	st := Stats{
		Org:         r.org,
		MaxHeight:   in.MaxHeight,
		QueuedJobs:  in.QueuedJobs,
		Dirty:       r.crdt.IsDirty(ctx),
		Groups:      r.groups.Load(),
		Written:     r.written.Load(),
		WriteErrors: r.writeErrors.Load(),
	}
	for _, h := range in.Heads {
		st.Heads = append(st.Heads, h.String())
	}
	if t := r.lastCommit.Load(); t != 0 {
		st.LastCommit = time.Unix(0, t)
	}
	if r.view != nil {
		st.Verified = true
		st.RecordsRefused, st.RecordsParked = r.view.counts()
	}
	return st
}

// Heads returns the replica's current heads.
func (r *Replica) Heads(ctx context.Context) []cid.Cid {
	return r.crdt.InternalStats(ctx).Heads
}

// HeadsAnnouncement encodes the replica's current heads in go-ds-crdt's
// broadcast format, for a direct heads exchange with a peer.
func (r *Replica) HeadsAnnouncement(ctx context.Context) ([]byte, error) {
	return EncodeHeads(r.Heads(ctx))
}

// EncodeHeads encodes heads in go-ds-crdt's broadcast format (the one
// codec is internal/heads, which the mesh uses too).
func EncodeHeads(hs []cid.Cid) ([]byte, error) { return heads.Encode(hs) }

// DecodeHeads decodes a go-ds-crdt broadcast into its heads.
func DecodeHeads(data []byte) ([]cid.Cid, error) {
	hs, err := heads.Decode(data)
	if err != nil {
		return nil, fmt.Errorf("crdt: %w", err)
	}
	return hs, nil
}

// Close stops accepting writes, answers the queued ones, and closes the
// go-ds-crdt datastore. The broadcaster must already be stopped (its Next
// must return), or go-ds-crdt's Close waits on it. Close is safe twice.
func (r *Replica) Close() error {
	r.closeOnce.Do(func() {
		r.cancel()
		r.wg.Wait()
		r.closeErr = r.crdt.Close()
		if r.view != nil {
			r.view.close() // after go-ds-crdt: nothing more is observed
		}
	})
	return r.closeErr
}

// ValidateOrg checks an organisation ID with the one rule of organisation
// IDs, schema.ValidateOrgID (1 to 64 characters of letters, digits, '.',
// '_' and '-', and not "." or ".."); the error wraps ErrBadOrg and the
// schema's *ValidationError.
func ValidateOrg(org string) error {
	if err := schema.ValidateOrgID(org); err != nil {
		return fmt.Errorf("%w %q: %w", ErrBadOrg, org, err)
	}
	return nil
}

// ValidateKey checks a record key: it starts with '/', is clean (no empty,
// "." or ".." segments, no trailing '/'), and is at most 512 bytes.
func ValidateKey(key string) error {
	if len(key) < 2 || len(key) > 512 || key[0] != '/' || ds.NewKey(key).String() != key {
		return fmt.Errorf("%w %q: keys look like /kind/id", ErrBadKey, key)
	}
	for _, seg := range strings.Split(key[1:], "/") {
		if seg == "." || seg == ".." || !validChars(seg) {
			return fmt.Errorf("%w %q: segment %q: use letters, digits, '.', '_' or '-'", ErrBadKey, key, seg)
		}
	}
	return nil
}

func validChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}
