package mesh

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	gocrdt "github.com/ipfs/go-ds-crdt"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/examnode/examnode/policy"
)

type topicCounters struct {
	published atomic.Uint64 // announcements this node sent
	received  atomic.Uint64 // announcements from gossipsub handed to the reader
	exchanged atomic.Uint64 // head sets from direct exchanges handed to the reader
	dropped   atomic.Uint64 // announcements thrown away (gossipsub or a full inbox)
	rejected  atomic.Uint64 // announcements gossipsub validation rejected

	rmu     sync.Mutex
	reasons map[string]uint64 // rejected, by reason
}

// Reasons an announcement is rejected (TopicStats.RejectedByReason).
const (
	RejectNoMembership = "no membership for this organisation"
	RejectUnverified   = "sender's membership not verified yet"
	RejectMalformed    = "malformed announcement"
)

// reject counts one rejected announcement and why.
func (c *topicCounters) reject(reason string) {
	c.rejected.Add(1)
	c.rmu.Lock()
	if c.reasons == nil {
		c.reasons = map[string]uint64{}
	}
	c.reasons[reason]++
	c.rmu.Unlock()
}

// TopicStats counts a topic's announcements since the node started.
type TopicStats struct {
	Published uint64 `json:"published"`
	Received  uint64 `json:"received"`
	Exchanged uint64 `json:"exchanged"`
	Dropped   uint64 `json:"dropped"`
	Rejected  uint64 `json:"rejected"`
	// RejectedByReason splits Rejected by reason (the Reject* constants,
	// or gossipsub's own reason).
	RejectedByReason map[string]uint64 `json:"rejected_by_reason,omitempty"`
}

// TopicName is the gossipsub topic of an organisation in a network.
func TopicName(network, org string) string {
	return "/examnode/" + network + "/org/" + org + "/heads"
}

// Topic is one organisation's broadcaster: it implements go-ds-crdt's
// Broadcaster over gossipsub, and also delivers the heads that direct
// exchanges with peers bring in.
type Topic struct {
	m      *Mesh
	org    string
	name   string
	t      *pubsub.Topic
	sub    *pubsub.Subscription
	inbox  *inbox
	count  *topicCounters
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// Join subscribes to an organisation's topic and exchanges heads with the
// connected peers that carry it.
func (m *Mesh) Join(org string) (*Topic, error) {
	name := TopicName(m.opts.Network, org)
	// m.mu is never held while calling into gossipsub: its event loop
	// calls the tracer, which takes locks of its own.
	m.joinMu.Lock()
	defer m.joinMu.Unlock()
	m.mu.Lock()
	_, joined := m.topics[org]
	m.mu.Unlock()
	if m.ctx.Err() != nil {
		return nil, ErrClosed
	}
	if joined {
		return nil, fmt.Errorf("%w: %s", ErrAlreadyJoined, org)
	}
	if m.own != nil {
		if err := policy.MayRead(*m.own, org); err != nil {
			return nil, fmt.Errorf("mesh: join %s: %w", org, err)
		}
		if err := m.ps.RegisterTopicValidator(name, m.validator(org)); err != nil {
			return nil, fmt.Errorf("mesh: validator of %s: %w", org, err)
		}
	}
	t, err := m.ps.Join(name)
	if err != nil {
		m.unregisterValidator(name)
		return nil, fmt.Errorf("mesh: join topic of %s: %w", org, err)
	}
	sub, err := t.Subscribe(pubsub.WithBufferSize(m.opts.InboxSize))
	if err != nil {
		_ = t.Close()
		m.unregisterValidator(name)
		return nil, fmt.Errorf("mesh: subscribe to %s: %w", org, err)
	}
	m.cmu.Lock()
	c := m.counts[name]
	if c == nil {
		c = &topicCounters{}
		m.counts[name] = c
	}
	m.cmu.Unlock()
	ctx, cancel := context.WithCancel(m.ctx)
	tp := &Topic{m: m, org: org, name: name, t: t, sub: sub, count: c,
		inbox: newInbox(), ctx: ctx, cancel: cancel}
	tp.wg.Add(1)
	go func() { defer tp.wg.Done(); tp.pump() }()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.topics[org] = tp
	for p, st := range m.book {
		if st.connected && st.carries(org) {
			m.enqueueLocked(p)
		}
	}
	return tp, nil
}

// Org is the organisation of this topic.
func (t *Topic) Org() string { return t.org }

// Broadcast publishes a head announcement to the organisation's peers.
//
// It never fails: go-ds-crdt applies a delta before broadcasting it, and
// an error here would make it publish the same delta again with the next
// write. An announcement that cannot be sent (the topic is closing, no
// peer is reachable) is counted as dropped; the direct heads exchange on
// the next connection, or the periodic one, carries the heads instead.
func (t *Topic) Broadcast(ctx context.Context, data []byte) error {
	if t.ctx.Err() != nil {
		t.count.dropped.Add(1)
		return nil
	}
	if err := t.t.Publish(ctx, data); err != nil {
		t.count.dropped.Add(1)
		t.m.log.Debug("announcement not published", "org", t.org, "err", err)
	}
	t.count.published.Add(1)
	t.m.pushOrg(t.org)
	return nil
}

// announcement is a head announcement and the peer it came from.
type announcement struct {
	data []byte
	from peer.ID
}

// Next returns the next announcement from a peer, or go-ds-crdt's
// ErrNoMoreBroadcast once the topic is closed. Before returning it, it
// lets the Prefetch hook fetch the blocks the announcement names from the
// peer that sent it, so that go-ds-crdt finds them locally.
func (t *Topic) Next(ctx context.Context) ([]byte, error) {
	a, err := t.inbox.next(ctx, t.ctx)
	if err != nil {
		if t.ctx.Err() != nil {
			return nil, gocrdt.ErrNoMoreBroadcast
		}
		return nil, err
	}
	if f := t.m.deps.Prefetch; f != nil && a.from != "" {
		f(ctx, t.org, a.from, a.data)
	}
	return a.data, nil
}

// Stats counts this topic's announcements.
func (t *Topic) Stats() TopicStats { return t.count.snapshot() }

func (c *topicCounters) snapshot() TopicStats {
	var by map[string]uint64
	c.rmu.Lock()
	if len(c.reasons) > 0 {
		by = make(map[string]uint64, len(c.reasons))
		for k, v := range c.reasons {
			by[k] = v
		}
	}
	c.rmu.Unlock()
	return TopicStats{
		RejectedByReason: by,
		Published:        c.published.Load(),
		Received:         c.received.Load(),
		Exchanged:        c.exchanged.Load(),
		Dropped:          c.dropped.Load(),
		Rejected:         c.rejected.Load(),
	}
}

// deliver hands an announcement to the reader without blocking: it is
// merged into whatever the same peer has pending (see inbox). A malformed
// announcement is counted as rejected and dropped.
func (t *Topic) deliver(data []byte, from peer.ID, c *atomic.Uint64) {
	dropped, err := t.inbox.add(data, from)
	if err != nil {
		t.count.reject(RejectMalformed)
		t.m.log.Debug("malformed head announcement", "org", t.org, "peer", from, "err", err)
		return
	}
	c.Add(1)
	if dropped > 0 {
		t.count.dropped.Add(uint64(dropped))
		if from != "" {
			t.m.enqueue(from)
		}
	}
}

func (t *Topic) pump() {
	self := t.m.host.ID()
	for {
		msg, err := t.sub.Next(t.ctx)
		if err != nil {
			return
		}
		if msg.ReceivedFrom == self || msg.GetFrom() == self {
			continue
		}
		if f := t.m.deps.GossipFilter; f != nil && !f(t.org, msg.ReceivedFrom) {
			t.count.dropped.Add(1)
			continue
		}
		// Pull blocks from the writer itself where it is connected: a
		// gossipsub relay need not hold them yet.
		from := msg.GetFrom()
		if t.m.host.Network().Connectedness(from) != network.Connected {
			from = msg.ReceivedFrom
		}
		t.deliver(msg.Data, from, &t.count.received)
	}
}

// Close stops the topic: Next returns ErrNoMoreBroadcast from then on.
// Safe to call twice.
func (t *Topic) Close() error {
	t.closeOnce.Do(func() {
		t.cancel()
		t.sub.Cancel()
		t.wg.Wait()
		t.m.mu.Lock()
		if t.m.topics[t.org] == t {
			delete(t.m.topics, t.org)
		}
		t.m.mu.Unlock()
		if err := t.t.Close(); err != nil && !errors.Is(err, context.Canceled) {
			t.closeErr = fmt.Errorf("mesh: close topic of %s: %w", t.org, err)
		}
		t.m.unregisterValidator(t.name)
	})
	return t.closeErr
}

func (m *Mesh) countTopic(name string, f func(*topicCounters)) {
	m.cmu.RLock()
	c := m.counts[name]
	m.cmu.RUnlock()
	if c != nil {
		f(c)
	}
}

// unregisterValidator removes a gated topic's validator, if any.
func (m *Mesh) unregisterValidator(name string) {
	if m.own != nil && m.ctx.Err() == nil {
		_ = m.ps.UnregisterTopicValidator(name)
	}
}
