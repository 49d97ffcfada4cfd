package clustertest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/examnode/examnode/internal/cluster"
	"github.com/examnode/examnode/node"
)

func fast() cluster.Options {
	return cluster.Options{Tuning: node.Tuning{
		ExchangeInterval:    node.Duration(time.Hour),
		RebroadcastInterval: node.Duration(time.Hour),
		RedialMax:           node.Duration(time.Second),
	}}
}

// recorder is a testing.TB that keeps what Log and Errorf report (and
// does not fail the real test for Errorf).
type recorder struct {
	testing.TB
	mu     sync.Mutex
	logs   []string
	errors []string
}

func (r *recorder) Log(args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.logs = append(r.logs, fmt.Sprint(args...))
}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func (r *recorder) snapshot() (logs, errs []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.logs), slices.Clone(r.errors)
}

// Node logs reach t.Log prefixed with the node's name, and a goroutine's
// error reaches t.Errorf with the goroutine's name.
func TestLogsAndGoroutineFailuresReachTheTest(t *testing.T) {
	r := &recorder{TB: t}
	c := MakeCluster(r, 2, Options{Options: fast(), LogLevel: -4})
	c.Go("failing writer", func(context.Context) error { return errors.New("boom") })
	c.Go("cancelled", func(ctx context.Context) error { return context.Canceled })
	c.Wait()
	logs, errs := r.snapshot()
	if len(errs) != 1 || errs[0] != "failing writer: boom" {
		t.Errorf("errors reported: %q, want one \"failing writer: boom\"", errs)
	}
	for _, name := range []string{"central-0", "vm-1"} {
		if !slices.ContainsFunc(logs, func(l string) bool { return strings.HasPrefix(l, name+": ") }) {
			t.Errorf("no log line of %s among %d lines", name, len(logs))
		}
	}
}

// Partition cuts the pairs across groups (the unnamed nodes forming one
// more group): a write on one side does not reach the other until Heal,
// and EnsureSame then sees every node serve it.
func TestPartitionByGroupsAndHeal(t *testing.T) {
	c := MakeCluster(t, 4, Options{Options: fast(), Quiet: true})
	c.Partition([]int{0, 1}, []int{2})
	want := [][2]int{{0, 2}, {0, 3}, {1, 2}, {1, 3}, {2, 3}}
	if !slices.Equal(c.cut, want) {
		t.Fatalf("cut %v, want %v", c.cut, want)
	}
	ctx := context.Background()
	if _, err := c.Client(0).Put(ctx, c.Org(), "/side/a", []byte("a")); err != nil {
		t.Fatal(err)
	}
	// Node 1 (same side) gets it; nodes 2 and 3 do not.
	err := cluster.WaitFor(ctx, 20*time.Second, func() (bool, error) {
		got, err := c.Served(ctx, 1, c.Org())
		return got["/side/a"] == "a", err
	})
	if err != nil {
		t.Fatalf("node 1 did not get the write of its side: %v", err)
	}
	for _, i := range []int{2, 3} {
		got, err := c.Served(ctx, i, c.Org())
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := got["/side/a"]; ok {
			t.Fatalf("the partition leaked to node %d", i)
		}
	}
	c.FullyConnect()
	if len(c.cut) != 0 {
		t.Fatalf("still cut after FullyConnect: %v", c.cut)
	}
	got := c.EnsureSame(t, c.Org(), Exactly(map[string]string{"/side/a": "a"}))
	if len(got) != 1 {
		t.Fatalf("served %v", got)
	}
}

func TestDiff(t *testing.T) {
	want := map[string]string{"/a": "1", "/b": "2"}
	for _, tc := range []struct {
		got  map[string]string
		diff string
	}{
		{map[string]string{"/a": "1", "/b": "2"}, ""},
		{map[string]string{"/a": "1"}, "1 missing, 0 differ, 0 extra (e.g. /b)"},
		{map[string]string{"/a": "1", "/b": "3"}, "0 missing, 1 differ, 0 extra (e.g. /b)"},
		{map[string]string{"/a": "1", "/b": "2", "/c": "3"}, "0 missing, 0 differ, 1 extra (e.g. /c)"},
	} {
		if d := Diff(want, tc.got); d != tc.diff {
			t.Errorf("Diff(%v) = %q, want %q", tc.got, d, tc.diff)
		}
	}
}
