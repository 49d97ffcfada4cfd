// Package benchstack is examnode's stack for the benchmark (package
// bench): VMs of one organisation in an in-process cluster.
package benchstack

import (
	"context"
	"fmt"

	"github.com/examnode/examnode/bench"
	"github.com/examnode/examnode/crdt"
	"github.com/examnode/examnode/internal/cluster"
	"github.com/examnode/examnode/node"
	"github.com/examnode/examnode/schema"
)

// benchOrg is the organisation the benchmark writes into.
const benchOrg = "bench-centre"

// Factory builds examnode's stack for the benchmark: VMs of one
// organisation with the daemon's default tuning (no shortened timers).
func Factory(dir string) (bench.Stack, error) {
	return &benchStack{c: cluster.NewCluster(dir, cluster.Options{Network: "bench", API: "off", Tuning: node.Tuning{}})}, nil
}

type benchStack struct{ c *cluster.Cluster }

func (s *benchStack) AddNode(ctx context.Context) (int, error) {
	m, err := s.c.Add(ctx, cluster.Spec{Role: schema.RoleVM, Orgs: []string{benchOrg}})
	if err != nil {
		return 0, err
	}
	for i, x := range s.c.Members() {
		if x == m {
			return i, nil
		}
	}
	return 0, fmt.Errorf("benchstack: node vanished")
}

func (s *benchStack) replica(i int) (*crdt.Replica, error) {
	n := s.c.Node(i)
	if n == nil {
		return nil, fmt.Errorf("benchstack: node %d is stopped", i)
	}
	return n.Replica(benchOrg)
}

func (s *benchStack) Put(ctx context.Context, i int, key string, value []byte) error {
	r, err := s.replica(i)
	if err != nil {
		return err
	}
	return r.Put(ctx, key, value)
}

func (s *benchStack) PutBatch(ctx context.Context, i int, kvs []bench.KV) error {
	r, err := s.replica(i)
	if err != nil {
		return err
	}
	ops := make([]crdt.Op, len(kvs))
	for j, kv := range kvs {
		ops[j] = crdt.Op{Key: kv.Key, Value: kv.Value}
	}
	return r.Apply(ctx, ops)
}

func (s *benchStack) Count(ctx context.Context, i int) (int, error) {
	r, err := s.replica(i)
	if err != nil {
		return 0, err
	}
	return r.Count(ctx, "/")
}

func (s *benchStack) Close() error { return s.c.Close() }
