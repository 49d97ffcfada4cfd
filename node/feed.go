package node

// The change feed: every put and delete that takes effect in a replica,
// local or replicated, in order, per organisation, with a cursor to resume
// from. It is what an exam platform follows instead of re-listing.
//
// # Design
//
// go-ds-crdt calls the replica's OnPut/OnDelete hooks (crdt.Options) from
// its own goroutines, for local writes and merged remote deltas alike. A
// hook only appends to an in-memory queue and wakes one drainer goroutine
// per node (owned by the feed, stopped by Close after the replicas). The
// drainer numbers the queued changes per organisation (seq 1, 2, 3, ...
// with no gaps), writes them in one badger batch under
// /node/feed/<org>/<seq, 20 digits> together with the organisation's last
// seq (/node/feedseq/<org>), fsyncs, and only then makes them visible to
// readers. So a cursor a consumer was ever given names an entry that is on
// disk: after any restart the feed continues after it, and a consumer that
// resumes from its last cursor misses nothing that the feed recorded.
//
// # Crash window
//
// A feed entry is written after its record: the record is durable when the
// replica's group commit returns, the feed entry one drainer round later.
// A crash (power loss, kill -9) in between loses the feed entries of
// records that are stored. The feed detects this: Start writes a "running"
// marker (fsynced) and a clean Close removes it after the drainer has
// written everything queued. If Start finds the marker, the last shutdown
// was unclean, and every organisation's feed gets a change with op
// "resync" before anything else: a consumer that reads it must re-list the
// organisation's records (GET /v1/orgs/{org}/{kind}) to pick up whatever
// the lost entries described, then carry on from the resync's cursor. A
// write that fails in the drainer leaves the marker in place too, so the
// next start says resync rather than hiding the gap.
//
// The feed is never compacted yet: it grows by one small entry per change.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	ds "github.com/ipfs/go-datastore"

	"github.com/examnode/examnode/crdt"
	"github.com/examnode/examnode/schema"
)

// Change operations.
const (
	OpPut    = "put"
	OpDelete = "delete"
	// OpResync tells a consumer that changes may have been lost (an unclean
	// shutdown between a record's write and its feed entry): re-list.
	OpResync = "resync"
)

// Change is one entry of an organisation's change feed.
type Change struct {
	Seq  uint64    `json:"seq"`
	Key  string    `json:"key,omitempty"`
	Kind string    `json:"kind,omitempty"` // for keys of the schema's /<kind>/<id> form
	ID   string    `json:"id,omitempty"`
	Op   string    `json:"op"`
	At   time.Time `json:"at"`
}

// Changes is one page of the feed. Next is the cursor to pass as since.
type Changes struct {
	Changes []Change `json:"changes"`
	Next    string   `json:"next"`
}

var (
	feedRunningKey = ds.NewKey("/node/feedstate/running")
	feedPrefix     = ds.NewKey("/node/feed")
	feedSeqPrefix  = ds.NewKey("/node/feedseq")
)

func feedKey(org string, seq uint64) ds.Key {
	return feedPrefix.ChildString(org).ChildString(fmt.Sprintf("%020d", seq))
}

// feedGapBudget bounds how many sequence numbers without an entry one
// read of the feed skips before it answers.
const feedGapBudget = 4096

// Feed limits.
const (
	DefaultFeedLimit = 100
	MaxFeedLimit     = 1000
	MaxFeedWait      = 5 * time.Minute
	sseKeepAlive     = 15 * time.Second
)

type queued struct {
	org    string
	change Change
}

type feedOrg struct {
	last    uint64        // last visible (durable) seq
	changed chan struct{} // closed, and replaced, when last advances
}

type feed struct {
	store   *crdt.Store
	now     func() time.Time
	log     *slog.Logger
	unclean bool
	// markLater: the running marker could not be written at open (full
	// disk); write it with the next entries.
	markLater bool

	mu      sync.Mutex
	orgs    map[string]*feedOrg
	pending []queued
	failed  bool // a drainer write failed: keep the running marker
	stopped bool
	wake    chan struct{}

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// openFeed starts the node's feed: it notes whether the last shutdown was
// clean, marks the store as running and starts the drainer.
func openFeed(ctx context.Context, store *crdt.Store, now func() time.Time, log *slog.Logger) (*feed, error) {
	d := store.Datastore()
	unclean, err := d.Has(ctx, feedRunningKey)
	if err != nil {
		return nil, fmt.Errorf("node: change feed: %w", err)
	}
	// On a full disk the node still starts (reads work); the marker is
	// then written with the feed's first entries, before they are visible.
	markLater := false
	if err := d.Put(ctx, feedRunningKey, []byte(now().UTC().Format(time.RFC3339Nano))); errors.Is(err, crdt.ErrDiskFull) {
		log.Warn("the data directory's disk is full: the node starts read-only until space returns", "err", err)
		markLater = true
	} else if err != nil {
		return nil, fmt.Errorf("node: change feed: %w", err)
	} else if err := store.Sync(ctx); err != nil {
		return nil, fmt.Errorf("node: change feed: %w", err)
	}
	if unclean {
		log.Warn("the last shutdown was not clean: the change feed of every organisation starts with a resync entry")
	}
	fctx, cancel := context.WithCancel(context.Background())
	f := &feed{
		store: store, now: now, log: log, unclean: unclean, markLater: markLater,
		orgs: map[string]*feedOrg{}, wake: make(chan struct{}, 1),
		ctx: fctx, cancel: cancel,
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		f.drain()
	}()
	return f, nil
}

// hooks registers org and returns the replica hooks that feed it. Call it
// before opening the replica, so that changes applied while it opens are
// recorded (and come after a resync entry).
func (f *feed) hooks(org string) (onPut func(string, []byte), onDelete func(string), err error) {
	if err := f.register(org); err != nil {
		return nil, nil, err
	}
	onPut = func(key string, _ []byte) { f.enqueue(org, key, OpPut) }
	onDelete = func(key string) { f.enqueue(org, key, OpDelete) }
	return onPut, onDelete, nil
}

func (f *feed) register(org string) error {
	f.mu.Lock()
	_, ok := f.orgs[org]
	f.mu.Unlock()
	if ok {
		return nil
	}
	var last uint64
	v, err := f.store.Datastore().Get(context.Background(), feedSeqPrefix.ChildString(org))
	switch {
	case errors.Is(err, ds.ErrNotFound):
	case err != nil:
		return fmt.Errorf("node: change feed of %s: %w", org, err)
	default:
		if last, err = strconv.ParseUint(string(v), 10, 64); err != nil {
			return fmt.Errorf("node: change feed of %s: bad last sequence %q", org, v)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.orgs[org]; ok {
		return nil
	}
	f.orgs[org] = &feedOrg{last: last, changed: make(chan struct{})}
	if f.unclean {
		f.pending = append(f.pending, queued{org, Change{Op: OpResync, At: f.now().UTC()}})
		f.signal()
	}
	return nil
}

// enqueue runs inside go-ds-crdt's hooks: it must not block.
func (f *feed) enqueue(org, key, op string) {
	c := Change{Key: key, Op: op, At: f.now().UTC()}
	if k, id, err := schema.ParseKey(key); err == nil {
		c.Kind, c.ID = string(k), id
	}
	f.mu.Lock()
	if f.stopped {
		// Cannot happen in the documented close order (replicas close
		// before the feed); if it does, the next start says resync.
		f.failed = true
		f.mu.Unlock()
		return
	}
	f.pending = append(f.pending, queued{org, c})
	f.mu.Unlock()
	f.signal()
}

func (f *feed) signal() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

func (f *feed) drain() {
	for {
		select {
		case <-f.wake:
		case <-f.ctx.Done():
			if err := f.flush(); err != nil {
				f.log.Error("change feed: last entries not written; the next start begins with a resync", "err", err)
			}
			return
		}
		if err := f.flush(); err != nil {
			f.log.Error("change feed: write failed; retrying", "err", err)
			select {
			case <-time.After(time.Second):
				f.signal()
			case <-f.ctx.Done():
			}
		}
	}
}

// flush writes every queued change, fsyncs, then makes them visible.
func (f *feed) flush() error {
	f.mu.Lock()
	batch := f.pending
	f.pending = nil
	lasts := map[string]uint64{}
	for _, q := range batch {
		if _, ok := lasts[q.org]; !ok {
			lasts[q.org] = f.orgs[q.org].last
		}
	}
	f.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	err := f.write(batch, lasts)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil {
		f.failed = true
		f.pending = append(batch, f.pending...)
		return err
	}
	for org, last := range lasts {
		o := f.orgs[org]
		o.last = last
		close(o.changed)
		o.changed = make(chan struct{})
	}
	return nil
}

// write numbers batch from lasts (advancing it) and stores it durably.
func (f *feed) write(batch []queued, lasts map[string]uint64) error {
	ctx := context.Background()
	b, err := f.store.Datastore().Batch(ctx)
	if err != nil {
		return err
	}
	if f.markLater {
		if err := b.Put(ctx, feedRunningKey, []byte(f.now().UTC().Format(time.RFC3339Nano))); err != nil {
			return err
		}
	}
	for i := range batch {
		q := &batch[i]
		lasts[q.org]++
		q.change.Seq = lasts[q.org]
		v, err := json.Marshal(q.change)
		if err != nil {
			return err
		}
		if err := b.Put(ctx, feedKey(q.org, q.change.Seq), v); err != nil {
			return err
		}
	}
	for org, last := range lasts {
		if err := b.Put(ctx, feedSeqPrefix.ChildString(org), []byte(strconv.FormatUint(last, 10))); err != nil {
			return err
		}
	}
	if err := b.Commit(ctx); err != nil {
		return err
	}
	if err := f.store.Sync(ctx); err != nil {
		return err
	}
	f.markLater = false
	return nil
}

// close stops the drainer after it wrote what is queued, and marks the
// shutdown clean if nothing was lost. Call it after the replicas closed,
// before the store closes. Safe twice.
func (f *feed) close() error {
	f.closeOnce.Do(func() {
		f.cancel()
		f.wg.Wait()
		f.mu.Lock()
		f.stopped = true
		clean := !f.failed && len(f.pending) == 0
		f.mu.Unlock()
		if !clean {
			f.closeErr = errors.New("node: change feed: entries were lost; the next start begins with a resync")
			return
		}
		ctx := context.Background()
		if err := f.store.Datastore().Delete(ctx, feedRunningKey); err != nil {
			f.closeErr = fmt.Errorf("node: change feed: %w", err)
			return
		}
		f.closeErr = f.store.Sync(ctx)
	})
	return f.closeErr
}

// read returns up to limit changes of org after since, the cursor to
// resume from, and a channel closed when more arrive.
func (f *feed) read(ctx context.Context, org string, since uint64, limit int) ([]Change, uint64, <-chan struct{}, error) {
	f.mu.Lock()
	o := f.orgs[org]
	if o == nil {
		f.mu.Unlock()
		return nil, since, nil, fmt.Errorf("%w: %s has no change feed here", ErrUnknownOrg, org)
	}
	last, changed := o.last, o.changed
	f.mu.Unlock()
	out := []Change{}
	if since > last {
		// A cursor this feed never gave out (a wiped data directory, or a
		// made-up cursor): tell the consumer to re-list, and where to resume.
		return append(out, Change{Seq: last, Op: OpResync, At: f.now().UTC()}), last, changed, nil
	}
	next := since
	// Numbers with no entry (a gap left by an unclean stop, or a damaged
	// sequence counter) count towards a scan budget, so that one read
	// stays bounded; the cursor moves past them and the next read goes on.
	budget := limit + feedGapBudget
	for s := since + 1; s <= last && len(out) < limit && budget > 0; s++ {
		budget--
		v, err := f.store.Datastore().Get(ctx, feedKey(org, s))
		if errors.Is(err, ds.ErrNotFound) {
			next = s
			continue
		}
		if err != nil {
			return nil, since, nil, err
		}
		var c Change
		if err := json.Unmarshal(v, &c); err != nil {
			return nil, since, nil, fmt.Errorf("node: change feed of %s: entry %d: %w", org, s, err)
		}
		out = append(out, c)
		next = s
	}
	return out, next, changed, nil
}

// feedBadParam answers a 400 naming a query parameter.
func feedBadParam(w http.ResponseWriter, field, msg string) {
	writeRecordErr(w, http.StatusBadRequest, "invalid", field, "format", errors.New(msg))
}

func (n *Node) handleChanges(w http.ResponseWriter, r *http.Request) {
	org := r.PathValue("org")
	if _, err := n.Replica(org); err != nil {
		n.writeRecordError(w, err)
		return
	}
	q := r.URL.Query()
	cursor := q.Get("since")
	if cursor == "" {
		cursor = r.Header.Get("Last-Event-ID")
	}
	var since uint64
	if cursor != "" {
		s, err := strconv.ParseUint(cursor, 10, 64)
		if err != nil {
			feedBadParam(w, "since", fmt.Sprintf("since %q is not a cursor: pass the \"next\" value of the previous answer (or 0 for the beginning)", cursor))
			return
		}
		since = s
	}
	limit := DefaultFeedLimit
	if s := q.Get("limit"); s != "" {
		l, err := strconv.Atoi(s)
		if err != nil || l < 1 || l > MaxFeedLimit {
			feedBadParam(w, "limit", fmt.Sprintf("limit must be a whole number from 1 to %d", MaxFeedLimit))
			return
		}
		limit = l
	}
	var wait time.Duration
	if s := q.Get("wait"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 || d > MaxFeedWait {
			feedBadParam(w, "wait", fmt.Sprintf("wait must be a duration such as 30s, at most %s", MaxFeedWait))
			return
		}
		wait = d
	}
	if strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
		n.streamChanges(w, r, org, since, limit)
		return
	}
	var deadline <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		deadline = t.C
	}
	for {
		changes, next, changed, err := n.feed.read(r.Context(), org, since, limit)
		if err != nil {
			n.writeRecordError(w, err)
			return
		}
		if len(changes) > 0 || next != since || deadline == nil {
			writeJSON(w, http.StatusOK, Changes{Changes: changes, Next: strconv.FormatUint(next, 10)})
			return
		}
		select {
		case <-changed:
		case <-deadline:
			deadline = nil
		case <-r.Context().Done():
			return
		case <-n.ctx.Done():
			deadline = nil
		}
	}
}

// streamChanges serves the feed as server-sent events (id = seq) until the
// client goes away or the node closes.
func (n *Node) streamChanges(w http.ResponseWriter, r *http.Request, org string, since uint64, limit int) {
	fl, ok := w.(http.Flusher)
	if !ok {
		writeRecordErr(w, http.StatusNotAcceptable, "no_streaming", "", "", errors.New("this connection cannot stream; use the long poll (wait=30s)"))
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	fl.Flush()
	keepAlive := time.NewTicker(sseKeepAlive)
	defer keepAlive.Stop()
	var buf bytes.Buffer
	for r.Context().Err() == nil {
		changes, next, changed, err := n.feed.read(r.Context(), org, since, limit)
		if err != nil {
			fmt.Fprintf(w, "event: error\ndata: %q\n\n", err.Error())
			fl.Flush()
			return
		}
		skipped := len(changes) == 0 && next != since
		buf.Reset()
		for _, c := range changes {
			data, _ := json.Marshal(c)
			fmt.Fprintf(&buf, "id: %d\nevent: change\ndata: %s\n\n", c.Seq, data)
		}
		since = next
		if buf.Len() > 0 {
			if _, err := w.Write(buf.Bytes()); err != nil {
				return
			}
			fl.Flush()
			if len(changes) == limit {
				continue
			}
		}
		if skipped {
			continue // past a gap: read on at once
		}
		select {
		case <-changed:
		case <-keepAlive.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
			fl.Flush()
		case <-r.Context().Done():
			return
		case <-n.ctx.Done():
			return
		}
	}
}
