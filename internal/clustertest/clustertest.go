// Package clustertest runs an internal/cluster cluster inside a test, in
// the manner of hashicorp/raft's MakeCluster: each node's logs go through
// t.Log (prefixed with its name, and silenced once the test ends),
// failures from the test's goroutines are reported through t.Errorf, the
// nodes close on t.Cleanup, partitions are made by groups, and EnsureSame
// checks what every node serves through its HTTP API.
//
// It takes a testing.TB: the examnode binary must not import it (it
// imports internal/cluster only).
package clustertest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/examnode/examnode/crdt"
	"github.com/examnode/examnode/internal/cluster"
	"github.com/examnode/examnode/node"
	"github.com/examnode/examnode/schema"
)

// DefaultOrg is the organisation of a cluster's VMs when Options.Org is
// empty.
const DefaultOrg = "centre-1"

// Options shape a test cluster: the cluster's own options plus what
// MakeCluster starts and how long the Ensure and Wait methods poll.
type Options struct {
	cluster.Options
	// Org is the organisation of the VMs MakeCluster starts (DefaultOrg if
	// empty).
	Org string
	// Specs, if set, are the nodes to start instead of a central node and
	// n-1 VMs of Org; MakeCluster's n must equal len(Specs).
	Specs []cluster.Spec
	// LogLevel is the lowest level of node logs passed to t.Log (the zero
	// value: info). Quiet passes none.
	LogLevel slog.Level
	Quiet    bool
	// NoWait skips waiting, in MakeCluster, until every node has exchanged
	// heads with every other (see WaitConnected).
	NoWait bool
	// Timeout bounds each Ensure and Wait method (default 30 s).
	Timeout time.Duration
}

// Cluster is a cluster.Cluster owned by a test. Its Partition and Heal
// act on groups and on the whole cluster; the embedded cluster's pairwise
// ones are c.Cluster.Partition and c.Cluster.Heal.
type Cluster struct {
	*cluster.Cluster
	t       testing.TB
	org     string
	timeout time.Duration

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// logMu guards ended: after the test ends, t.Log and t.Errorf panic,
	// so node logs are dropped and goroutine failures go to stderr.
	logMu sync.Mutex
	ended bool

	cutMu sync.Mutex
	cut   [][2]int // pairs partitioned by Partition, until Heal
}

// MakeCluster starts n nodes under t.TempDir — a central node and n-1
// VMs of opts.Org, or opts.Specs — each connected to all the others, and
// waits until every node has exchanged heads with every other (unless
// opts.NoWait). The nodes close when the test ends; an error closing them
// fails the test.
func MakeCluster(t testing.TB, n int, opts Options) *Cluster {
	t.Helper()
	dir := t.TempDir() // removed after the cleanups below
	if opts.Org == "" {
		opts.Org = DefaultOrg
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.Specs != nil && len(opts.Specs) != n {
		t.Fatalf("clustertest: %d nodes but %d specs", n, len(opts.Specs))
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Cluster{t: t, org: opts.Org, timeout: opts.Timeout, ctx: ctx, cancel: cancel}
	// Cleanups run last first: the logs stop after the nodes closed.
	t.Cleanup(func() {
		c.logMu.Lock()
		c.ended = true
		c.logMu.Unlock()
	})
	if !opts.Quiet {
		level := opts.LogLevel
		opts.Options.NodeLogger = func(name string) *slog.Logger {
			return slog.New(slog.NewTextHandler(&logWriter{c: c, name: name}, &slog.HandlerOptions{
				Level: level,
				ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
					if len(groups) == 0 && a.Key == slog.TimeKey {
						return slog.Attr{} // t.Log has its own
					}
					return a
				},
			}))
		}
	}
	c.Cluster = cluster.NewCluster(dir, opts.Options)
	t.Cleanup(func() {
		c.cancel()
		c.wg.Wait()
		if err := c.Close(); err != nil {
			t.Errorf("close cluster: %v", err)
		}
	})
	for i := range n {
		spec := cluster.Spec{Role: schema.RoleVM, Orgs: []string{opts.Org}}
		switch {
		case opts.Specs != nil:
			spec = opts.Specs[i]
		case i == 0:
			spec.Role = schema.RoleCentral
		}
		if _, err := c.Add(ctx, spec); err != nil {
			t.Fatalf("start node %d: %v", i, err)
		}
	}
	if !opts.NoWait {
		c.WaitConnected(t)
	}
	return c
}

// logWriter passes each log line of one node to t.Log until the test ends.
type logWriter struct {
	c    *Cluster
	name string
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.c.logMu.Lock()
	defer w.c.logMu.Unlock()
	if !w.c.ended {
		w.c.t.Log(w.name + ": " + strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

var _ io.Writer = (*logWriter)(nil)

// Org is the organisation of the cluster's VMs.
func (c *Cluster) Org() string { return c.org }

// Context is cancelled when the test ends, before the nodes close.
func (c *Cluster) Context() context.Context { return c.ctx }

// Errorf reports a failure from any goroutine: through t.Errorf while the
// test runs, to stderr after it ended (when t would panic).
func (c *Cluster) Errorf(format string, args ...any) {
	c.logMu.Lock()
	defer c.logMu.Unlock()
	if c.ended {
		fmt.Fprintf(os.Stderr, "clustertest: after the test ended: "+format+"\n", args...)
		return
	}
	c.t.Errorf(format, args...)
}

// Go runs fn in a goroutine with the cluster's context; an error it
// returns fails the test (through Errorf, with name). Wait waits for
// every such goroutine; the cluster waits for them before it closes.
func (c *Cluster) Go(name string, fn func(ctx context.Context) error) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		if err := fn(c.ctx); err != nil && !errors.Is(err, context.Canceled) {
			c.Errorf("%s: %v", name, err)
		}
	}()
}

// Wait waits for the goroutines Go started.
func (c *Cluster) Wait() { c.wg.Wait() }

// Partition cuts every connection between nodes of different groups,
// both ways, until Heal. Nodes named in no group form one more group.
// Partitions add up: a pair cut earlier stays cut.
func (c *Cluster) Partition(groups ...[]int) {
	n := len(c.Members())
	group := make([]int, n)
	for i := range group {
		group[i] = len(groups) // the group of the unnamed
	}
	for g, ms := range groups {
		for _, i := range ms {
			if i < 0 || i >= n {
				c.t.Fatalf("clustertest: partition names node %d of %d", i, n)
			}
			group[i] = g
		}
	}
	c.cutMu.Lock()
	defer c.cutMu.Unlock()
	for i := range n {
		for j := i + 1; j < n; j++ {
			if group[i] != group[j] && !slices.Contains(c.cut, [2]int{i, j}) {
				c.Cluster.Partition(i, j)
				c.cut = append(c.cut, [2]int{i, j})
			}
		}
	}
}

// Heal undoes every Partition and redials the pairs it cut; a failed dial
// fails the test.
func (c *Cluster) Heal() {
	c.t.Helper()
	c.cutMu.Lock()
	cut := c.cut
	c.cut = nil
	c.cutMu.Unlock()
	for _, p := range cut {
		if err := c.Cluster.Heal(c.ctx, p[0], p[1]); err != nil {
			c.Errorf("heal %d-%d: %v", p[0], p[1], err)
		}
	}
}

// FullyConnect heals every partition and waits until every running node
// has exchanged heads with every other.
func (c *Cluster) FullyConnect() {
	c.t.Helper()
	c.Heal()
	c.WaitConnected(c.t)
}

// WaitConnected waits until every running node has exchanged heads with
// every other running node of the cluster's organisation.
func (c *Cluster) WaitConnected(t testing.TB) {
	t.Helper()
	err := cluster.WaitFor(c.ctx, c.timeout, func() (bool, error) {
		ms := c.Members()
		for _, m := range ms {
			if m.Node == nil {
				continue
			}
			want := 0
			for _, o := range ms {
				if o != m && o.Node != nil {
					want++
				}
			}
			if got := len(m.Node.Mesh().PeersOf(c.org)); got < want {
				return false, fmt.Errorf("%s sees %d of %d peers", m.Spec.Name, got, want)
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("cluster did not connect: %v", err)
	}
}

// Client is a client of member i's API (which must be on).
func (c *Cluster) Client(i int) *node.Client {
	n := c.Node(i)
	if n == nil {
		return nil
	}
	return &node.Client{Addr: n.APIAddr(), Token: n.Token()}
}

// Served is what member i serves of org through its API's listing
// (GET /v1/orgs/{org}/raw with values: on a gated node, the verified
// view), key by key, without the reserved keys (memberships,
// revocations). A binary value reads as "binary:<size>".
func (c *Cluster) Served(ctx context.Context, i int, org string) (map[string]string, error) {
	cl := c.Client(i)
	if cl == nil {
		return nil, fmt.Errorf("node %d is stopped", i)
	}
	if cl.Addr == "" {
		return nil, fmt.Errorf("node %d has no API", i)
	}
	// Large pages: each page is a query from the start of the view.
	const page = 50_000
	out := map[string]string{}
	for off := 0; ; off += page {
		es, err := cl.List(ctx, org, "/", true, off, page)
		if err != nil {
			return nil, err
		}
		for _, e := range es {
			if crdt.IsReserved(e.Key) {
				continue
			}
			v := e.Value
			if e.Binary {
				v = fmt.Sprintf("binary:%d", e.Size)
			}
			out[e.Key] = v
		}
		if len(es) < page {
			return out, nil
		}
	}
}

// EnsureSame polls until every running node serves the same view of org
// through its API (see Served) and that view passes every cond, then
// returns it; else, after the cluster's Timeout, it fails the test with
// the last difference. It calls t.Fatalf: call it from the test's
// goroutine.
func (c *Cluster) EnsureSame(t testing.TB, org string, conds ...func(served map[string]string) error) map[string]string {
	t.Helper()
	return c.EnsureSameWithin(t, org, c.timeout, conds...)
}

// EnsureSameWithin is EnsureSame with its own timeout.
func (c *Cluster) EnsureSameWithin(t testing.TB, org string, timeout time.Duration, conds ...func(served map[string]string) error) map[string]string {
	t.Helper()
	var same map[string]string
	err := poll(c.ctx, timeout, func() error {
		same = nil
		var first string
		for i, m := range c.Members() {
			if m.Node == nil {
				continue
			}
			got, err := c.Served(c.ctx, i, org)
			if err != nil {
				return fmt.Errorf("%s: %w", m.Spec.Name, err)
			}
			if same == nil {
				same, first = got, m.Spec.Name
				continue
			}
			if d := Diff(same, got); d != "" {
				return fmt.Errorf("%s serves, against %s: %s", m.Spec.Name, first, d)
			}
		}
		for _, cond := range conds {
			if err := cond(same); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("nodes do not serve the same %s: %v", org, err)
	}
	return same
}

// poll runs check until it returns nil or timeout passes, and then
// returns the last error. Between checks it waits 20 ms, or as long as
// the last check took if longer: reading every node's view of a large
// organisation through the API must not starve the nodes it waits on.
func poll(ctx context.Context, timeout time.Duration, check func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		start := time.Now()
		err := check()
		if err == nil {
			return nil
		}
		t := time.NewTimer(max(20*time.Millisecond, time.Since(start)))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

// Exactly is an EnsureSame condition: the view is want.
func Exactly(want map[string]string) func(map[string]string) error {
	return func(got map[string]string) error {
		if d := Diff(want, got); d != "" {
			return errors.New(d)
		}
		return nil
	}
}

// Diff describes how got differs from want ("" if it does not).
func Diff(want, got map[string]string) string {
	missing, wrong := 0, 0
	var example string
	for _, k := range slices.Sorted(maps.Keys(want)) {
		g, ok := got[k]
		switch {
		case !ok:
			missing++
		case g != want[k]:
			wrong++
		default:
			continue
		}
		if example == "" {
			example = k
		}
	}
	extra := len(got) - (len(want) - missing)
	if missing == 0 && wrong == 0 && extra == 0 {
		return ""
	}
	if example == "" {
		for _, k := range slices.Sorted(maps.Keys(got)) {
			if _, ok := want[k]; !ok {
				example = k
				break
			}
		}
	}
	return fmt.Sprintf("%d missing, %d differ, %d extra (e.g. %s)", missing, wrong, extra, example)
}
