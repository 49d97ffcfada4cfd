package node

import (
	"github.com/examnode/examnode/crdt"
	"github.com/examnode/examnode/policy"
)

// TrustOpen is Status.Trust for a node without an authority.
const TrustOpen = "open: no authority configured, any peer of the network may connect"

// trustSummary says whether the node checks memberships, and under which
// of its own.
func (n *Node) trustSummary() string {
	if n.cfg.Authority == "" {
		return TrustOpen
	}
	m, err := policy.ParseMembership(n.cfg.Membership)
	if err != nil {
		return "gated by " + n.cfg.Authority + "; own membership unreadable: " + err.Error()
	}
	return "gated by " + n.cfg.Authority + "; " + m.Describe()
}

// Store is the node's shared badger store (every organisation's replica
// and DAG blocks). Tests use it to check what reached the node at the
// block level; do not write through it.
func (n *Node) Store() *crdt.Store { return n.store }
