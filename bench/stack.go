// Package bench measures examnode's replication against raw go-ds-crdt on
// the same workloads, in one run, and writes BENCHMARKS.md.
package bench

import "context"

// KV is one record to write.
type KV struct {
	Key   string
	Value []byte
}

// Stack is one replication stack under measurement: nodes on 127.0.0.1,
// each with its own data directory, replicating one key space (one
// organisation). Implementations must be safe for concurrent Put calls on
// the same node.
type Stack interface {
	// AddNode starts a new node, connects it to every existing node, and
	// returns its index (0 for the first).
	AddNode(ctx context.Context) (int, error)
	// Put writes one record on node i and returns once the stack
	// acknowledges it.
	Put(ctx context.Context, i int, key string, value []byte) error
	// PutBatch writes the records on node i as one batch.
	PutBatch(ctx context.Context, i int, kvs []KV) error
	// Count returns how many records node i holds.
	Count(ctx context.Context, i int) (int, error)
	// Close stops every node and releases everything.
	Close() error
}

// Factory builds an empty stack whose nodes keep their data under dir.
type Factory func(dir string) (Stack, error)
