package node

import (
	"sync"
	"testing"
	"time"

	"github.com/examnode/examnode/internal/testwait"
)

func TestKeyLocksSerialiseOneKeyAndFreeEntries(t *testing.T) {
	var k keyLocks
	unlock := k.lock("record/C1/executions/e1")

	// Another key is free.
	other := k.lock("record/C1/executions/e2")
	other()

	// The same key waits.
	got := make(chan struct{})
	go func() {
		u := k.lock("record/C1/executions/e1")
		close(got)
		u()
	}()
	select {
	case <-got:
		t.Fatal("a second lock of one key did not wait")
	case <-time.After(50 * time.Millisecond):
	}
	unlock()
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("the waiter did not get the lock after unlock")
	}

	// Once nobody holds or waits, no entry is left.
	if !testwait.Until(t, 5*time.Second, time.Millisecond, func() bool { return k.held() == 0 }) {
		t.Fatalf("%d entries left after every unlock", k.held())
	}
}

func TestKeyLocksArePerNode(t *testing.T) {
	var a, b Node
	ua := a.lockRecord("C1", "/executions/e1")
	defer ua()
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.lockRecord("C1", "/executions/e1")()
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("one node's record lock held up another node")
	}
}

func TestKeyLocksConcurrent(t *testing.T) {
	var k keyLocks
	var wg sync.WaitGroup
	counter := 0
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u := k.lock("x")
			counter++
			u()
		}()
	}
	wg.Wait()
	if counter != 50 || k.held() != 0 {
		t.Fatalf("counter %d, %d entries left", counter, k.held())
	}
}
