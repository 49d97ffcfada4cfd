// Package demo is `examnode demo`: four nodes in one process (a central
// node and VMs of one test centre on 127.0.0.1) that write records, lose
// and regain the network, and report as each record reaches every node.
package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/examnode/examnode/internal/cluster"
	"github.com/examnode/examnode/schema"
)

// Options shape the demo.
type Options struct {
	// VMs is the number of exam VMs of the demo centre (default 3).
	VMs int
	// Records is how many records each node writes in each phase (default 10).
	Records int
	// Timeout bounds each wait for convergence (default 60 s).
	Timeout time.Duration
	// Dir keeps the nodes' data; a temporary directory (removed after) if empty.
	Dir string
}

// Summary is what `examnode demo --json` prints.
type Summary struct {
	Nodes             int      `json:"nodes"`
	Records           int      `json:"records"`
	SecondsToConverge float64  `json:"seconds_to_converge"`
	Phases            []Phase  `json:"phases"`
	OK                bool     `json:"ok"`
	Errors            []string `json:"errors,omitempty"`
}

// Phase is one step of the demo and how long the mesh took to converge.
type Phase struct {
	Name              string  `json:"name"`
	Records           int     `json:"records_written"`
	SecondsToConverge float64 `json:"seconds_to_converge"`
}

// Org is the organisation of the demo's test centre.
const Org = "demo-centre"

// Run starts a central node and VMs of one organisation on 127.0.0.1,
// writes records on different nodes, cuts one VM off and heals it, and
// reports as each record reaches every node. Progress goes to w.
func Run(ctx context.Context, opts Options, w io.Writer) (Summary, error) {
	if opts.VMs <= 0 {
		opts.VMs = 3
	}
	if opts.Records <= 0 {
		opts.Records = 10
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 60 * time.Second
	}
	sum := Summary{Nodes: opts.VMs + 1}
	dir := opts.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "examnode-demo-")
		if err != nil {
			return sum, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	c := cluster.NewCluster(dir, cluster.Options{Network: "demo", Tuning: cluster.FastTuning(), API: "off"})
	defer c.Close()

	say := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	start := time.Now()
	say("starting central and %d VMs of organisation %q on 127.0.0.1 (data under %s)", opts.VMs, Org, dir)
	if _, err := c.Add(ctx, cluster.Spec{Name: "central", Role: schema.RoleCentral, Orgs: []string{Org}}); err != nil {
		return sum, err
	}
	for i := 1; i <= opts.VMs; i++ {
		if _, err := c.Add(ctx, cluster.Spec{Name: fmt.Sprintf("vm-%d", i), Role: schema.RoleVM, Orgs: []string{Org}}); err != nil {
			return sum, err
		}
	}
	for _, m := range c.Members() {
		say("  %-8s %s  %s", m.Spec.Name, m.Spec.Role, m.ID)
	}
	say("nodes up in %.2fs", time.Since(start).Seconds())

	// Phase 1: everyone connected; central publishes, the VMs run exams.
	var w1 []write
	for k := range opts.Records {
		w1 = append(w1, write{0, fmt.Sprintf("/deliveries/d%02d", k), "delivery"})
	}
	for i := 1; i <= opts.VMs; i++ {
		for k := range opts.Records {
			w1 = append(w1, write{i, fmt.Sprintf("/results/vm%d-exec%02d", i, k), fmt.Sprintf("score=%d", k)})
		}
	}
	if err := runPhase(ctx, c, &sum, "all connected: central writes deliveries, every VM writes results", w1, opts.Timeout, say); err != nil {
		return sum, err
	}

	// Phase 2: the last VM loses the network and keeps running its exam.
	last := opts.VMs
	say("cutting %s off from every other node", c.Members()[last].Spec.Name)
	for j := range c.Members() {
		if j != last {
			c.Partition(last, j)
		}
	}
	var w2 []write
	for k := range opts.Records {
		w2 = append(w2, write{last, fmt.Sprintf("/results/offline-exec%02d", k), "score=offline"})
		w2 = append(w2, write{1, fmt.Sprintf("/result-logs/online-%02d", k), "event"})
	}
	if err := writeAll(ctx, c, w2); err != nil {
		return sum, err
	}
	say("wrote %d records on both sides of the cut; healing", len(w2))
	for j := range c.Members() {
		if j != last {
			if err := c.Heal(ctx, last, j); err != nil {
				return sum, err
			}
		}
	}
	if err := runPhase(ctx, c, &sum, "after the cut heals", nil, opts.Timeout, say, w2...); err != nil {
		return sum, err
	}

	all, err := cluster.Contents(ctx, c.Node(0), Org)
	if err != nil {
		return sum, err
	}
	sum.Records = len(all)
	for _, p := range sum.Phases {
		sum.SecondsToConverge += p.SecondsToConverge
	}
	sum.OK = true
	say("converged: %d nodes hold the same %d records", sum.Nodes, sum.Records)
	return sum, nil
}

type write struct {
	node       int
	key, value string
}

func writeAll(ctx context.Context, c *cluster.Cluster, ws []write) error {
	var wg sync.WaitGroup
	errs := make([]error, len(ws))
	for i, wr := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rep, err := c.Node(wr.node).Replica(Org)
			if err == nil {
				err = rep.Put(ctx, wr.key, []byte(wr.value))
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// runPhase writes ws (and waits for pending, already written), then
// reports each record as it reaches every node.
func runPhase(ctx context.Context, c *cluster.Cluster, sum *Summary, name string, ws []write, timeout time.Duration,
	say func(string, ...any), pending ...write) error {
	say("phase: %s", name)
	t0 := time.Now()
	if err := writeAll(ctx, c, ws); err != nil {
		return err
	}
	all := append(append([]write{}, ws...), pending...)
	say("  %d records acknowledged (durable) in %.3fs", len(ws), time.Since(t0).Seconds())
	reported := map[string]bool{}
	members := c.Members()
	err := cluster.WaitFor(ctx, timeout, func() (bool, error) {
		held := map[string]int{}
		for _, m := range members {
			got, err := cluster.Contents(ctx, m.Node, Org)
			if err != nil {
				return false, err
			}
			for _, wr := range all {
				if got[wr.key] == wr.value {
					held[wr.key]++
				}
			}
		}
		done := 0
		for _, wr := range all {
			if held[wr.key] == len(members) {
				done++
				if !reported[wr.key] {
					reported[wr.key] = true
					say("  [%6.3fs] %-28s written on %-8s is on all %d nodes", time.Since(t0).Seconds(), wr.key, members[wr.node].Spec.Name, len(members))
				}
			}
		}
		return done == len(all), nil
	})
	secs := time.Since(t0).Seconds()
	sum.Phases = append(sum.Phases, Phase{Name: name, Records: len(all), SecondsToConverge: secs})
	if err != nil {
		sum.Errors = append(sum.Errors, fmt.Sprintf("%s: not converged after %s: %v", name, timeout, err))
		return fmt.Errorf("demo: %s: not converged after %s: %w", name, timeout, err)
	}
	say("  phase converged in %.3fs", secs)
	return nil
}

// JSON renders the summary.
func (s Summary) JSON() []byte {
	b, _ := json.MarshalIndent(s, "", "  ")
	return append(b, '\n')
}
