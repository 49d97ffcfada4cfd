package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

// childEnv marks a test binary started by Run as a bench child.
const childEnv = "EXAMNODE_BENCH_TEST_CHILD"

// TestHelperChild is not a test: it is the bench child when Run re-executes
// the test binary (the standard helper-process pattern). Its flags follow
// "--" on the command line.
func TestHelperChild(t *testing.T) {
	if os.Getenv(childEnv) != "1" {
		t.Skip("runs only as a child of TestRunSpawnsChildren")
	}
	args := os.Args[slices.Index(os.Args, "--")+1:]
	if err := RunChild(context.Background(), args, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Exit(0) // before the testing package prints PASS on stdout
}

// TestRunSpawnsChildren runs workloads through real child processes and
// checks results, peak RSS and progress lines.
func TestRunSpawnsChildren(t *testing.T) {
	t.Setenv(childEnv, "1")
	var progress bytes.Buffer
	workloads := []string{"write-batched", "replicate-connected"}
	rep, err := Run(context.Background(), RunOptions{
		Command:   []string{os.Args[0], "-test.run=^TestHelperChild$", "--"},
		Stacks:    []string{testStack},
		Workloads: workloads,
		Params:    smallParams(),
		Progress:  &progress,
		TempRoot:  t.TempDir(),
		Baseline:  testStack,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("progress:\n%s", progress.String())
	if len(rep.Runs) != len(workloads) {
		t.Fatalf("%d runs, want %d", len(rep.Runs), len(workloads))
	}
	p, _ := smallParams().withDefaults()
	for _, res := range rep.Runs {
		checkResult(t, res, p)
		if res.PeakRSSKiB <= 0 {
			t.Errorf("%s: peak RSS %d KiB, want > 0", res.Workload, res.PeakRSSKiB)
		}
		if res.Stack != testStack || res.Run != 1 {
			t.Errorf("result labelled %s run %d", res.Stack, res.Run)
		}
	}
	if got := strings.Count(progress.String(), ": started\n"); got != len(workloads) {
		t.Errorf("%d start lines in progress, want %d", got, len(workloads))
	}
}

// TestRunChildFailure checks that a child that prints no result becomes a
// failed run, not a failed Run.
func TestRunChildFailure(t *testing.T) {
	rep, err := Run(context.Background(), RunOptions{
		Command:   []string{"false"},
		Stacks:    []string{testStack},
		Workloads: []string{"write-single"},
		Params:    smallParams(),
		TempRoot:  t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res := rep.Runs[0]; !strings.Contains(res.Error, ErrChild.Error()) {
		t.Errorf("error %q, want it to mention %q", res.Error, ErrChild)
	}
}

// TestRunRejectsBadOptions checks the errors a caller can branch on.
func TestRunRejectsBadOptions(t *testing.T) {
	cases := []struct {
		name string
		opts RunOptions
		want error
	}{
		{"no command", RunOptions{}, ErrBadParams},
		{"unknown stack", RunOptions{Command: []string{"x"}, Stacks: []string{"nope"}}, ErrUnknownStack},
		{"unknown workload", RunOptions{Command: []string{"x"}, Workloads: []string{"nope"}}, ErrUnknownWorkload},
		{"tiny records", RunOptions{Command: []string{"x"}, Params: Params{Records: 3}}, ErrBadParams},
	}
	for _, c := range cases {
		if _, err := Run(context.Background(), c.opts); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	if err := RunChild(context.Background(), []string{"--stack", "nope", "--workload", "write-single"}, &bytes.Buffer{}); !errors.Is(err, ErrUnknownStack) {
		t.Errorf("RunChild with an unknown stack: %v", err)
	}
}

// TestParamsFlagsRoundTrip checks that the flags Run passes parse back into
// the same Params.
func TestParamsFlagsRoundTrip(t *testing.T) {
	want, err := smallParams().withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	fs := newChildFlags()
	if err := fs.flags.Parse(want.args()); err != nil {
		t.Fatal(err)
	}
	if fs.params != want {
		t.Errorf("round trip gave %+v, want %+v", fs.params, want)
	}
}
