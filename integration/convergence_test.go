package integration

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/examnode/examnode/internal/cluster"
	"github.com/examnode/examnode/internal/clustertest"
	"github.com/examnode/examnode/schema"
)

// writeConcurrently puts n records on node i from 32 writers, one record
// per call, and returns them.
func writeConcurrently(t *testing.T, c nodes, i int, prefix string, n int) map[string]string {
	t.Helper()
	rep, err := c.Node(i).Replica(org)
	if err != nil {
		t.Fatal(err)
	}
	want := make(map[string]string, n)
	for k := range n {
		want[fmt.Sprintf("/%s/%05d", prefix, k)] = fmt.Sprintf("v%d", k)
	}
	keys := make([]string, 0, n)
	for k := range want {
		keys = append(keys, k)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				j := int(next.Add(1)) - 1
				if j >= len(keys) {
					return
				}
				if err := rep.Put(context.Background(), keys[j], []byte(want[keys[j]])); err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		t.Fatal(err)
	}
	return want
}

func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// At the benchmark's sizes: 10,000 records written one per call by 32
// writers reach a connected peer, and a fresh peer catches up on them, with
// every periodic timer an hour away.
func TestTenThousandRecordsConvergeWithoutTimers(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 10,000 records")
	}
	c := makeN(t, 2, testTuning())
	want := writeConcurrently(t, c, 1, "results", 10_000)
	acked := time.Now()
	waitSame(t, c, want, 2*time.Minute)
	t.Logf("connected peer holds all 10,000 records %.2fs after the last ack", time.Since(acked).Seconds())
	joined := time.Now()
	if _, err := c.Add(context.Background(), cluster.Spec{Role: schema.RoleVM, Orgs: []string{org}}); err != nil {
		t.Fatal(err)
	}
	waitSame(t, c, want, 2*time.Minute)
	t.Logf("fresh peer caught up on 10,000 records in %.2fs", time.Since(joined).Seconds())
}

// writeOnEvery writes n records on every node of c at once and returns
// all of them.
func writeOnEvery(t *testing.T, c nodes, prefix string, n int) map[string]string {
	t.Helper()
	var wg sync.WaitGroup
	parts := make([]map[string]string, len(c.Members()))
	for i := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			parts[i] = writeConcurrently(t, c, i, fmt.Sprintf("%s%d", prefix, i), n)
		}()
	}
	wg.Wait()
	return merge(parts...)
}

// Three peers writing concurrently converge, with timers an hour away.
func TestThreeWritersConvergeWithoutTimers(t *testing.T) {
	c := makeN(t, 3, testTuning())
	waitSame(t, c, writeOnEvery(t, c, "n", 1000), time.Minute)
}

// Every gossipsub announcement is dropped on purpose: heads travel only
// by the direct exchange after each commit, and the nodes still converge,
// with no timer to fall back on.
func TestConvergesWhenEveryAnnouncementIsDropped(t *testing.T) {
	opts := testTuning()
	opts.DropGossip = true
	c := makeN(t, 3, opts)
	waitSame(t, c, writeOnEvery(t, c, "d", 300), time.Minute)
	dropped := uint64(0)
	for _, m := range c.Members() {
		st, err := m.Node.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		dropped += st.Replicas[0].Announcements.Dropped
	}
	if dropped == 0 {
		t.Fatal("no announcement was dropped: the knob did nothing")
	}
	t.Logf("%d gossipsub announcements dropped on purpose", dropped)
}

// Each node drops half the gossipsub announcements it receives, at random:
// the announcements that pass and the direct exchange after each commit
// still bring every node to serve the same records, with no timer to fall
// back on.
func TestConvergesWhenHalfTheAnnouncementsAreDropped(t *testing.T) {
	opts := clustertest.Options{Options: testTuning(), Org: org, Timeout: time.Minute}
	opts.GossipDropProbability = 0.5
	c := clustertest.MakeCluster(t, 3, opts)
	c.EnsureSame(t, org, clustertest.Exactly(writeOnEvery(t, c, "h", 300)))
	var dropped, received uint64
	for i := range c.Members() {
		st, err := c.Client(i).Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		dropped += st.Replicas[0].Announcements.Dropped
		received += st.Replicas[0].Announcements.Received
	}
	if dropped == 0 || received == 0 {
		t.Fatalf("%d announcements dropped and %d received: the probability is not applied", dropped, received)
	}
	t.Logf("%d gossipsub announcements dropped on purpose, %d received", dropped, received)
}
