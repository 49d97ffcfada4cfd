// Package integration is the multi-node tests of examnode: real nodes on
// real libp2p (127.0.0.1) and badger, each test the proof of a capability.
// It holds test files only: the cluster they run on is internal/cluster,
// made for a test by internal/clustertest (MakeCluster, EnsureSame).
package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/examnode/examnode/internal/cluster"
	"github.com/examnode/examnode/internal/clustertest"
	"github.com/examnode/examnode/node"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, leakIgnores()...)
}

// leakIgnores names background goroutines of third-party packages that
// are started once per process (not per node) and have no stop function.
func leakIgnores() []goleak.Option {
	return []goleak.Option{
		// go-log's zap sink flusher and opencensus' default worker are
		// process-wide singletons started by package init.
		goleak.IgnoreAnyFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreAnyFunction("github.com/ipfs/go-log/v2/writer.(*MirrorWriter).logRoutine"),
	}
}

const org = "centre-1"

// testTuning puts every periodic backstop (the periodic heads exchange,
// go-ds-crdt's rebroadcast) an hour away: a test that converges under it
// converges without waiting on any timer.
func testTuning() cluster.Options {
	return cluster.Options{Tuning: node.Tuning{
		ExchangeInterval:    node.Duration(time.Hour),
		RebroadcastInterval: node.Duration(time.Hour),
		RedialMax:           node.Duration(time.Second),
	}}
}

// nodes is a cluster, made by makeN or not.
type nodes interface {
	Node(i int) *node.Node
	Members() []*cluster.Member
}

// makeN starts a central node and n-1 VMs of one organisation, all
// connected (see clustertest.MakeCluster: each node logs through t.Log),
// and closes them when the test ends.
func makeN(t *testing.T, n int, opts cluster.Options) *clustertest.Cluster {
	t.Helper()
	return clustertest.MakeCluster(t, n, clustertest.Options{Options: opts, Org: org})
}

// waitSame waits until every running node serves exactly want of org
// through its API.
func waitSame(t *testing.T, c *clustertest.Cluster, want map[string]string, timeout time.Duration) {
	t.Helper()
	c.EnsureSameWithin(t, org, timeout, clustertest.Exactly(want))
}

func diff(want, got map[string]string) string { return clustertest.Diff(want, got) }

// waitConnected waits until every running node of a cluster not made by
// makeN has exchanged heads with every other running node of the
// organisation.
func waitConnected(t *testing.T, c *cluster.Cluster) {
	t.Helper()
	err := cluster.WaitFor(context.Background(), 20*time.Second, func() (bool, error) {
		ms := c.Members()
		for _, m := range ms {
			if m.Node == nil {
				continue
			}
			want := 0
			for _, o := range ms {
				if o != m && o.Node != nil {
					want++
				}
			}
			if got := len(m.Node.Mesh().PeersOf(org)); got < want {
				return false, fmt.Errorf("%s sees %d of %d peers", m.Spec.Name, got, want)
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("cluster did not connect: %v", err)
	}
}
