package bench

import (
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
		Timeout:   30 * time.Second,
		Poll:      20 * time.Millisecond,
	}
}

// leakOptions are goroutines goleak must ignore. None: the raw stack stops
// every goroutine it starts (the broadcaster's drain goroutine in
// go-ds-crdt is not waited for, but exits right after the context is
// cancelled, within goleak's retries).
var leakOptions []goleak.Option
