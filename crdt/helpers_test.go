package crdt

import (
	"testing"
	"time"

	"github.com/examnode/examnode/internal/trusttest"
	"github.com/examnode/examnode/policy"
	"github.com/examnode/examnode/schema"
)

const testOrg = "C1"

var tw0 = trusttest.T0

// The rule engine's fixture (internal/trusttest), shared with policy's
// tests: an authority, central, vm1 and vm2 of C1, vm3 of C2.
type (
	testPeer   = trusttest.Peer
	trustWorld = trusttest.World
)

func newTrustWorld(t testing.TB) *trustWorld { return trusttest.NewWorld(t, testOrg) }

var fixture = &trusttest.World{Org: testOrg}

func mustRecord(t testing.TB, id string, body schema.Body) schema.Record {
	return fixture.Record(t, id, body)
}
func delivery(t testing.TB, label string) schema.Record { return fixture.Delivery(t, label) }
func execution(t testing.TB, id, vm string, state schema.ExecutionState) schema.Record {
	return fixture.Execution(t, id, vm, state)
}
func result(t testing.TB, exec string, score string) schema.Record {
	return fixture.Result(t, exec, score)
}

type policyRevocation = policy.Revocation

func revokeRequest(p *testPeer, from time.Time) policy.RevokeRequest {
	return policy.RevokeRequest{Network: "test", Peer: p.ID, Serial: p.M.Serial, From: from}
}
