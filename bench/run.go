package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"
)

// childGrace is how long a child may run past Params.Timeout (process
// start, stack setup and Close) before the parent kills it.
const childGrace = 2 * time.Minute

// RunOptions says what Run measures and how.
type RunOptions struct {
	// Command is the command line that starts a bench child, e.g.
	// []string{os.Args[0], "bench-child"}; Run appends the child flags
	// (--stack, --workload, --dir and the Params) and the child passes
	// them to RunChild. Required.
	Command []string
	// Stacks to measure (default: every registered stack, Baseline first).
	Stacks []string
	// Workloads to run (default: all, in report order).
	Workloads []string
	// Params sizes the workloads; zero fields take their defaults.
	Params Params
	// Repeat runs each (stack, workload) this many times and reports
	// medians (default 1).
	Repeat int
	// Progress receives one line as each run starts and one as it ends
	// (default: discarded).
	Progress io.Writer
	// TempRoot is where the runs' data directories go (default
	// os.TempDir()). They are removed at the end.
	TempRoot string
	// Baseline is the stack the others are compared with (default
	// "raw").
	Baseline string
}

// withDefaults fills defaults and rejects options Run cannot use.
func (o RunOptions) withDefaults() (RunOptions, error) {
	if len(o.Command) == 0 {
		return o, fmt.Errorf("%w: RunOptions.Command is empty; pass the command that runs RunChild, e.g. {os.Args[0], \"bench-child\"}", ErrBadParams)
	}
	if len(o.Stacks) == 0 {
		o.Stacks = Stacks()
	}
	if len(o.Workloads) == 0 {
		o.Workloads = Workloads()
	}
	if o.Repeat == 0 {
		o.Repeat = 1
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Baseline == "" {
		o.Baseline = Baseline
	}
	if o.Repeat < 0 {
		return o, fmt.Errorf("%w: repeat is %d; use 1 or more", ErrBadParams, o.Repeat)
	}
	if err := lookupAll(o.Stacks); err != nil {
		return o, err
	}
	for _, w := range o.Workloads {
		if _, ok := LookupWorkload(w); !ok {
			return o, fmt.Errorf("%w: %q (known: %v)", ErrUnknownWorkload, w, Workloads())
		}
	}
	var err error
	o.Params, err = o.Params.withDefaults()
	return o, err
}

// Run measures every (stack, workload) pair Repeat times, each run in its
// own child process so that its peak RSS is its own. A run that times out
// or fails is recorded in the report; Run itself fails only on bad options,
// on a missing temporary directory, or when ctx ends.
func Run(ctx context.Context, opts RunOptions) (*Report, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	root, err := os.MkdirTemp(opts.TempRoot, "examnode-bench-*")
	if err != nil {
		return nil, fmt.Errorf("bench: making a data directory (set a writable TempRoot): %w", err)
	}
	defer os.RemoveAll(root)

	rep := newReport(opts)
	total := len(opts.Workloads) * opts.Repeat * len(opts.Stacks)
	k := 0
	for _, w := range opts.Workloads {
		for run := 1; run <= opts.Repeat; run++ {
			for _, stack := range opts.Stacks { // interleaved, so drift hits every stack alike
				k++
				label := fmt.Sprintf("[%d/%d] %s on %s, run %d/%d", k, total, w, stack, run, opts.Repeat)
				fmt.Fprintf(opts.Progress, "%s: started\n", label)
				dir := filepath.Join(root, fmt.Sprintf("%03d-%s-%s", k, w, stack))
				res := runChild(ctx, opts, stack, w, dir)
				res.Run = run
				rep.Runs = append(rep.Runs, res)
				fmt.Fprintf(opts.Progress, "%s: %s\n", label, res.summaryLine())
				if err := os.RemoveAll(dir); err != nil {
					return rep, fmt.Errorf("bench: removing %s: %w", dir, err)
				}
				if ctx.Err() != nil {
					return rep, ctx.Err()
				}
			}
		}
	}
	rep.Seconds = time.Since(rep.Started).Seconds()
	return rep, nil
}

// runChild runs one workload in a child process and returns its result,
// with the child's peak RSS, or a result saying why the child failed.
func runChild(ctx context.Context, opts RunOptions, stack, workload, dir string) Result {
	args := append(slices.Clone(opts.Command), "--stack", stack, "--workload", workload, "--dir", dir)
	args = append(args, opts.Params.args()...)
	ctx, cancel := context.WithTimeout(ctx, opts.Params.Timeout+childGrace)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	var stdout bytes.Buffer
	stderr := &tailWriter{max: 4 << 10}
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	cmd.WaitDelay = 10 * time.Second
	runErr := cmd.Run()

	res, decErr := lastResult(stdout.Bytes())
	res.Stack, res.Workload = stack, workload
	if cmd.ProcessState != nil {
		res.PeakRSSKiB = peakRSSKiB(cmd.ProcessState)
	}
	if runErr != nil || decErr != nil {
		err := fmt.Errorf("%w: %w; last stderr: %q", ErrChild, errors.Join(runErr, decErr), stderr.String())
		res.Error = errors.Join(errorOrNil(res.Error), err).Error()
	}
	return res
}

// lastResult decodes the last JSON line of a child's output: libraries may
// print other lines before it.
func lastResult(out []byte) (Result, error) {
	lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
	for i := len(lines) - 1; i >= 0; i-- {
		if bytes.HasPrefix(lines[i], []byte("{")) {
			var res Result
			if err := json.Unmarshal(lines[i], &res); err != nil {
				return Result{}, fmt.Errorf("decoding the child's result: %w", err)
			}
			return res, nil
		}
	}
	return Result{}, errors.New("the child printed no result")
}

// tailWriter keeps the last max bytes written to it.
type tailWriter struct {
	max int
	buf []byte
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = slices.Clone(t.buf[over:])
	}
	return len(p), nil
}

func (t *tailWriter) String() string { return string(bytes.TrimSpace(t.buf)) }

// RunChild is the body of a bench child process: it parses the flags Run
// passes (args excludes the program name), runs one workload on one stack,
// and writes the Result as one JSON line to stdout. A workload that times
// out or fails is still a Result; RunChild errs only on bad flags or when
// the result cannot be written.
func RunChild(ctx context.Context, args []string, stdout io.Writer) error {
	cf := newChildFlags()
	if err := cf.flags.Parse(args); err != nil {
		return fmt.Errorf("%w: bench child flags: %v", ErrBadParams, err)
	}
	stack, workload, dir := cf.stack, cf.workload, cf.dir
	f, ok := Lookup(stack)
	if !ok {
		return fmt.Errorf("%w: %q (registered: %v)", ErrUnknownStack, stack, Stacks())
	}
	w, ok := LookupWorkload(workload)
	if !ok {
		return fmt.Errorf("%w: %q (known: %v)", ErrUnknownWorkload, workload, Workloads())
	}
	p, err := cf.params.withDefaults()
	if err != nil {
		return err
	}
	if dir == "" {
		if dir, err = os.MkdirTemp("", "examnode-bench-child-*"); err != nil {
			return fmt.Errorf("bench: making a data directory (or pass --dir): %w", err)
		}
		defer os.RemoveAll(dir)
	}
	res := runWorkload(ctx, stack, f, w, p, dir)
	return json.NewEncoder(stdout).Encode(res)
}

// childFlags are the flags of a bench child.
type childFlags struct {
	flags                *flag.FlagSet
	stack, workload, dir string
	params               Params
}

// newChildFlags declares the child flags.
func newChildFlags() *childFlags {
	cf := &childFlags{flags: flag.NewFlagSet("bench-child", flag.ContinueOnError)}
	cf.flags.SetOutput(io.Discard)
	cf.flags.StringVar(&cf.stack, "stack", "", "registered stack to measure")
	cf.flags.StringVar(&cf.workload, "workload", "", "workload to run")
	cf.flags.StringVar(&cf.dir, "dir", "", "data directory (default: a temporary one, removed afterwards)")
	cf.params.bindFlags(cf.flags)
	return cf
}

// summaryLine describes a finished run in one line, for progress output.
func (r Result) summaryLine() string {
	var b bytes.Buffer
	for _, f := range r.Figures {
		fmt.Fprintf(&b, "%s %s %s; ", f.Name, formatNumber(f.Value), f.Unit)
	}
	if r.PeakRSSKiB > 0 {
		fmt.Fprintf(&b, "peak RSS %s MiB; ", formatNumber(float64(r.PeakRSSKiB)/1024))
	}
	fmt.Fprintf(&b, "%s s", formatNumber(r.Seconds))
	if r.TimedOut {
		fmt.Fprintf(&b, "; TIMED OUT holding %d of %d records", r.Held, r.Want)
	}
	if r.Error != "" {
		fmt.Fprintf(&b, "; ERROR: %s", r.Error)
	}
	return b.String()
}
