package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/examnode/examnode/internal/cluster"
)

// A connected peer that has not yet fetched this node's last commit shows
// behind by one delta, in the API and in the metrics, until the sampler's
// reconciling exchange finds it caught up. Gossip is dropped and the heads
// push after merges is off, so heads travel only by the sampler's
// exchanges (seconds apart) and the order of events is fixed: the exchange
// after vm1's commit carries central's heads from before it, and vm1 sees
// central behind until its next exchange. (With the push on, central tells
// vm1 its new heads within milliseconds: too short a state to observe
// reliably on a loaded machine.)
func TestConnectedPeerBehindThenInSync(t *testing.T) {
	opts := testTuning()
	opts.DropGossip = true
	opts.Tuning.HeadsPush = -1
	c := makeN(t, 2, opts)
	ctx := context.Background()
	central, vm1 := c.Node(0), c.Node(1)
	waitState(t, vm1, central.ID().String(), "in sync")

	if _, err := apiClient(vm1).Put(ctx, org, "/results/r1", []byte("v")); err != nil {
		t.Fatal(err)
	}
	behind := fmt.Sprintf(`examnode_peer_behind_deltas{org=%q,peer=%q} `, org, central.ID())
	state := fmt.Sprintf(`examnode_peer_sync_state{org=%q,peer=%q,state=`, org, central.ID())
	metric := func(prefix string) (string, error) {
		b, err := apiClient(vm1).Metrics(ctx)
		if err != nil {
			return "", err
		}
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, prefix) {
				return strings.TrimPrefix(l, prefix), nil
			}
		}
		return "", fmt.Errorf("no %s in the metrics", prefix)
	}
	err := cluster.WaitFor(ctx, 10*time.Second, func() (bool, error) {
		v, err := metric(behind)
		return v == "1", err
	})
	if err != nil {
		t.Fatalf("vm1 never saw central one delta behind: %v", err)
	}
	ps := waitState(t, vm1, central.ID().String(), "in sync")
	if ps.Behind != 0 || ps.Missing != 0 || !ps.Connected || ps.HeadsAt.IsZero() {
		t.Fatalf("vm1's view of central once in sync: %+v", ps)
	}
	if v, err := metric(behind); err != nil || v != "0" {
		t.Fatalf("behind metric once in sync: %q, %v", v, err)
	}
	if v, err := metric(state); err != nil || v != `"in sync"} 1` {
		t.Fatalf("state metric once in sync: %q, %v", v, err)
	}
	got, err := cluster.Contents(ctx, central, org)
	if err != nil || got["/results/r1"] != "v" {
		t.Fatalf("central holds %v, %v", got, err)
	}
}
