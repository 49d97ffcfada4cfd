package bench

import (
	"context"
	"errors"
	"math"
	"testing"
)

// TestRawWorkloads runs every workload on the raw stack in process, at a
// small size, and checks that each result is complete and plausible.
func TestRawWorkloads(t *testing.T) {
	defer verifyNoLeaks(t)
	p, err := smallParams().withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	f, ok := Lookup(testStack)
	if !ok {
		t.Fatalf("%s is not registered", testStack)
	}
	for _, name := range Workloads() {
		t.Run(name, func(t *testing.T) {
			w, _ := LookupWorkload(name)
			res := runWorkload(context.Background(), testStack, f, w, p, t.TempDir())
			t.Logf("%s: %s", name, res.summaryLine())
			checkResult(t, res, p)
		})
	}
}

// wantFigures are the figures each workload must report.
var wantFigures = map[string][]string{
	"write-single":        {figWriteRate},
	"write-batched":       {figWriteRate},
	"replicate-connected": {figWriteRate, figFromStart, figAfterAck},
	"catchup-fresh":       {figWriteRate, figCatchup, figCatchupRate},
	"catchup-overwrite":   {figWriteRate, figCatchup, figReplayRate},
	"converge-three":      {figWriteRate, figAfterAck, figFromStart},
}

// checkResult asserts that res finished, holds what it should, and reports
// finite figures (rates above zero).
func checkResult(t *testing.T, res Result, p Params) {
	t.Helper()
	if res.Error != "" || res.TimedOut {
		t.Fatalf("run did not finish: timed out %t, error %q", res.TimedOut, res.Error)
	}
	want, writes := p.Records, p.Records
	switch res.Workload {
	case "catchup-overwrite":
		want = p.Records / 10
	case "converge-three":
		want, writes = 3*p.PerNode, 3*p.PerNode
	}
	if res.Want != want || res.Held != want || res.Written != writes {
		t.Errorf("want %d held %d written %d; expected want = held = %d, written = %d",
			res.Want, res.Held, res.Written, want, writes)
	}
	for _, name := range wantFigures[res.Workload] {
		f, ok := res.Figure(name)
		switch {
		case !ok:
			t.Errorf("figure %q missing from %+v", name, res.Figures)
		case math.IsNaN(f.Value) || math.IsInf(f.Value, 0) || f.Value < 0:
			t.Errorf("figure %q = %v", name, f.Value)
		case f.HigherIsBetter && f.Value <= 0:
			t.Errorf("rate %q = %v, want > 0", name, f.Value)
		}
	}
	if res.DiskBytes <= 0 {
		t.Errorf("disk bytes = %d, want > 0", res.DiskBytes)
	}
}

// TestRawStackClose checks that Close is idempotent and that a closed
// stack refuses work with ErrClosed.
func TestRawStackClose(t *testing.T) {
	defer verifyNoLeaks(t)
	ctx := context.Background()
	s, err := RawFactory(RawOptions{})(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddNode(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, 0, "/k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Count(ctx, 1); !errors.Is(err, ErrNoNode) {
		t.Errorf("Count on a missing node: %v, want ErrNoNode", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := s.Put(ctx, 0, "/k", []byte("v")); !errors.Is(err, ErrClosed) {
		t.Errorf("Put after Close: %v, want ErrClosed", err)
	}
	if _, err := s.AddNode(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("AddNode after Close: %v, want ErrClosed", err)
	}
}
