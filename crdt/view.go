package crdt

// The verified view of a gated replica.
//
// go-ds-crdt merges every delta a connected peer announces: it has no
// hook that could refuse one, and a refused delta could not be left out
// of the DAG anyway (later deltas link to it). So a gated replica leaves
// go-ds-crdt's own state alone, as a record of what was merged, and keeps
// beside it a view of what is valid, which every read serves:
//
//   - Observation. go-ds-crdt reads each delta it merges through the DAG
//     service it was given (Get, GetMany, a session), and writes each
//     local delta through it (Add). The replica hands it a wrapper that
//     also decodes every such delta and queues its elements (key, value,
//     block, priority) and tombstones for the verifier. Nothing else is
//     done in go-ds-crdt's goroutines; they wait only while the queue
//     holds maxQueuedElems elements (a catch-up merges faster than the
//     view verifies). (The PutHook alone would not do: it
//     fires only when an element wins in go-ds-crdt's order, so a
//     legitimate value that arrives after a forged one of higher priority
//     would never be seen.)
//   - Verification. One goroutine per replica (owned by it, stopped by
//     Close) indexes the queued elements and decides every key they touch
//     with policy.Decide (policy/element.go), the one rule engine, which
//     senders run too (Replica.Check): signature, membership, revocation,
//     replay, the write rules of policy.MayWrite and the record rules.
//     The view's value of a key is the best valid element, chosen as
//     go-ds-crdt chooses among all of them, so nodes holding the same
//     deltas show the same view; a forged value that wins in go-ds-crdt's
//     order changes nothing the API serves.
//   - Refused elements are kept aside, with their reason, locally (never
//     replicated), and counted per reason (Stats.Refused). An element whose
//     writer's membership or whose execution has not arrived yet is parked
//     and decided again when that key changes in the view. A revocation
//     that arrives decides again every key the revoked membership signed
//     at.
//   - Persistence. The index and the view live in the node's badger store
//     under /view/<org>/ (layout below), written without fsync: on open,
//     every element in go-ds-crdt's element index whose delta the view has
//     not marked done is queued again, so a crash loses nothing.
//
// The price is that values are stored twice (in go-ds-crdt's state and the
// view's index), and a local write is acknowledged only once the view has
// decided it (Apply waits), so that a read after a write sees it.
//
// Deletions: go-ds-crdt's tombstones carry no signature, so the view
// ignores them (a modified member could otherwise erase exam evidence or
// central data). A gated node deletes by writing, in the same delta as the
// tombstones, a signed deletion at DeletionKey(key); the view honours
// that (policy.Decide).
//
// Layout, under /view/<org> (one value per key and list, so deciding a key
// costs point lookups, and one round of decisions one badger batch):
//
//	/e<key>                 the elements merged at <key>: block, priority, value
//	/t<key>                 the blocks whose element at <key> is tombstoned
//	/b/<block>              the delta is indexed and decided
//	/v<key>                 the view: the best valid value
//	/r/<esc key>            the refused and parked elements of <key> (JSON)
//	/d<dep key>             the keys parked until <dep key> changes
//	/w/<serial>/<esc key>   membership <serial> signed an element at <key>
//
// <esc key> is the key without its leading '/', with '/' written '~'.
// Deciding a key reads all its elements, so a key rewritten many times
// (an execution's versions) costs more to decide with each version.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	dshelp "github.com/ipfs/boxo/datastore/dshelp"
	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
	"github.com/ipfs/go-ds-crdt/pb"
	ipld "github.com/ipfs/go-ipld-format"
	"google.golang.org/protobuf/proto"

	"github.com/examnode/examnode/policy"
	"github.com/examnode/examnode/schema"
)

// VerifyOptions turns a replica's verified view on (a gated node).
type VerifyOptions struct {
	// Trust is what the node trusts: network, authority key, clock skew.
	Trust policy.Trust
	// Now is the clock; time.Now if nil.
	Now func() time.Time
	// OnRevocation is called, from the verifier goroutine, for every
	// revocation the view holds: at open for those already stored, then
	// as they arrive.
	OnRevocation func(policy.Revocation)
}

// Refusal is an element the view refused or parked.
type Refusal struct {
	Key       string    `json:"key"`
	Block     string    `json:"block"`
	Priority  uint64    `json:"priority"`
	Parked    bool      `json:"parked,omitempty"`
	Reason    string    `json:"reason"`
	Error     string    `json:"error"`
	Writer    string    `json:"writer,omitempty"`
	Serial    string    `json:"serial,omitempty"`
	Seq       uint64    `json:"seq,omitempty"`
	DecidedAt time.Time `json:"decided_at"`
}

// observed is one delta seen going through the DAG service.
type observed struct {
	block string
	prio  uint64
	elems []*pb.Element
	tombs []*pb.Element
}

type view struct {
	org   string
	opts  VerifyOptions
	store ds.Datastore
	dag   ipld.DAGService // the unwrapped DAG service
	base  string          // /view/<org>
	log   *slog.Logger

	onPut    func(key string, value []byte)
	onDelete func(key string)

	mu          sync.Mutex
	queue       []observed
	queuedElems int
	running     bool // the verifier runs (enqueue may wait for it)
	enqueued    uint64
	done        uint64
	progress    chan struct{} // closed and replaced when done advances
	wake        chan struct{}

	// Owned by the verifier goroutine (and open, before it starts),
	// which changes them under tmu; Check reads them under tmu too.
	// Counts are read under mu.
	tmu     sync.RWMutex
	members map[policy.Serial]policy.Membership
	revs    policy.RevocationSet
	refused map[string]uint64 // reason -> elements refused now
	parked  int

	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	stopped chan struct{} // closed when the verifier has returned
}

func blockID(c cid.Cid) string {
	return strings.TrimPrefix(dshelp.MultihashToDsKey(c.Hash()).String(), "/")
}

func newView(org string, opts VerifyOptions, store ds.Datastore, dag ipld.DAGService, log *slog.Logger, onPut func(string, []byte), onDelete func(string)) *view {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if onPut == nil {
		onPut = func(string, []byte) {}
	}
	if onDelete == nil {
		onDelete = func(string) {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &view{
		org: org, opts: opts, store: store, dag: dag, base: "/view/" + org, log: log,
		onPut: onPut, onDelete: onDelete,
		progress: make(chan struct{}), wake: make(chan struct{}, 1),
		members: map[policy.Serial]policy.Membership{}, refused: map[string]uint64{},
		ctx: ctx, cancel: cancel, stopped: make(chan struct{}),
	}
}

func (v *view) k(parts ...string) ds.Key {
	return ds.RawKey(v.base + "/" + strings.Join(parts, "/"))
}

// key helpers: record keys start with '/'.
func (v *view) valueKey(key string) ds.Key { return ds.RawKey(v.base + "/v" + key) }
func esc(key string) string                { return strings.ReplaceAll(strings.TrimPrefix(key, "/"), "/", "~") }
func unesc(s string) string                { return "/" + strings.ReplaceAll(s, "~", "/") }

// observe decodes nd as a go-ds-crdt delta and queues it. It runs in
// go-ds-crdt's goroutines; it waits only while the queue is full.
func (v *view) observe(nd ipld.Node) {
	pn, ok := nd.(*merkledag.ProtoNode)
	if !ok {
		return
	}
	var d pb.Delta
	if err := proto.Unmarshal(pn.Data(), &d); err != nil {
		v.log.Warn("verified view: a DAG node is not a delta", "block", nd.Cid(), "err", err)
		return
	}
	if len(d.Elements) == 0 && len(d.Tombstones) == 0 {
		return
	}
	v.enqueue(observed{block: blockID(nd.Cid()), prio: d.Priority, elems: d.Elements, tombs: d.Tombstones})
}

// maxQueuedElems bounds the elements waiting for the verifier: beyond it,
// go-ds-crdt's goroutines wait (a catch-up merges faster than the view
// verifies, and queued deltas hold their values in memory).
// A variable so that a test can exercise the wait with a small history.
var maxQueuedElems = 20000

func (v *view) enqueue(o observed) {
	v.mu.Lock()
	for v.running && v.queuedElems >= maxQueuedElems {
		ch := v.progress
		v.mu.Unlock()
		select {
		case <-ch:
		case <-v.stopped:
		}
		v.mu.Lock()
		if !v.running {
			break
		}
	}
	v.queue = append(v.queue, o)
	v.queuedElems += len(o.elems) + len(o.tombs)
	v.enqueued++
	v.mu.Unlock()
	select {
	case v.wake <- struct{}{}:
	default:
	}
}

// wait returns once every delta observed before it was called is decided.
func (v *view) wait(ctx context.Context) error {
	v.mu.Lock()
	target := v.enqueued
	v.mu.Unlock()
	for {
		v.mu.Lock()
		done, ch := v.done, v.progress
		v.mu.Unlock()
		if done >= target {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-v.stopped:
			return ErrClosed
		}
	}
}

// open loads memberships, revocations and counters, queues what a crash
// may have left undecided (raw is go-ds-crdt's namespace), and starts the
// verifier.
func (v *view) open(ctx context.Context, raw ds.Key) error {
	for _, e := range v.scan(ctx, v.base+"/v"+MembershipsPrefix+"/", false) {
		if m, err := policy.DecodeMembership(e.Value); err == nil {
			v.addMember(m)
		}
	}
	for _, e := range v.scan(ctx, v.base+"/v"+RevocationsPrefix+"/", false) {
		v.addRevocation(e.Value)
	}
	for _, e := range v.scan(ctx, v.base+"/r/", false) {
		var rs []Refusal
		if json.Unmarshal(e.Value, &rs) == nil {
			for _, r := range rs {
				v.count(r, 1)
			}
		}
	}
	if err := v.recover(ctx, raw); err != nil {
		return err
	}
	v.mu.Lock()
	v.running = true
	v.mu.Unlock()
	v.wg.Add(1)
	go func() {
		defer v.wg.Done()
		defer close(v.stopped)
		defer func() {
			v.mu.Lock()
			v.running = false
			v.mu.Unlock()
		}()
		v.run()
	}()
	return nil
}

// recover queues the deltas of elements go-ds-crdt merged but the view
// has not marked done, and applies tombstones the view does not hold.
func (v *view) recover(ctx context.Context, raw ds.Key) error {
	elems := raw.ChildString("s").ChildString("s").String() + "/"
	blocks := map[string]bool{}
	for _, e := range v.scan(ctx, elems, true) {
		i := strings.LastIndexByte(e.Key, '/')
		b := e.Key[i+1:]
		if _, ok := blocks[b]; ok {
			continue
		}
		has, _ := v.store.Has(ctx, v.k("b", b))
		blocks[b] = !has
	}
	n := 0
	for b, todo := range blocks {
		if !todo {
			continue
		}
		mh, err := dshelp.DsKeyToMultihash(ds.NewKey(b))
		if err != nil {
			continue
		}
		gctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		nd, err := v.dag.Get(gctx, cid.NewCidV1(cid.DagProtobuf, mh))
		cancel()
		if err != nil {
			v.log.Warn("verified view: a merged delta is missing from the block store", "block", b, "err", err)
			continue
		}
		v.observe(nd)
		n++
	}
	tombs := raw.ChildString("s").ChildString("t").String()
	var missing []*pb.Element
	held := map[string]map[string]bool{}
	for _, e := range v.scan(ctx, tombs+"/", true) {
		rest := strings.TrimPrefix(e.Key, tombs)
		i := strings.LastIndexByte(rest, '/')
		key, b := rest[:i], rest[i+1:]
		if held[key] == nil {
			held[key] = map[string]bool{}
			list, _ := v.store.Get(ctx, v.tombKey(key))
			for _, t := range decodeTombs(list) {
				held[key][t] = true
			}
		}
		if !held[key][b] {
			missing = append(missing, &pb.Element{Key: key, Id: b})
		}
	}
	if len(missing) > 0 {
		v.enqueue(observed{block: "recovered-tombstones", tombs: missing})
	}
	if n > 0 || len(missing) > 0 {
		v.log.Info("verified view: deciding deltas left undecided by the last run", "deltas", n, "tombstones", len(missing))
	}
	return nil
}

func (v *view) scan(ctx context.Context, prefix string, keysOnly bool) []query.Entry {
	res, err := v.store.Query(ctx, query.Query{Prefix: prefix, KeysOnly: keysOnly})
	if err != nil {
		v.log.Error("verified view: scan", "prefix", prefix, "err", err)
		return nil
	}
	defer res.Close()
	var out []query.Entry
	for r := range res.Next() {
		if r.Error != nil {
			v.log.Error("verified view: scan", "prefix", prefix, "err", r.Error)
			return out
		}
		out = append(out, r.Entry)
	}
	return out
}

func (v *view) close() {
	v.cancel()
	v.wg.Wait()
}

// run is the verifier. On close it decides what is still queued (the
// replica closes go-ds-crdt first, so nothing more arrives), then returns.
func (v *view) run() {
	for {
		stopping := false
		select {
		case <-v.ctx.Done():
			stopping = true
		case <-v.wake:
		}
		v.mu.Lock()
		batch := v.queue
		v.queue, v.queuedElems = nil, 0
		v.mu.Unlock()
		if len(batch) > 0 {
			if err := v.process(context.Background(), batch); err != nil {
				// The store failed: what was not marked done is
				// decided again at the next open.
				v.log.Error("verified view: deciding deltas", "err", err)
			}
		}
		if stopping {
			return
		}
		v.mu.Lock()
		v.done += uint64(len(batch))
		close(v.progress)
		v.progress = make(chan struct{})
		v.mu.Unlock()
	}
}

// vtx gathers one round's writes and serves reads through them, so a
// round costs one badger batch and reads are point lookups.
type vtx struct {
	store   ds.Datastore
	pending map[string][]byte // nil value: deleted
}

func (t *vtx) get(ctx context.Context, k ds.Key) ([]byte, error) {
	if v, ok := t.pending[k.String()]; ok {
		return v, nil
	}
	b, err := t.store.Get(ctx, k)
	if errors.Is(err, ds.ErrNotFound) {
		return nil, nil
	}
	return b, err
}

func (t *vtx) put(k ds.Key, v []byte) {
	if v == nil {
		v = []byte{}
	}
	t.pending[k.String()] = v
}

func (t *vtx) del(k ds.Key) { t.pending[k.String()] = nil }

func (t *vtx) commit(ctx context.Context) error {
	b, err := t.store.(ds.Batching).Batch(ctx)
	if err != nil {
		return err
	}
	for k, v := range t.pending {
		if v == nil {
			err = b.Delete(ctx, ds.RawKey(k))
		} else {
			err = b.Put(ctx, ds.RawKey(k), v)
		}
		if err != nil {
			return err
		}
	}
	return b.Commit(ctx)
}

// Per-key lists, each one value: the elements of a key, its tombstoned
// blocks, its refusals, and the keys parked on it.
func (v *view) elemsKey(key string) ds.Key   { return ds.RawKey(v.base + "/e" + key) }
func (v *view) tombKey(key string) ds.Key    { return ds.RawKey(v.base + "/t" + key) }
func (v *view) refusedKey(key string) ds.Key { return ds.RawKey(v.base + "/r/" + esc(key)) }
func (v *view) dependsKey(dep string) ds.Key { return ds.RawKey(v.base + "/d" + dep) }
func (v *view) signedKey(s policy.Serial, key string) ds.Key {
	return v.k("w", s.String(), esc(key))
}

// encodeElems and decodeElems: per element, a uint16-length block ID, the
// priority, a uint32-length value.
func encodeElems(es []policy.Element) []byte {
	var b []byte
	for _, e := range es {
		b = binary.BigEndian.AppendUint16(b, uint16(len(e.Block)))
		b = append(b, e.Block...)
		b = binary.BigEndian.AppendUint64(b, e.Priority)
		b = binary.BigEndian.AppendUint32(b, uint32(len(e.Value)))
		b = append(b, e.Value...)
	}
	return b
}

func decodeElems(b []byte) []policy.Element {
	var out []policy.Element
	for len(b) >= 2 {
		n := int(binary.BigEndian.Uint16(b))
		if len(b) < 2+n+12 {
			break
		}
		e := policy.Element{Block: string(b[2 : 2+n]), Priority: binary.BigEndian.Uint64(b[2+n:])}
		vl := int(binary.BigEndian.Uint32(b[2+n+8:]))
		b = b[2+n+12:]
		if len(b) < vl {
			break
		}
		e.Value, b = b[:vl:vl], b[vl:]
		out = append(out, e)
	}
	return out
}

func decodeTombs(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	return strings.Split(string(b), ",")
}

// process indexes a batch of deltas, decides every key they touch (and
// every key those decisions wake), then marks the deltas done.
func (v *view) process(ctx context.Context, batch []observed) error {
	tx := &vtx{store: v.store, pending: map[string][]byte{}}
	var keys []string
	queued := map[string]bool{}
	touch := func(k string) {
		if !queued[k] {
			queued[k] = true
			keys = append(keys, k)
		}
	}
	for _, o := range batch {
		if !strings.HasPrefix(o.block, "recovered") {
			if has, _ := tx.get(ctx, v.k("b", o.block)); has != nil {
				continue
			}
			tx.put(v.k("b", o.block), []byte{1})
		}
		for _, e := range o.elems {
			key := e.GetKey()
			if ValidateKey(key) != nil {
				continue // go-ds-crdt keys are cleaned ds keys; ours never fail
			}
			cur, err := tx.get(ctx, v.elemsKey(key))
			if err != nil {
				return err
			}
			es := decodeElems(cur)
			if !slices.ContainsFunc(es, func(x policy.Element) bool { return x.Block == o.block }) {
				es = append(es, policy.Element{Block: o.block, Priority: o.prio, Value: e.GetValue()})
				tx.put(v.elemsKey(key), encodeElems(es))
			}
			touch(key)
		}
		for _, t := range o.tombs {
			key := t.GetKey()
			if ValidateKey(key) != nil {
				continue
			}
			cur, err := tx.get(ctx, v.tombKey(key))
			if err != nil {
				return err
			}
			ts := decodeTombs(cur)
			id := strings.TrimPrefix(t.GetId(), "/")
			if !slices.Contains(ts, id) {
				tx.put(v.tombKey(key), []byte(strings.Join(append(ts, id), ",")))
			}
			touch(key)
		}
	}
	type change struct {
		key   string
		value []byte
	}
	var changes []change
	for i := 0; i < len(keys); i++ {
		key := keys[i]
		delete(queued, key)
		value, changed, woken, err := v.decideKey(ctx, tx, key)
		if err != nil {
			return err
		}
		for _, w := range woken {
			touch(w)
		}
		if changed {
			changes = append(changes, change{key, value})
		}
	}
	if err := tx.commit(ctx); err != nil {
		return err
	}
	for _, c := range changes {
		if IsReserved(c.key) {
			continue
		}
		if c.value == nil {
			v.onDelete(c.key)
		} else {
			v.onPut(c.key, c.value)
		}
	}
	return nil
}

func (v *view) get(ctx context.Context, key string) ([]byte, error) {
	b, err := v.store.Get(ctx, v.valueKey(key))
	if errors.Is(err, ds.ErrNotFound) {
		return nil, nil
	}
	return b, err
}

// decideKey decides key again within tx. It returns the new value,
// whether it changed, and the keys to decide again because of the change.
func (v *view) decideKey(ctx context.Context, tx *vtx, key string) (value []byte, changed bool, woken []string, err error) {
	cur, err := tx.get(ctx, v.elemsKey(key))
	if err != nil {
		return nil, false, nil, err
	}
	elems := decodeElems(cur)
	tb, err := tx.get(ctx, v.tombKey(key))
	if err != nil {
		return nil, false, nil, err
	}
	for _, t := range decodeTombs(tb) {
		for i := range elems {
			if elems[i].Block == t {
				elems[i].Tomb = true
			}
		}
	}
	now := v.opts.Now()
	d := policy.Decide(key, elems, v.lookups(func(k ds.Key) ([]byte, error) { return tx.get(ctx, k) }, now))
	old, err := tx.get(ctx, v.valueKey(key))
	if err != nil {
		return nil, false, nil, err
	}
	if !bytes.Equal(old, d.Value) {
		changed = true
		if d.Value == nil {
			tx.del(v.valueKey(key))
		} else {
			tx.put(v.valueKey(key), d.Value)
		}
	}
	// Refusals of this key replace the old ones.
	oldRefs, err := tx.get(ctx, v.refusedKey(key))
	if err != nil {
		return nil, false, nil, err
	}
	var prev []Refusal
	if len(oldRefs) > 0 {
		_ = json.Unmarshal(oldRefs, &prev)
	}
	for _, r := range prev {
		v.count(r, -1)
	}
	var refs []Refusal
	for _, e := range elems {
		vd := d.Verdicts[e.Block]
		if vd == nil {
			continue
		}
		r := Refusal{Key: key, Block: e.Block, Priority: e.Priority, Parked: vd.Parked, Reason: vd.Reason,
			Writer: vd.Writer, Seq: vd.Seq, DecidedAt: now.UTC()}
		if vd.Err != nil {
			r.Error = vd.Err.Error()
		}
		if !vd.Serial.IsZero() {
			r.Serial = vd.Serial.String()
		}
		// Keep the time of the first decision of an unchanged refusal.
		for _, p := range prev {
			if p.Block == r.Block && p.Reason == r.Reason {
				r.DecidedAt = p.DecidedAt
			}
		}
		refs = append(refs, r)
		v.count(r, 1)
		if vd.Dep != "" {
			dl, err := tx.get(ctx, v.dependsKey(vd.Dep))
			if err != nil {
				return nil, false, nil, err
			}
			ks := decodeTombs(dl)
			if !slices.Contains(ks, key) {
				tx.put(v.dependsKey(vd.Dep), []byte(strings.Join(append(ks, key), ",")))
			}
		}
		if !r.Parked && !slices.ContainsFunc(prev, func(p Refusal) bool { return p.Block == r.Block && p.Reason == r.Reason }) {
			v.log.Warn("verified view: refused", "key", key, "block", e.Block, "reason", r.Reason, "err", r.Error)
		}
	}
	if len(refs) > 0 {
		b, _ := json.Marshal(refs)
		tx.put(v.refusedKey(key), b)
	} else if len(prev) > 0 {
		tx.del(v.refusedKey(key))
	}
	for _, s := range d.Serials {
		tx.put(v.signedKey(s, key), nil)
	}
	if !changed {
		return d.Value, false, nil, nil
	}
	// Keys parked on this one.
	dl, err := tx.get(ctx, v.dependsKey(key))
	if err != nil {
		return nil, false, nil, err
	}
	if len(dl) > 0 {
		woken = append(woken, decodeTombs(dl)...)
		tx.del(v.dependsKey(key))
	}
	switch {
	case strings.HasPrefix(key, DeletionsPrefix+"/"):
		woken = append(woken, strings.TrimPrefix(key, DeletionsPrefix))
	case strings.HasPrefix(key, MembershipsPrefix+"/") && d.Value != nil:
		if m, err := policy.DecodeMembership(d.Value); err == nil {
			v.addMember(m)
		}
	case strings.HasPrefix(key, RevocationsPrefix+"/") && d.Value != nil:
		if r, ok := v.addRevocation(d.Value); ok {
			serials := []policy.Serial{r.Serial}
			if r.Serial.IsZero() {
				serials = serials[:0]
				for s, m := range v.members {
					if m.Peer == r.Peer {
						serials = append(serials, s)
					}
				}
			}
			for _, s := range serials {
				// Keys signed in this round are in tx only.
				for k := range tx.pending {
					if p := v.k("w", s.String()).String() + "/"; strings.HasPrefix(k, p) {
						woken = append(woken, unesc(strings.TrimPrefix(k, p)))
					}
				}
				wprefix := v.k("w", s.String()).String() + "/"
				for _, e := range v.scan(ctx, wprefix, true) {
					woken = append(woken, unesc(strings.TrimPrefix(e.Key, wprefix)))
				}
			}
		}
	}
	return d.Value, true, woken, nil
}

func (v *view) addMember(m policy.Membership) {
	v.tmu.Lock()
	v.members[m.Serial] = m
	v.tmu.Unlock()
}

// lookups are what policy.Decide reads besides a key's elements, backed by
// the view: get reads the view's store (through the round's writes, for
// the verifier). The verifier and Check share them, so a sender decides
// with the rules and the data its receivers decide with.
func (v *view) lookups(get func(ds.Key) ([]byte, error), now time.Time) policy.Lookups {
	v.tmu.RLock()
	revs := v.revs
	v.tmu.RUnlock()
	return policy.Lookups{
		Org: v.org, Trust: v.opts.Trust, Now: now, Revs: revs,
		Members: func(s policy.Serial) (policy.Membership, bool) {
			v.tmu.RLock()
			m, ok := v.members[s]
			v.tmu.RUnlock()
			return m, ok
		},
		DeletedAt: func(key string) (time.Time, bool) {
			b, err := get(v.valueKey(DeletionKey(key)))
			if err != nil || b == nil {
				return time.Time{}, false
			}
			sr, err := policy.DecodeSigned(b)
			if err != nil {
				return time.Time{}, false
			}
			return sr.At, true
		},
		Execution: func(id string) (*schema.Record, bool) {
			b, err := get(v.valueKey(schema.Key(schema.KindExecutions, id)))
			if err != nil || b == nil {
				return nil, false
			}
			rec, err := DecodeRecord(b)
			if err != nil {
				return nil, false
			}
			return &rec, true
		},
	}
}

// checkBlock names the element Check decides: no block ID is empty.
const checkBlock = ""

// check decides key as the view would once value arrives in a new local
// delta: beside the elements merged at key, at the next priority. It
// returns value's verdict (nil: accepted). It may run beside the
// verifier; the view's state it reads is the one last committed.
func (v *view) check(ctx context.Context, key string, value []byte) (*policy.Verdict, error) {
	get := func(k ds.Key) ([]byte, error) {
		b, err := v.store.Get(ctx, k)
		if errors.Is(err, ds.ErrNotFound) {
			return nil, nil
		}
		return b, err
	}
	cur, err := get(v.elemsKey(key))
	if err != nil {
		return nil, err
	}
	elems := decodeElems(cur)
	var top uint64
	for _, e := range elems {
		top = max(top, e.Priority)
	}
	elems = append(elems, policy.Element{Block: checkBlock, Priority: top + 1, Value: value})
	d := policy.Decide(key, elems, v.lookups(get, v.opts.Now()))
	return d.Verdicts[checkBlock], nil
}

func (v *view) addRevocation(b []byte) (policy.Revocation, bool) {
	r, err := policy.DecodeRevocation(b)
	if err != nil {
		return r, false
	}
	revs, err := v.revs.With(r, v.opts.Trust)
	if err != nil {
		return r, false
	}
	v.tmu.Lock()
	v.revs = revs
	v.tmu.Unlock()
	if v.opts.OnRevocation != nil {
		v.opts.OnRevocation(r)
	}
	return r, true
}

func (v *view) count(r Refusal, delta int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if r.Parked {
		v.parked += delta
		return
	}
	n := int64(v.refused[r.Reason]) + int64(delta)
	if n <= 0 {
		delete(v.refused, r.Reason)
		return
	}
	v.refused[r.Reason] = uint64(n)
}

func (v *view) counts() (map[string]uint64, int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make(map[string]uint64, len(v.refused))
	for k, n := range v.refused {
		out[k] = n
	}
	return out, v.parked
}

// refusals lists refused and parked elements, by key then block.
func (v *view) refusals(ctx context.Context, limit int) ([]Refusal, error) {
	res, err := v.store.Query(ctx, query.Query{Prefix: v.base + "/r/", Orders: []query.Order{query.OrderByKey{}}})
	if err != nil {
		return nil, err
	}
	defer res.Close()
	out := []Refusal{}
	for e := range res.Next() {
		if e.Error != nil {
			return nil, e.Error
		}
		var rs []Refusal
		if err := json.Unmarshal(e.Value, &rs); err != nil {
			return nil, fmt.Errorf("crdt: refusals %s: %w", e.Key, err)
		}
		out = append(out, rs...)
		if limit > 0 && len(out) >= limit {
			return out[:limit], nil
		}
	}
	return out, nil
}

// DecodeRecord reads the value a gated replica stores at a record's key:
// a signed record (policy.EncodeSigned) around the record's schema
// encoding. It does not verify the signature: the view did.
func DecodeRecord(b []byte) (schema.Record, error) {
	sr, err := policy.DecodeSigned(b)
	if err != nil {
		return schema.Record{}, err
	}
	return schema.Decode(sr.Record)
}

// observingDAG is the DAG service a gated replica gives go-ds-crdt: every
// node read or added through it is also queued to the view.
type observingDAG struct {
	ipld.DAGService
	v *view
}

func (d *observingDAG) Get(ctx context.Context, c cid.Cid) (ipld.Node, error) {
	nd, err := d.DAGService.Get(ctx, c)
	if err == nil {
		d.v.observe(nd)
	}
	return nd, err
}

func (d *observingDAG) GetMany(ctx context.Context, cs []cid.Cid) <-chan *ipld.NodeOption {
	return observeMany(ctx, d.DAGService.GetMany(ctx, cs), d.v)
}

func (d *observingDAG) Add(ctx context.Context, nd ipld.Node) error {
	err := d.DAGService.Add(ctx, nd)
	if err == nil {
		d.v.observe(nd)
	}
	return err
}

func (d *observingDAG) AddMany(ctx context.Context, nds []ipld.Node) error {
	err := d.DAGService.AddMany(ctx, nds)
	if err == nil {
		for _, nd := range nds {
			d.v.observe(nd)
		}
	}
	return err
}

// Session keeps bitswap sessions (go-ds-crdt uses one per branch walk).
func (d *observingDAG) Session(ctx context.Context) ipld.NodeGetter {
	if s, ok := d.DAGService.(interface {
		Session(context.Context) ipld.NodeGetter
	}); ok {
		return &observingGetter{s.Session(ctx), d.v}
	}
	return d
}

type observingGetter struct {
	ipld.NodeGetter
	v *view
}

func (g *observingGetter) Get(ctx context.Context, c cid.Cid) (ipld.Node, error) {
	nd, err := g.NodeGetter.Get(ctx, c)
	if err == nil {
		g.v.observe(nd)
	}
	return nd, err
}

func (g *observingGetter) GetMany(ctx context.Context, cs []cid.Cid) <-chan *ipld.NodeOption {
	return observeMany(ctx, g.NodeGetter.GetMany(ctx, cs), g.v)
}

func observeMany(ctx context.Context, in <-chan *ipld.NodeOption, v *view) <-chan *ipld.NodeOption {
	out := make(chan *ipld.NodeOption, cap(in))
	go func() {
		defer close(out)
		for o := range in {
			if o.Err == nil && o.Node != nil {
				v.observe(o.Node)
			}
			select {
			case out <- o:
			case <-ctx.Done():
				// Drain so the producer can finish.
				for range in {
				}
				return
			}
		}
	}()
	return out
}
