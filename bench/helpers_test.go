package bench

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

// testStack is the raw stack with a one-second rebroadcast, so that
// convergence that waits on a rebroadcast takes seconds, not minutes.
const testStack = "raw-1s"

func init() {
	Register(testStack, RawFactory(RawOptions{RebroadcastInterval: time.Second}))
}

// smallParams sizes the workloads for tests.
func smallParams() Params {
	return Params{
		Records:   200,
		ValueSize: 1024,
		Writers:   8,
		BatchSize: 20,
		PerNode:   70,
		Timeout:   60 * time.Second, // a bound, not a wait: runs take seconds
		Poll:      20 * time.Millisecond,
	}
}

// leakOptions are goroutines goleak must ignore. The raw stack stops every
// goroutine it starts (the broadcaster's drain goroutine in go-ds-crdt is
// not waited for, but exits right after the context is cancelled, within
// goleak's retries). One goroutine of go-ds-crdt v0.6.8 itself can outlive
// a Close that interrupts a DAG walk: GetDeltas (ipld.go:50-63) sends each
// delta on a channel without watching the context, and once the walk has
// stopped reading ("error processing new head: ... context canceled") the
// send blocks for ever. The raw stack is go-ds-crdt as its README uses it,
// so this is upstream's leak, not the stack's; it was seen once in a full
// run (TestRawWorkloads, TestRawStackClose) and is ignored by name only.
var leakOptions = []goleak.Option{
	goleak.IgnoreTopFunction("github.com/ipfs/go-ds-crdt.(*crdtNodeGetter).GetDeltas.func1"),
}

// verifyNoLeaks fails t if goroutines outlive the test. It polls for up to
// ten seconds, since a loaded machine may take longer than goleak's own
// retries (about half a second) to let the goroutines of a closed stack
// return.
func verifyNoLeaks(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := goleak.Find(leakOptions...) // retries for ~0.5 s itself
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Error(err)
			return
		}
	}
}
