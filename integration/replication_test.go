package integration

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/examnode/examnode/internal/cluster"
	"github.com/examnode/examnode/internal/clustertest"
	"github.com/examnode/examnode/schema"
)

func put(t *testing.T, c nodes, i int, key, val string) {
	t.Helper()
	rep, err := c.Node(i).Replica(org)
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.Put(context.Background(), key, []byte(val)); err != nil {
		t.Fatalf("put %s on node %d: %v", key, i, err)
	}
}

func TestRecordReachesOtherNodes(t *testing.T) {
	c := clustertest.MakeCluster(t, 3, clustertest.Options{Options: testTuning(), Org: org})
	put(t, c, 1, "/results/exec-1", "score=17")
	c.EnsureSame(t, org, clustertest.Exactly(map[string]string{"/results/exec-1": "score=17"}))
}

func TestConcurrentWritersConverge(t *testing.T) {
	c := clustertest.MakeCluster(t, 3, clustertest.Options{Options: testTuning(), Org: org})
	want := map[string]string{}
	var mu sync.Mutex
	for i := range 3 {
		c.Go(fmt.Sprintf("writer on node %d", i), func(ctx context.Context) error {
			rep, err := c.Node(i).Replica(org)
			if err != nil {
				return err
			}
			for k := range 100 {
				key, val := fmt.Sprintf("/logs/n%d-%03d", i, k), fmt.Sprintf("v%d", k)
				if err := rep.Put(ctx, key, []byte(val)); err != nil {
					return err
				}
				mu.Lock()
				want[key] = val
				mu.Unlock()
			}
			return nil
		})
	}
	// Concurrent writes to one key from every node: all must agree on one
	// winner, whichever it is.
	for i := range 3 {
		put(t, c, i, "/shared/key", fmt.Sprintf("from-%d", i))
	}
	c.Wait()
	if t.Failed() {
		t.FailNow()
	}
	// Every node serves the same view: every writer's records and one
	// winner on /shared/key.
	c.EnsureSame(t, org, func(got map[string]string) error {
		if d := diff(want, withoutKey(got, "/shared/key")); d != "" {
			return errors.New(d)
		}
		if _, ok := got["/shared/key"]; !ok {
			return errors.New("/shared/key is missing")
		}
		return nil
	})
}

func withoutKey(m map[string]string, k string) map[string]string {
	out := make(map[string]string, len(m))
	for kk, v := range m {
		if kk != k {
			out[kk] = v
		}
	}
	return out
}

func TestLateJoinerCatchesUp(t *testing.T) {
	c := makeN(t, 2, testTuning())
	want := map[string]string{}
	for k := range 200 {
		key, val := fmt.Sprintf("/executions/e%03d", k), fmt.Sprintf("state-%d", k)
		put(t, c, k%2, key, val)
		want[key] = val
	}
	if _, err := c.Add(context.Background(), cluster.Spec{Role: schema.RoleVM, Orgs: []string{org}}); err != nil {
		t.Fatal(err)
	}
	waitSame(t, c, want, 30*time.Second)
}

func TestRestartKeepsDataAndCatchesUp(t *testing.T) {
	c := makeN(t, 3, testTuning())
	want := map[string]string{}
	for k := range 50 {
		key := fmt.Sprintf("/before/%02d", k)
		put(t, c, 2, key, "b")
		want[key] = "b"
	}
	waitSame(t, c, want, 20*time.Second)
	if err := c.Stop(2); err != nil {
		t.Fatal(err)
	}
	for k := range 50 {
		key := fmt.Sprintf("/while-down/%02d", k)
		put(t, c, k%2, key, "w")
		want[key] = "w"
	}
	if err := c.Restart(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	waitSame(t, c, want, 30*time.Second)
}

func TestPartitionHeals(t *testing.T) {
	c := clustertest.MakeCluster(t, 3, clustertest.Options{Options: testTuning(), Org: org})
	// Cut VM 2 off from both others.
	c.Partition([]int{0, 1}, []int{2})
	want := map[string]string{}
	for k := range 30 {
		ka, kb := fmt.Sprintf("/side-a/%02d", k), fmt.Sprintf("/side-b/%02d", k)
		put(t, c, 1, ka, "a")
		put(t, c, 2, kb, "b")
		want[ka], want[kb] = "a", "b"
	}
	got, err := c.Served(context.Background(), 2, org)
	if err != nil {
		t.Fatal(err)
	}
	if _, leaked := got["/side-a/00"]; leaked {
		t.Fatal("partition leaked: node 2 received a record written on the other side")
	}
	c.Heal()
	c.EnsureSame(t, org, clustertest.Exactly(want))
}

func TestCentralOpensOrganisationsOfItsPeers(t *testing.T) {
	c := cluster.NewCluster(t.TempDir(), testTuning())
	t.Cleanup(func() { _ = c.Close() })
	ctx := context.Background()
	if _, err := c.Add(ctx, cluster.Spec{Role: schema.RoleCentral}); err != nil {
		t.Fatal(err)
	}
	for _, o := range []string{"centre-a", "centre-b"} {
		if _, err := c.Add(ctx, cluster.Spec{Role: schema.RoleVM, Orgs: []string{o}, Peers: []int{0}}); err != nil {
			t.Fatal(err)
		}
	}
	for i, o := range map[int]string{1: "centre-a", 2: "centre-b"} {
		rep, err := c.Node(i).Replica(o)
		if err != nil {
			t.Fatal(err)
		}
		if err := rep.Put(ctx, "/results/r1", []byte(o)); err != nil {
			t.Fatal(err)
		}
	}
	err := cluster.WaitFor(ctx, 20*time.Second, func() (bool, error) {
		for _, o := range []string{"centre-a", "centre-b"} {
			rep, err := c.Node(0).Replica(o)
			if err != nil {
				return false, err
			}
			v, err := rep.Get(ctx, "/results/r1")
			if err != nil || string(v) != o {
				return false, fmt.Errorf("central has %q for %s: %v", v, o, err)
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A VM holds only its own organisation.
	if _, err := c.Node(1).Replica("centre-b"); err == nil {
		t.Fatal("vm of centre-a holds centre-b")
	}
}
