package node

// The node's observer: the sync history (GET /v1/history, `examnode
// history`), the per-peer sync state the status page draws, and the
// Prometheus registry (metrics.go).
//
// # Design
//
// The observer derives everything from what the node already exposes: it
// does not hook into mesh or crdt. One goroutine, owned by the observer
// (started by Start, stopped by Close right after the API, before the
// topics and replicas close), samples once a second:
//
//   - the peer book (mesh.Peers): a peer that appears connected, or stops
//     being connected, between two samples gives a "connected" or
//     "disconnected" event; a new LastError gives an "error" event;
//   - the change feed (feed.go, which the replicas' OnPut/OnDelete hooks
//     fill): every change since the last sample, counted by kind. A change
//     that the local write routes announced (pending, below) was "written"
//     here; any other arrived from the mesh and is "received". The mesh
//     does not say which peer a record came from: when exactly one
//     connected peer carries the organisation it is credited to that peer,
//     otherwise the event lists the connected peers it came through (via);
//   - counters (pull failures, rejected and dropped announcements, failed
//     writes, queued DAG jobs) whose increase gives "error" and "caught up"
//     events.
//
// A GET of /v1/history also samples first, so an answer is never more
// than one request old. Events live in a ring of the last HistorySize.
//
// # What "in sync" means here
//
// A peer's state per organisation comes from the heads it last sent in a
// heads exchange, compared with this node's (see inspect.go): in sync,
// behind (by how many heights), ahead (it holds heads this node is still
// fetching), unknown, disconnected or error. The CLI calls the time
// "last exchange", not "converged".

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/examnode/examnode/mesh"
	"github.com/examnode/examnode/schema"
)

// commitSlack: a commit announces its heads (and so exchanges them with
// the peers) before its fsync returns and its time is taken, so an
// exchange up to this long before the commit time counts as after it.
const commitSlack = time.Second

// HistorySize is how many events the sync history keeps.
const HistorySize = 1000

// SampleInterval is how often the observer samples the peer book, feed
// and counters.
const SampleInterval = time.Second

// History events.
const (
	EventConnected    = "connected"
	EventDisconnected = "disconnected"
	EventReceived     = "received" // records that arrived from the mesh
	EventWritten      = "written"  // records written here (offered to the connected peers)
	EventCaughtUp     = "caught up"
	EventConverged    = "converged" // a peer's heads now agree with this node's
	EventError        = "error"
)

// Peer sync states (PeerSync.State).
const (
	StateInSync       = "in sync"
	StateBehind       = "behind"
	StateDisconnected = "disconnected"
	StateError        = "error"
)

// HistoryEvent is one entry of the sync history.
type HistoryEvent struct {
	Seq    uint64         `json:"seq"`
	At     time.Time      `json:"at"`
	Event  string         `json:"event"`
	Org    string         `json:"org,omitempty"`
	Peer   string         `json:"peer,omitempty"`
	Via    []string       `json:"via,omitempty"` // connected peers of the org, when the sender is not known
	Count  int            `json:"count,omitempty"`
	Kinds  map[string]int `json:"kinds,omitempty"`
	Detail string         `json:"detail,omitempty"`
}

// PeerSync is this node's view of one peer for one organisation both
// carry (Org is "" for a peer that shares none, or has not said yet).
type PeerSync struct {
	Org            string         `json:"org"`
	Peer           string         `json:"peer"`
	Roles          []string       `json:"roles"`
	State          string         `json:"state"`
	Reason         string         `json:"reason,omitempty"`
	Connected      bool           `json:"connected"`
	LAN            bool           `json:"lan"`
	ConnectedSince time.Time      `json:"connected_since,omitzero"`
	LastSeen       time.Time      `json:"last_seen,omitzero"`
	LastExchange   time.Time      `json:"last_exchange,omitzero"`
	Received       map[string]int `json:"received,omitempty"` // records credited to this peer, by kind
	Offered        map[string]int `json:"offered,omitempty"`  // records written here while it was connected
	LastError      string         `json:"last_error,omitempty"`
	// From the peer's last heads of Org (inspect.go): when it sent them,
	// how many heights it lacked, how many of its heads this node lacked.
	HeadsAt time.Time     `json:"heads_at,omitzero"`
	Behind  uint64        `json:"behind,omitempty"`
	Missing int           `json:"missing,omitempty"`
	RTT     time.Duration `json:"rtt_ns,omitempty"`
}

// History is the answer of GET /v1/history.
type History struct {
	Node   string         `json:"node"`
	Peers  []PeerSync     `json:"peers"`
	Events []HistoryEvent `json:"events"`
}

type linkKey struct{ org, peer string }

type linkStats struct {
	connectedSince time.Time
	received       map[string]int
	offered        map[string]int
}

type orgSample struct {
	cursor    uint64
	pulls     uint64
	rejected  uint64
	byReason  map[string]uint64 // rejected, by reason
	dropped   uint64
	writeErrs uint64
	queued    int
}

type observer struct {
	n   *Node
	reg *prometheus.Registry

	writeLatency *prometheus.HistogramVec

	pmu     sync.Mutex
	pending map[linkKey][]time.Time // org, kind -> local writes not yet seen in the feed

	mu         sync.Mutex // serialises sample; guards what follows
	ring       []HistoryEvent
	seq        uint64
	peers      map[string]mesh.PeerInfo
	orgs       map[string]*orgSample
	links      map[linkKey]*linkStats
	pullErr    uint64
	lastSample time.Time
	states     map[linkKey]string // each peer's state per organisation at the last sample

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

func newObserver(n *Node) *observer {
	ctx, cancel := context.WithCancel(context.Background())
	o := &observer{
		n: n, pending: map[linkKey][]time.Time{},
		peers: map[string]mesh.PeerInfo{}, orgs: map[string]*orgSample{}, links: map[linkKey]*linkStats{},
		ctx: ctx, cancel: cancel,
	}
	o.registerMetrics()
	return o
}

// start takes a first sample (so that what follows counts from now) and
// starts the sampler.
func (o *observer) start() {
	o.sample()
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		t := time.NewTicker(SampleInterval)
		defer t.Stop()
		for {
			select {
			case <-o.ctx.Done():
				return
			case <-t.C:
				o.sample()
				o.n.reconcile(o.ctx) // inspect.go
			}
		}
	}()
}

// stop ends the sampler and waits for it. Safe twice.
func (o *observer) stop() {
	o.once.Do(func() {
		o.cancel()
		o.wg.Wait()
	})
}

func kindOf(key string) string {
	if k, _, err := schema.ParseKey(key); err == nil {
		return string(k)
	}
	return ""
}

// notePending records a local write before it is made, so that its feed
// entry counts as written here. done says whether it took effect.
func (o *observer) notePending(org, key string) (done func(tookEffect bool)) {
	k := linkKey{org, kindOf(key)}
	o.pmu.Lock()
	o.pending[k] = append(o.pending[k], o.n.now())
	o.pmu.Unlock()
	return func(ok bool) {
		if ok {
			return
		}
		o.pmu.Lock()
		if p := o.pending[k]; len(p) > 0 {
			o.pending[k] = p[:len(p)-1]
		}
		o.pmu.Unlock()
	}
}

// takePending consumes one pending local write of org and kind.
func (o *observer) takePending(org, kind string) bool {
	k := linkKey{org, kind}
	o.pmu.Lock()
	defer o.pmu.Unlock()
	p := o.pending[k]
	// A pending write that never reached the feed (a raw delete of an
	// absent key) expires.
	cut := o.n.now().Add(-30 * time.Second)
	for len(p) > 0 && p[0].Before(cut) {
		p = p[1:]
	}
	if len(p) == 0 {
		delete(o.pending, k)
		return false
	}
	o.pending[k] = p[1:]
	return true
}

func (o *observer) add(e HistoryEvent) {
	o.seq++
	e.Seq = o.seq
	if e.At.IsZero() {
		e.At = o.n.now().UTC()
	}
	if len(o.ring) == HistorySize {
		copy(o.ring, o.ring[1:])
		o.ring = o.ring[:HistorySize-1]
	}
	o.ring = append(o.ring, e)
}

func (o *observer) link(org, peer string) *linkStats {
	k := linkKey{org, peer}
	l := o.links[k]
	if l == nil {
		l = &linkStats{received: map[string]int{}, offered: map[string]int{}}
		o.links[k] = l
	}
	return l
}

// sample compares the node's state with the previous sample and records
// what changed.
func (o *observer) sample() {
	n := o.n
	n.mu.Lock()
	m, f := n.mesh, n.feed
	n.mu.Unlock()
	if m == nil || f == nil {
		return
	}
	ctx, cancel := context.WithTimeout(o.ctx, 10*time.Second)
	defer cancel()
	now := n.now().UTC()
	o.mu.Lock()
	defer o.mu.Unlock()

	peers := m.Peers()
	byID := make(map[string]mesh.PeerInfo, len(peers))
	for _, p := range peers {
		byID[p.ID] = p
		prev, seen := o.peers[p.ID]
		switch {
		case p.Connected && (!seen || !prev.Connected):
			how := "WAN"
			if p.LAN {
				how = "LAN"
			}
			o.add(HistoryEvent{At: now, Event: EventConnected, Peer: p.ID, Detail: fmt.Sprintf("%s %s %s", p.Direction, how, p.Addr)})
			for _, org := range p.Orgs {
				o.link(org, p.ID).connectedSince = now
			}
			o.link("", p.ID).connectedSince = now
		case !p.Connected && seen && prev.Connected:
			o.add(HistoryEvent{At: now, Event: EventDisconnected, Peer: p.ID})
		case !p.Connected && !o.lastSample.IsZero() && p.LastSeen.After(o.lastSample):
			// Connected and gone again between two samples.
			o.add(HistoryEvent{At: now, Event: EventDisconnected, Peer: p.ID, Detail: "was connected briefly, between two samples"})
		}
		if p.LastError != "" && p.LastError != prev.LastError {
			o.add(HistoryEvent{At: now, Event: EventError, Peer: p.ID, Detail: p.LastError})
		}
	}
	o.peers = byID
	o.lastSample = now

	if pe := n.pullErrors.Load(); pe > o.pullErr {
		o.add(HistoryEvent{At: now, Event: EventError, Count: int(pe - o.pullErr), Detail: "bulk DAG pull failed; bitswap fetches what is missing"})
		o.pullErr = pe
	}

	for _, org := range n.Orgs() {
		rep, err := n.Replica(org)
		if err != nil {
			continue
		}
		st := rep.Stats(ctx)
		ts := m.Stats(org)
		s := o.orgs[org]
		if s == nil {
			// First sight of org: count from here.
			last, _ := f.lastSeq(org)
			o.orgs[org] = &orgSample{cursor: last, rejected: ts.Rejected, byReason: ts.RejectedByReason, dropped: ts.Dropped, writeErrs: st.WriteErrors, queued: st.QueuedJobs}
			continue
		}
		if last, _ := f.lastSeq(org); last != s.cursor {
			var via []string
			for _, p := range m.PeersOf(org) {
				via = append(via, p.String())
			}
			sort.Strings(via)
			o.followFeed(ctx, f, org, s, via, now)
		}
		if ts.Rejected > s.rejected {
			var why []string
			for _, reason := range slices.Sorted(maps.Keys(ts.RejectedByReason)) {
				if d := ts.RejectedByReason[reason] - s.byReason[reason]; d > 0 {
					why = append(why, fmt.Sprintf("%s: %d", reason, d))
				}
			}
			o.add(HistoryEvent{At: now, Event: EventError, Org: org, Count: int(ts.Rejected - s.rejected), Detail: "refused where it arrived (" + strings.Join(why, "; ") + ")"})
		}
		if ts.Dropped > s.dropped {
			o.add(HistoryEvent{At: now, Event: EventError, Org: org, Count: int(ts.Dropped - s.dropped), Detail: "announcements dropped (the heads exchange makes up for them)"})
		}
		if st.WriteErrors > s.writeErrs {
			o.add(HistoryEvent{At: now, Event: EventError, Org: org, Count: int(st.WriteErrors - s.writeErrs), Detail: "writes failed"})
		}
		if s.queued > 0 && st.QueuedJobs == 0 {
			o.add(HistoryEvent{At: now, Event: EventCaughtUp, Org: org, Detail: "fetched everything peers announced"})
		}
		s.rejected, s.byReason, s.dropped, s.writeErrs, s.queued = ts.Rejected, ts.RejectedByReason, ts.Dropped, st.WriteErrors, st.QueuedJobs
	}
	o.noteConverged(ctx, m, now)
}

// noteConverged records a "converged" event when a peer's heads of an
// organisation come to agree with this node's after they did not (or
// when it is first seen in sync).
func (o *observer) noteConverged(ctx context.Context, m *mesh.Mesh, now time.Time) {
	next := map[linkKey]string{}
	for _, ps := range o.n.peerSync(ctx, m, nil) {
		if ps.Org == "" {
			continue
		}
		k := linkKey{ps.Org, ps.Peer}
		next[k] = ps.State
		if prev, ok := o.states[k]; ps.State == StateInSync && (!ok || prev != StateInSync) {
			detail := "heads agree"
			if ok {
				detail += " (was " + prev + ")"
			}
			o.add(HistoryEvent{At: now, Event: EventConverged, Org: ps.Org, Peer: ps.Peer, Detail: detail})
		}
	}
	o.states = next
}

// followFeed reads org's feed since the last sample and records what was
// received and written.
func (o *observer) followFeed(ctx context.Context, f *feed, org string, s *orgSample, via []string, now time.Time) {
	received, written := map[string]int{}, map[string]int{}
	nr, nw := 0, 0
	for {
		changes, next, _, err := f.read(ctx, org, s.cursor, MaxFeedLimit)
		if err != nil {
			break
		}
		for _, c := range changes {
			if c.Op == OpResync {
				continue
			}
			kind := c.Kind
			if kind == "" {
				kind = kindOf(c.Key)
			}
			label := kind
			if label == "" {
				label = "other"
			}
			if o.takePending(org, kind) {
				written[label]++
				nw++
			} else {
				received[label]++
				nr++
			}
		}
		s.cursor = next
		if len(changes) < MaxFeedLimit {
			break
		}
	}
	if nr > 0 {
		e := HistoryEvent{At: now, Event: EventReceived, Org: org, Count: nr, Kinds: received}
		if len(via) == 1 {
			e.Peer = via[0]
			l := o.link(org, via[0])
			for k, c := range received {
				l.received[k] += c
			}
		} else {
			e.Via = via
		}
		o.add(e)
	}
	if nw > 0 {
		o.add(HistoryEvent{At: now, Event: EventWritten, Org: org, Count: nw, Kinds: written, Via: via})
		for _, p := range via {
			l := o.link(org, p)
			for k, c := range written {
				l.offered[k] += c
			}
		}
	}
}

// lastSeq is the last visible seq of org's feed.
func (f *feed) lastSeq(org string) (uint64, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if o := f.orgs[org]; o != nil {
		return o.last, true
	}
	return 0, false
}

// History samples, then returns the sync state of every peer and the
// events, optionally only those of org and/or peer.
func (n *Node) History(ctx context.Context, org, peer string) (History, error) {
	n.mu.Lock()
	o, m := n.obs, n.mesh
	n.mu.Unlock()
	if o == nil || m == nil {
		return History{}, ErrNotStarted
	}
	o.sample()
	h := History{Node: n.ID().String(), Peers: []PeerSync{}, Events: []HistoryEvent{}}
	o.mu.Lock()
	for _, e := range o.ring {
		if (org == "" || e.Org == org || e.Org == "") && (peer == "" || e.Peer == peer || slices.Contains(e.Via, peer)) {
			h.Events = append(h.Events, e)
		}
	}
	links := make(map[linkKey]linkStats, len(o.links))
	for k, l := range o.links {
		links[k] = *l
	}
	o.mu.Unlock()
	for _, ps := range n.peerSync(ctx, m, links) {
		if (org == "" || ps.Org == org) && (peer == "" || ps.Peer == peer) {
			h.Peers = append(h.Peers, ps)
		}
	}
	return h, nil
}

func (n *Node) handleHistory(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	h, err := n.History(r.Context(), q.Get("org"), q.Get("peer"))
	if err != nil {
		s, c := statusOf(err)
		writeErr(w, s, c, err)
		return
	}
	writeJSON(w, http.StatusOK, h)
}

// statusRecorder keeps a write route's status and the start of its body.
type statusRecorder struct {
	http.ResponseWriter
	status int
	body   []byte
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	if room := 4096 - len(s.body); room > 0 {
		s.body = append(s.body, b[:min(room, len(b))]...)
	}
	return s.ResponseWriter.Write(b)
}

// observeWrite wraps a write route (route names it in metrics): it times
// the request for the write latency histogram and tells the observer that
// a local change is coming, so that the feed entry counts as written here.
func (n *Node) observeWrite(route string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		o := n.obs
		if o == nil {
			h(w, r)
			return
		}
		org, key := r.PathValue("org"), "/"+r.PathValue("key")
		if route == "record" {
			key = "/" + r.PathValue("kind") + "/" + r.PathValue("id")
		}
		done := o.notePending(org, key)
		rec := &statusRecorder{ResponseWriter: w}
		start := time.Now()
		h(rec, r)
		o.writeLatency.WithLabelValues(route, r.Method).Observe(time.Since(start).Seconds())
		var res struct {
			NoOp bool `json:"noop"`
		}
		_ = json.Unmarshal(rec.body, &res)
		done(rec.status < 300 && !res.NoOp)
	}
}
