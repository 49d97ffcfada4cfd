package integration

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/examnode/examnode/internal/cluster"
	"github.com/examnode/examnode/schema"
)

func put(t *testing.T, c *cluster.Cluster, i int, key, val string) {
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
	c := makeN(t, 3, testTuning())
	put(t, c, 1, "/results/exec-1", "score=17")
	waitSame(t, c, map[string]string{"/results/exec-1": "score=17"}, 20*time.Second)
}

func TestConcurrentWritersConverge(t *testing.T) {
	c := makeN(t, 3, testTuning())
	want := map[string]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rep, err := c.Node(i).Replica(org)
			if err != nil {
				errs <- err
				return
			}
			for k := range 100 {
				key, val := fmt.Sprintf("/logs/n%d-%03d", i, k), fmt.Sprintf("v%d", k)
				if err := rep.Put(context.Background(), key, []byte(val)); err != nil {
					errs <- err
					return
				}
				mu.Lock()
				want[key] = val
				mu.Unlock()
			}
		}()
	}
	// Concurrent writes to one key from every node: all must agree on one
	// winner, whichever it is.
	for i := range 3 {
		put(t, c, i, "/shared/key", fmt.Sprintf("from-%d", i))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	err := cluster.WaitFor(context.Background(), 30*time.Second, func() (bool, error) {
		var first map[string]string
		for i := range 3 {
			got, err := cluster.Contents(context.Background(), c.Node(i), org)
			if err != nil {
				return false, err
			}
			if d := diff(want, withoutKey(got, "/shared/key")); d != "" {
				return false, fmt.Errorf("node %d: %s", i, d)
			}
			if first == nil {
				first = got
			} else if got["/shared/key"] != first["/shared/key"] {
				return false, fmt.Errorf("nodes disagree on /shared/key: %q vs %q", got["/shared/key"], first["/shared/key"])
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
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
	c := makeN(t, 3, testTuning())
	// Cut VM 2 off from both others.
	c.Partition(2, 0)
	c.Partition(2, 1)
	want := map[string]string{}
	for k := range 30 {
		ka, kb := fmt.Sprintf("/side-a/%02d", k), fmt.Sprintf("/side-b/%02d", k)
		put(t, c, 1, ka, "a")
		put(t, c, 2, kb, "b")
		want[ka], want[kb] = "a", "b"
	}
	got, err := cluster.Contents(context.Background(), c.Node(2), org)
	if err != nil {
		t.Fatal(err)
	}
	if _, leaked := got["/side-a/00"]; leaked {
		t.Fatal("partition leaked: node 2 received a record written on the other side")
	}
	if err := c.Heal(context.Background(), 2, 0); err != nil {
		t.Fatal(err)
	}
	if err := c.Heal(context.Background(), 2, 1); err != nil {
		t.Fatal(err)
	}
	waitSame(t, c, want, 30*time.Second)
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
