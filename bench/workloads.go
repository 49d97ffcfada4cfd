package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// WorkloadFunc runs one workload on a fresh, empty stack. It never fails
// the whole bench: a timeout or an error is recorded in the Result.
type WorkloadFunc func(ctx context.Context, s Stack, p Params) Result

// Workload is one measured scenario.
type Workload struct {
	Name        string
	Description string // one sentence, for the report
	Run         WorkloadFunc
}

// workloads lists every workload in report order.
var workloads = []Workload{
	{"write-single", "One node; N records put one at a time by `writers` concurrent goroutines.", writeSingle},
	{"write-batched", "One node; N records written in batches of `batch` with PutBatch.", writeBatched},
	{"replicate-connected", "Two connected nodes; N records put one at a time (concurrently) on node 0; time until node 1 holds them all.", replicateConnected},
	{"catchup-fresh", "Node 0 puts N records one at a time; then a fresh node joins; time until it holds all N.", catchupFresh},
	{"catchup-overwrite", "Node 0 puts N/10 keys, each overwritten 10 times (N writes); then a fresh node joins; time until it holds N/10 keys.", catchupOverwrite},
	{"converge-three", "Three connected nodes each put `per-node` records one at a time, concurrently; time until all three hold all of them.", convergeThree},
}

// Workloads returns the workload names in report order.
func Workloads() []string {
	names := make([]string, len(workloads))
	for i, w := range workloads {
		names[i] = w.Name
	}
	return names
}

// LookupWorkload returns the workload called name.
func LookupWorkload(name string) (Workload, bool) {
	for _, w := range workloads {
		if w.Name == name {
			return w, true
		}
	}
	return Workload{}, false
}

// Figure is one measured quantity of a run.
type Figure struct {
	Name           string  `json:"name"`
	Unit           string  `json:"unit"`
	Value          float64 `json:"value"`
	HigherIsBetter bool    `json:"higher_is_better"`
}

// Result is the outcome of one run of one workload on one stack.
type Result struct {
	Stack    string   `json:"stack"`
	Workload string   `json:"workload"`
	Run      int      `json:"run,omitempty"` // 1-based repeat number
	Figures  []Figure `json:"figures,omitempty"`
	// Written is how many writes were acknowledged.
	Written int `json:"written"`
	// Want is how many records the checked node(s) must hold.
	Want int `json:"want"`
	// Held is how many records the checked node(s) held at the end: the
	// lowest count among them.
	Held int `json:"held"`
	// TimedOut says the run hit Params.Timeout; Figures then hold only
	// what was measured before.
	TimedOut bool   `json:"timed_out,omitempty"`
	Error    string `json:"error,omitempty"`
	// Seconds is the wall time of the whole workload, setup included.
	Seconds float64 `json:"seconds"`
	// PeakRSSKiB is the child process's peak resident set (0 in process).
	PeakRSSKiB int64 `json:"peak_rss_kib,omitempty"`
	// DiskBytes is the space the stack's data directory takes after Close.
	DiskBytes int64 `json:"disk_bytes,omitempty"`
}

// Figure returns the figure called name.
func (r Result) Figure(name string) (Figure, bool) {
	for _, f := range r.Figures {
		if f.Name == name {
			return f, true
		}
	}
	return Figure{}, false
}

// Figure names shared by the workloads and the report.
const (
	figWriteRate   = "write rate"
	figFromStart   = "time from first write until replicated"
	figAfterAck    = "time from last ack until replicated"
	figCatchup     = "time from join until caught up"
	figCatchupRate = "catch-up rate"
	figReplayRate  = "history replay rate"
)

// run is the state of one workload run.
type run struct {
	s     Stack
	p     Params
	res   Result
	check []int      // nodes whose lowest count is Held
	mu    sync.Mutex // guards res.Written across concurrent putEach calls
	held  int        // lowest count the last wait saw
	waits bool       // a wait ran, so held is what it saw
}

// measure runs body under the workload timeout and turns its outcome into
// a Result: a timeout is not an error, and Held says how far it got.
func measure(ctx context.Context, s Stack, p Params, want int, body func(ctx context.Context, r *run) error) Result {
	r := &run{s: s, p: p, res: Result{Want: want}}
	wctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	start := time.Now()
	err := body(wctx, r)
	r.res.Seconds = time.Since(start).Seconds()
	switch {
	case err == nil:
	case errors.Is(wctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil:
		r.res.TimedOut = true
	default:
		r.res.Error = err.Error()
	}
	r.res.Held = r.finalHeld(ctx)
	return r.res
}

// finalHeld returns the count a wait last saw, or counts the checked nodes
// now with a fresh deadline (the workload's may have passed).
func (r *run) finalHeld(ctx context.Context) int {
	if r.waits || len(r.check) == 0 {
		return r.held
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	held, err := lowestCount(cctx, r.s, r.check)
	if err != nil && r.res.Error == "" {
		r.res.Error = fmt.Sprintf("counting records after the run: %v", err)
	}
	return held
}

// figure appends a figure to the result.
func (r *run) figure(name, unit string, v float64, higherIsBetter bool) {
	r.res.Figures = append(r.res.Figures, Figure{name, unit, v, higherIsBetter})
}

// rate appends a records-per-second figure.
func (r *run) rate(name string, records int, d time.Duration) {
	r.rateIn(name, "records/s", records, d)
}

// rateIn appends a per-second figure in unit.
func (r *run) rateIn(name, unit string, n int, d time.Duration) {
	r.figure(name, unit, float64(n)/d.Seconds(), true)
}

// seconds appends a duration figure.
func (r *run) seconds(name string, d time.Duration) {
	r.figure(name, "s", max(d, 0).Seconds(), false)
}

// addNodes starts n nodes and returns their indexes.
func (r *run) addNodes(ctx context.Context, n int) ([]int, error) {
	ids := make([]int, n)
	for k := range ids {
		id, err := r.s.AddNode(ctx)
		if err != nil {
			return nil, fmt.Errorf("adding node %d: %w", k, err)
		}
		ids[k] = id
	}
	return ids, nil
}

// putEach puts records 0..n-1 on node, one Put at a time from
// Params.Writers goroutines, adding each acknowledgement to Written.
func (r *run) putEach(ctx context.Context, node, n int, rec recordFunc) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	var written atomic.Int64
	for range min(r.p.Writers, n) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				key, value := rec(i)
				if err := r.s.Put(ctx, node, key, value); err != nil {
					cancel(fmt.Errorf("put %s on node %d: %w", key, node, err))
					return
				}
				written.Add(1)
			}
		})
	}
	wg.Wait()
	r.addWritten(int(written.Load()))
	return context.Cause(ctx)
}

// addWritten adds acknowledged writes; concurrent putEach calls share it.
func (r *run) addWritten(n int) {
	r.mu.Lock()
	r.res.Written += n
	r.mu.Unlock()
}

// waitHeld polls until every node in nodes holds want records, publishing
// the lowest count seen so that a timeout reports how far it got.
func (r *run) waitHeld(ctx context.Context, nodes []int, want int) error {
	r.check = nodes
	r.waits = true
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d records on nodes %v: %w", want, nodes, ctx.Err())
		case <-t.C:
		}
		began := time.Now()
		held, err := lowestCount(ctx, r.s, nodes)
		if err != nil {
			if ctx.Err() != nil {
				continue // report the timeout, not the cancelled Count
			}
			return fmt.Errorf("counting records on nodes %v: %w", nodes, err)
		}
		r.held = held
		if held >= want {
			return nil
		}
		t.Reset(max(r.p.Poll, 2*time.Since(began)))
	}
}

// lowestCount returns the smallest Count among nodes.
func lowestCount(ctx context.Context, s Stack, nodes []int) (int, error) {
	lowest := -1
	for _, n := range nodes {
		c, err := s.Count(ctx, n)
		if err != nil {
			return 0, err
		}
		if lowest < 0 || c < lowest {
			lowest = c
		}
	}
	return max(lowest, 0), nil
}

// recordFunc returns the key and value of write i.
type recordFunc func(i int) (string, []byte)

// records returns a recordFunc for distinct keys under prefix.
func records(prefix string, size int) recordFunc {
	return func(i int) (string, []byte) {
		return fmt.Sprintf("/bench/%s/%08d", prefix, i), value(size, uint64(i))
	}
}

// value returns size random bytes determined by seed: incompressible, like
// the sealed result bodies examnode replicates.
func value(size int, seed uint64) []byte {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	v := make([]byte, size)
	_, _ = rand.NewChaCha8(s).Read(v)
	return v
}

// writeSingle measures one-at-a-time writes on one node.
func writeSingle(ctx context.Context, s Stack, p Params) Result {
	return measure(ctx, s, p, p.Records, func(ctx context.Context, r *run) error {
		nodes, err := r.addNodes(ctx, 1)
		if err != nil {
			return err
		}
		r.check = nodes
		start := time.Now()
		if err := r.putEach(ctx, nodes[0], p.Records, records("r", p.ValueSize)); err != nil {
			return err
		}
		r.rate(figWriteRate, p.Records, time.Since(start))
		return nil
	})
}

// writeBatched measures PutBatch on one node.
func writeBatched(ctx context.Context, s Stack, p Params) Result {
	return measure(ctx, s, p, p.Records, func(ctx context.Context, r *run) error {
		nodes, err := r.addNodes(ctx, 1)
		if err != nil {
			return err
		}
		r.check = nodes
		rec := records("r", p.ValueSize)
		start := time.Now()
		for lo := 0; lo < p.Records; lo += p.BatchSize {
			kvs := make([]KV, 0, p.BatchSize)
			for i := lo; i < min(lo+p.BatchSize, p.Records); i++ {
				k, v := rec(i)
				kvs = append(kvs, KV{k, v})
			}
			if err := s.PutBatch(ctx, nodes[0], kvs); err != nil {
				return fmt.Errorf("batch at record %d: %w", lo, err)
			}
			r.addWritten(len(kvs))
		}
		r.rate(figWriteRate, p.Records, time.Since(start))
		return nil
	})
}

// replicateConnected measures replication between two connected nodes
// while one of them writes.
func replicateConnected(ctx context.Context, s Stack, p Params) Result {
	return measure(ctx, s, p, p.Records, func(ctx context.Context, r *run) error {
		nodes, err := r.addNodes(ctx, 2)
		if err != nil {
			return err
		}
		r.check = nodes[1:]
		start := time.Now()
		if err := r.putEach(ctx, nodes[0], p.Records, records("r", p.ValueSize)); err != nil {
			return err
		}
		acked := time.Now()
		r.rate(figWriteRate, p.Records, acked.Sub(start))
		// Polling starts at the last ack: node 1 cannot hold every record
		// before node 0 has written them all, and Count during the writes
		// would slow them.
		if err := r.waitHeld(ctx, nodes[1:], p.Records); err != nil {
			return err
		}
		r.seconds(figFromStart, time.Since(start))
		r.seconds(figAfterAck, time.Since(acked))
		return nil
	})
}

// catchupFresh measures how long a node joining late takes to catch up
// with a history of N one-record writes.
func catchupFresh(ctx context.Context, s Stack, p Params) Result {
	return measure(ctx, s, p, p.Records, func(ctx context.Context, r *run) error {
		return r.catchup(ctx, p.Records, p.Records, records("r", p.ValueSize))
	})
}

// catchupOverwrite is catchupFresh over a history in which each of N/10
// keys was written 10 times, the last time with the final value.
func catchupOverwrite(ctx context.Context, s Stack, p Params) Result {
	keys := p.Records / 10
	rec := func(i int) (string, []byte) {
		return fmt.Sprintf("/bench/o/%08d", i%keys), value(p.ValueSize, uint64(i))
	}
	return measure(ctx, s, p, keys, func(ctx context.Context, r *run) error {
		return r.catchup(ctx, keys*10, keys, rec)
	})
}

// catchup writes writes records on a first node, then adds a fresh node and
// waits until it holds want records.
func (r *run) catchup(ctx context.Context, writes, want int, rec recordFunc) error {
	nodes, err := r.addNodes(ctx, 1)
	if err != nil {
		return err
	}
	r.check = nodes
	start := time.Now()
	if err := r.putEach(ctx, nodes[0], writes, rec); err != nil {
		return err
	}
	r.rate(figWriteRate, writes, time.Since(start))
	r.check = nil // from here on, Held is what the fresh node holds
	joined := time.Now()
	fresh, err := r.addNodes(ctx, 1)
	if err != nil {
		return err
	}
	if err := r.waitHeld(ctx, fresh, want); err != nil {
		return err
	}
	took := time.Since(joined)
	r.seconds(figCatchup, took)
	if writes == want {
		r.rate(figCatchupRate, writes, took)
	} else {
		r.rateIn(figReplayRate, "writes/s", writes, took)
	}
	return nil
}

// convergeThree measures convergence of three nodes writing concurrently.
func convergeThree(ctx context.Context, s Stack, p Params) Result {
	want := 3 * p.PerNode
	return measure(ctx, s, p, want, func(ctx context.Context, r *run) error {
		nodes, err := r.addNodes(ctx, 3)
		if err != nil {
			return err
		}
		r.check = nodes
		start := time.Now()
		errs := make([]error, len(nodes))
		var wg sync.WaitGroup
		for k, n := range nodes {
			wg.Go(func() {
				errs[k] = r.putEach(ctx, n, p.PerNode, records(fmt.Sprintf("n%d", k), p.ValueSize))
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return err
		}
		acked := time.Now()
		r.rate(figWriteRate, want, acked.Sub(start))
		if err := r.waitHeld(ctx, nodes, want); err != nil {
			return err
		}
		r.seconds(figAfterAck, time.Since(acked))
		r.seconds(figFromStart, time.Since(start))
		return nil
	})
}

// runWorkload builds a stack with f under dir, runs w on it, closes it, and
// returns the labelled result; a close error is recorded in the result.
func runWorkload(ctx context.Context, stack string, f Factory, w Workload, p Params, dir string) Result {
	s, err := f(dir)
	if err != nil {
		return Result{Stack: stack, Workload: w.Name, Error: fmt.Sprintf("building stack: %v", err)}
	}
	res := w.Run(ctx, s, p)
	if err := s.Close(); err != nil {
		res.Error = errors.Join(errorOrNil(res.Error), fmt.Errorf("closing stack: %w", err)).Error()
	}
	res.Stack, res.Workload = stack, w.Name
	res.DiskBytes = diskBytes(dir)
	return res
}

// errorOrNil turns a recorded error message back into an error.
func errorOrNil(msg string) error {
	if msg == "" {
		return nil
	}
	return errors.New(msg)
}
