// Package testwait polls a condition until a deadline, for tests that
// wait for something to happen without sleeping for a fixed time. It
// imports testing: the binary must not import it.
package testwait

import (
	"testing"
	"time"
)

// Until calls cond every interval until it holds or timeout has passed
// (or the test ends), and says whether it held.
func Until(t testing.TB, timeout, interval time.Duration, cond func() bool) bool {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			return cond()
		case <-tick.C:
		case <-t.Context().Done():
			return false
		}
	}
	return true
}
