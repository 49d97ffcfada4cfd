// Package scale is `examnode bench --scale`: a central node (a child
// process) with N organisations and one in-process VM per organisation,
// measured for idle CPU, memory, goroutines and write latency.
package scale

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/examnode/examnode/crdt"
	"github.com/examnode/examnode/internal/cluster"
	"github.com/examnode/examnode/node"
	"github.com/examnode/examnode/schema"
)

// Options shape the central-scale measurement.
type Options struct {
	// Exe runs examnode (e.g. {os.Args[0]}); the central node runs as
	// `Exe run --dir D` in its own process, so its CPU and memory are its own.
	Exe []string
	// Orgs are the organisation counts to measure, e.g. 10, 50, 200.
	Orgs []int
	// Idle is how long idle CPU is sampled (default 30 s: two periodic
	// exchange rounds).
	Idle time.Duration
	// Samples is how many organisations get a timed write (default 20).
	Samples int
	// Dir holds the nodes' data (a temporary directory if empty).
	Dir      string
	Progress io.Writer
}

// Result is one row of the central-scale table.
type Result struct {
	Orgs           int     `json:"orgs"`
	IdleCPUPercent float64 `json:"idle_cpu_percent_of_one_core"`
	RSSBytes       uint64  `json:"rss_bytes"`
	PeakRSSBytes   uint64  `json:"peak_rss_bytes"`
	Goroutines     int     `json:"goroutines"`
	WriteP50       float64 `json:"write_to_vm_p50_seconds"`
	WriteMax       float64 `json:"write_to_vm_max_seconds"`
	SetupSeconds   float64 `json:"setup_seconds"`
}

// Run starts, for each count N, a central node (a child process)
// configured with N organisations and one VM per organisation (in this
// process), then measures the central's idle CPU, memory and goroutines,
// and how long a write on central takes to reach its organisation's VM.
func Run(ctx context.Context, opts Options) ([]Result, error) {
	if len(opts.Exe) == 0 {
		return nil, errors.New("scale: scale needs the examnode command")
	}
	if opts.Idle <= 0 {
		opts.Idle = 30 * time.Second
	}
	if opts.Samples <= 0 {
		opts.Samples = 20
	}
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	root := opts.Dir
	if root == "" {
		d, err := os.MkdirTemp("", "examnode-scale-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		root = d
	}
	var out []Result
	for _, n := range opts.Orgs {
		r, err := scaleOnce(ctx, opts, filepath.Join(root, fmt.Sprintf("orgs-%d", n)), n)
		if err != nil {
			return out, fmt.Errorf("scale with %d organisations: %w", n, err)
		}
		fmt.Fprintf(opts.Progress, "scale %4d orgs: idle CPU %.2f%%, RSS %s, goroutines %d, write→VM p50 %.3fs max %.3fs\n",
			r.Orgs, r.IdleCPUPercent, mib(r.RSSBytes), r.Goroutines, r.WriteP50, r.WriteMax)
		out = append(out, r)
	}
	return out, nil
}

func mib(b uint64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

func scaleOrg(i int) string { return fmt.Sprintf("centre-%03d", i) }

func scaleOnce(ctx context.Context, opts Options, dir string, n int) (Result, error) {
	res := Result{Orgs: n}
	t0 := time.Now()
	centralDir := filepath.Join(dir, "central")
	cfg := node.DefaultConfig(schema.RoleCentral)
	cfg.Network = "scale"
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.API = "127.0.0.1:0"
	cfg.LANDiscovery = false
	cfg.Debug = true // the raw routes write its deliveries
	for i := range n {
		cfg.Orgs = append(cfg.Orgs, scaleOrg(i))
	}
	if err := node.Init(centralDir, cfg); err != nil {
		return res, err
	}
	cmd := exec.CommandContext(ctx, opts.Exe[0], append(slices.Clone(opts.Exe[1:]), "run", "--dir", centralDir)...)
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		return res, err
	}
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	}()
	cl, err := waitAPI(ctx, centralDir, &logs)
	if err != nil {
		return res, err
	}
	st, err := cl.Status(ctx)
	if err != nil {
		return res, err
	}
	fmt.Fprintf(opts.Progress, "scale %4d orgs: central up (pid %d), starting %d VMs\n", n, cmd.Process.Pid, n)

	vms := cluster.NewCluster(filepath.Join(dir, "vms"), cluster.Options{Network: "scale", API: "off",
		Store: &crdt.StoreOptions{MemTableSize: 2 << 20}})
	defer vms.Close()
	for i := range n {
		spec := cluster.Spec{Name: scaleOrg(i), Role: schema.RoleVM, Orgs: []string{scaleOrg(i)}, Peers: []int{}, PeerAddrs: st.Addrs}
		if _, err := vms.Add(ctx, spec); err != nil {
			return res, err
		}
	}
	// Every VM connected and exchanged with central.
	err = cluster.WaitFor(ctx, 2*time.Minute, func() (bool, error) {
		for i, m := range vms.Members() {
			if len(m.Node.Mesh().PeersOf(scaleOrg(i))) == 0 {
				return false, fmt.Errorf("%s not yet synced with central", m.Spec.Name)
			}
		}
		return true, nil
	})
	if err != nil {
		return res, err
	}
	res.SetupSeconds = time.Since(t0).Seconds()

	// Writes on central, each timed until its VM holds it.
	var lat []float64
	for k := range min(opts.Samples, n) {
		i := k * n / min(opts.Samples, n)
		org := scaleOrg(i)
		key := fmt.Sprintf("/deliveries/scale-%d", k)
		rep, err := vms.Node(i).Replica(org)
		if err != nil {
			return res, err
		}
		start := time.Now()
		if _, err := cl.Put(ctx, org, key, []byte("delivery")); err != nil {
			return res, err
		}
		if err := cluster.WaitFor(ctx, 30*time.Second, func() (bool, error) { return rep.Has(ctx, key) }); err != nil {
			return res, fmt.Errorf("write to %s never reached its VM: %w", org, err)
		}
		lat = append(lat, time.Since(start).Seconds())
	}
	slices.Sort(lat)
	res.WriteP50, res.WriteMax = lat[len(lat)/2], lat[len(lat)-1]

	// Idle: nothing written for opts.Idle.
	c0, err := procCPU(cmd.Process.Pid)
	if err != nil {
		return res, err
	}
	w0 := time.Now()
	idle := time.NewTimer(opts.Idle)
	select {
	case <-ctx.Done():
		idle.Stop()
		return res, ctx.Err()
	case <-idle.C:
	}
	c1, err := procCPU(cmd.Process.Pid)
	if err != nil {
		return res, err
	}
	res.IdleCPUPercent = 100 * (c1 - c0).Seconds() / time.Since(w0).Seconds()
	res.RSSBytes, res.PeakRSSBytes, err = procRSS(cmd.Process.Pid)
	if err != nil {
		return res, err
	}
	if st, err = cl.Status(ctx); err == nil {
		res.Goroutines = st.Goroutines
	}
	return res, nil
}

func waitAPI(ctx context.Context, dir string, logs *bytes.Buffer) (*node.Client, error) {
	var cl *node.Client
	err := cluster.WaitFor(ctx, time.Minute, func() (bool, error) {
		if _, err := os.Stat(filepath.Join(dir, node.APIAddrFile)); err != nil {
			return false, err
		}
		c, err := node.ClientFromDir(dir)
		if err != nil {
			return false, err
		}
		if _, err := c.Status(ctx); err != nil {
			return false, err
		}
		cl = c
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("central did not start: %w\n%s", err, logs.String())
	}
	return cl, nil
}

// procCPU is a process's user+system CPU time, from /proc.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	stt, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(ut+stt) * time.Second / ticks, nil
}

// procRSS is a process's resident and peak resident memory, from /proc.
func procRSS(pid int) (rss, peak uint64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseUint(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = v << 10
		case "VmHWM:":
			peak = v << 10
		}
	}
	return rss, peak, nil
}
