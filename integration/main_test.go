package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/examnode/examnode/internal/cluster"
	"github.com/examnode/examnode/node"
	"github.com/examnode/examnode/schema"
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

// makeN starts a central node and n-1 VMs of one organisation, all
// connected, and closes them when the test ends.
func makeN(t *testing.T, n int, opts cluster.Options) *cluster.Cluster {
	t.Helper()
	c := cluster.NewCluster(t.TempDir(), opts)
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close cluster: %v", err)
		}
	})
	ctx := context.Background()
	for i := range n {
		spec := cluster.Spec{Role: schema.RoleVM, Orgs: []string{org}}
		if i == 0 {
			spec.Role = schema.RoleCentral
		}
		if _, err := c.Add(ctx, spec); err != nil {
			t.Fatalf("start node %d: %v", i, err)
		}
	}
	waitConnected(t, c)
	return c
}

// waitConnected waits until every running node has exchanged heads with
// every other running node of the organisation.
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

// waitSame waits until every running node holds exactly want.
func waitSame(t *testing.T, c *cluster.Cluster, want map[string]string, timeout time.Duration) {
	t.Helper()
	ctx := context.Background()
	err := cluster.WaitFor(ctx, timeout, func() (bool, error) {
		for _, m := range c.Members() {
			if m.Node == nil {
				continue
			}
			got, err := cluster.Contents(ctx, m.Node, org)
			if err != nil {
				return false, err
			}
			if d := diff(want, got); d != "" {
				return false, fmt.Errorf("%s: %s", m.Spec.Name, d)
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("nodes did not converge: %v", err)
	}
}

func diff(want, got map[string]string) string {
	missing, wrong := 0, 0
	var example string
	for k, v := range want {
		g, ok := got[k]
		switch {
		case !ok:
			missing++
			example = k
		case g != v:
			wrong++
			example = k
		}
	}
	extra := len(got) - (len(want) - missing)
	if missing == 0 && wrong == 0 && extra == 0 {
		return ""
	}
	return fmt.Sprintf("%d missing, %d differ, %d extra (e.g. %s)", missing, wrong, extra, example)
}
