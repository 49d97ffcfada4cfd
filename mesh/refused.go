package mesh

// Refusals counted where the bytes arrive.
//
// Every layer that refuses what a peer sent (an announcement, a block, a
// stream, a subscription, a connection) counts it here by organisation and
// reason, so that one place feeds `examnode sync` (refused_by_reason of
// each organisation), `examnode refused`, the metrics
// (examnode_refused_total{org,reason}) and the history. Refusals that
// belong to no organisation (a stranger's hello, a resource limit) are
// counted under NodeWide.

// NodeWide is the organisation under which refusals that belong to no
// organisation are counted (Status.RefusedByReason).
const NodeWide = ""

// Reasons counted by layers outside the topic (the Reject* constants of
// topic.go are the announcement reasons).
const (
	// RefuseBlockNotReadable: a peer asked (by dag-pull or bitswap) for a
	// block of an organisation it may not read.
	RefuseBlockNotReadable = "block of an organisation the peer may not read"
	// RefuseUnrequestedBlock: a peer sent a block this node did not ask for.
	RefuseUnrequestedBlock = "unrequested block"
	// RefuseBlockBudget: a peer or an organisation exceeded its byte budget.
	RefuseBlockBudget = "block byte budget exceeded"
	// RefuseSubscription: a peer subscribed to the topic of an organisation
	// it may not read.
	RefuseSubscription = "subscription to an organisation the peer may not read"
	// RefuseStranger: a peer without a valid membership (node-wide).
	RefuseStranger = "peer without a valid membership"
	// RefuseKeptOut: a peer that another layer penalised (KeepOut)
	// tried to connect again before its time was up (node-wide).
	RefuseKeptOut = "peer kept out for misbehaving"
	// RefuseResourceLimit: libp2p's resource manager refused a connection
	// or stream (node-wide).
	RefuseResourceLimit = "resource limit"
)

// CountRefused counts n refusals of what a peer sent for org (NodeWide for
// none) with the given reason.
func (m *Mesh) CountRefused(org, reason string, n uint64) {
	if n == 0 {
		return
	}
	name := refusalKey(m.opts.Network, org)
	m.cmu.Lock()
	c := m.counts[name]
	if c == nil {
		c = &topicCounters{}
		m.counts[name] = c
	}
	m.cmu.Unlock()
	c.rejected.Add(n - 1)
	c.reject(reason)
	if n > 1 {
		c.rmu.Lock()
		c.reasons[reason] += n - 1
		c.rmu.Unlock()
	}
}

// Refused returns the refusals counted for org (NodeWide for those that
// belong to no organisation), by reason.
func (m *Mesh) Refused(org string) map[string]uint64 {
	m.cmu.RLock()
	c := m.counts[refusalKey(m.opts.Network, org)]
	m.cmu.RUnlock()
	if c == nil {
		return map[string]uint64{}
	}
	s := c.snapshot()
	if s.RejectedByReason == nil {
		return map[string]uint64{}
	}
	return s.RejectedByReason
}

func refusalKey(network, org string) string {
	if org == NodeWide {
		return "/examnode/" + network + "/node"
	}
	return TopicName(network, org)
}
