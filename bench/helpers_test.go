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

// leakOptions are goroutines goleak must ignore. None: the raw stack stops
// every goroutine it starts (the broadcaster's drain goroutine in
// go-ds-crdt is not waited for, but exits right after the context is
// cancelled, within goleak's retries).
var leakOptions []goleak.Option

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
