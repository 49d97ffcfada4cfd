package mesh

import (
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// dropTracer counts what gossipsub throws away, which it otherwise reports
// only at info level.
type dropTracer struct{ m *Mesh }

func (t dropTracer) UndeliverableMessage(msg *pubsub.Message) {
	t.m.countTopic(msg.GetTopic(), func(c *topicCounters) { c.dropped.Add(1) })
}

func (t dropTracer) RejectMessage(msg *pubsub.Message, reason string) {
	switch reason {
	case pubsub.RejectValidationFailed: // the gated topics' validator rejects only non-members
		reason = RejectNoMembership
	case pubsub.RejectValidationIgnored:
		reason = RejectUnverified
	}
	t.m.countTopic(msg.GetTopic(), func(c *topicCounters) { c.reject(reason) })
}

func (dropTracer) OnNewOutboundStream(peer.ID, protocol.ID)             {}
func (dropTracer) OnClosedOutboundStream(peer.ID)                       {}
func (dropTracer) Join(string)                                          {}
func (dropTracer) Leave(string)                                         {}
func (dropTracer) Graft(peer.ID, string)                                {}
func (dropTracer) Prune(peer.ID, string)                                {}
func (dropTracer) ValidateMessage(*pubsub.Message)                      {}
func (dropTracer) DeliverMessage(*pubsub.Message)                       {}
func (dropTracer) DuplicateMessage(*pubsub.Message)                     {}
func (dropTracer) ThrottlePeer(peer.ID)                                 {}
func (dropTracer) RecvRPC(*pubsub.RPC)                                  {}
func (dropTracer) SendRPC(*pubsub.RPC, peer.ID)                         {}
func (dropTracer) SendRPCCompleted(*pubsub.RPC, peer.ID, time.Duration) {}
func (dropTracer) DropRPC(*pubsub.RPC, peer.ID)                         {}
