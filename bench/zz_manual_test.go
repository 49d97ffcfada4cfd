package bench

import (
	"context"
	"os"
	"testing"
	"time"
)

func TestManualBench(t *testing.T) {
	if os.Getenv("MANUAL_BENCH") == "" {
		t.Skip()
	}
	t.Setenv(childEnv, "1")
	rep, err := Run(context.Background(), RunOptions{
		Command:  []string{os.Args[0], "-test.run=^TestHelperChild$", "--"},
		Stacks:   []string{"raw"},
		Params:   Params{Records: 1000, PerNode: 300, Timeout: 5 * time.Minute},
		Progress: os.Stderr,
		TempRoot: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	f, _ := os.Create("/tmp/manual-bench.md")
	defer f.Close()
	rep.Markdown(f, "manual N=1000")
}
