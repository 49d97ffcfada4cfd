package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// sampleReport is a two-stack report with repeats, a timed-out run and a
// failed one.
func sampleReport() *Report {
	rate := func(v float64) []Figure {
		return []Figure{{Name: figWriteRate, Unit: "records/s", Value: v, HigherIsBetter: true}}
	}
	wait := func(v float64) []Figure {
		return []Figure{{Name: figAfterAck, Unit: "s", Value: v}}
	}
	p, _ := Params{}.withDefaults()
	return &Report{
		Started:   time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Seconds:   75,
		Machine:   Machine{CPUs: 2, GOOS: "linux", GOARCH: "amd64", GoVersion: "go1.26"},
		Params:    p,
		Repeat:    3,
		Baseline:  Baseline,
		Stacks:    []string{Baseline, "examnode"},
		Workloads: []string{"write-single", "replicate-connected"},
		Runs: []Result{
			{Stack: "raw", Workload: "write-single", Run: 1, Figures: rate(1000), PeakRSSKiB: 100 << 10},
			{Stack: "raw", Workload: "write-single", Run: 2, Figures: rate(3000), PeakRSSKiB: 120 << 10},
			{Stack: "raw", Workload: "write-single", Run: 3, Figures: rate(2000), PeakRSSKiB: 110 << 10},
			{Stack: "examnode", Workload: "write-single", Run: 1, Figures: rate(8000), PeakRSSKiB: 55 << 10},
			{Stack: "examnode", Workload: "write-single", Run: 2, Figures: rate(6000), PeakRSSKiB: 55 << 10},
			{Stack: "examnode", Workload: "write-single", Run: 3, Figures: rate(4000), PeakRSSKiB: 55 << 10},
			{Stack: "raw", Workload: "replicate-connected", Run: 1, Figures: wait(10)},
			{Stack: "raw", Workload: "replicate-connected", Run: 2, TimedOut: true, Seconds: 600, Want: 10000, Held: 6120, Written: 10000},
			{Stack: "raw", Workload: "replicate-connected", Run: 3, Figures: wait(20)},
			{Stack: "examnode", Workload: "replicate-connected", Run: 1, Figures: wait(1)},
			{Stack: "examnode", Workload: "replicate-connected", Run: 2, Error: "adding node 1: boom | bang"},
			{Stack: "examnode", Workload: "replicate-connected", Run: 3, Figures: wait(3)},
		},
	}
}

func TestMarkdown(t *testing.T) {
	var b bytes.Buffer
	const command = "examnode bench --records 10000 --repeat 3"
	if err := sampleReport().Markdown(&b, command); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	t.Log("\n" + md)
	for _, want := range []string{
		"`" + command + "`",
		"2026-01-02 03:04 UTC",
		"2 CPUs, linux/amd64, go1.26",
		"## write-single",
		"## replicate-connected",
		"| measure | better | raw | examnode | examnode/raw |",
		"| write rate (records/s) | higher | 2,000 | 6,000 | 3.00× |",
		"| peak RSS (MiB) | lower | 110 | 55.0 | 0.50× |",
		"| time from last ack until replicated (s) | lower | 15.0 (2 of 3 runs) | 2.00 (2 of 3 runs) | 0.13× |",
		"`raw`, run 2: timed out after 600 s; the checked node(s) held 6,120 of 10,000 records",
		"`examnode`, run 2: error: adding node 1: boom \\| bang.",
		"median of 3 run(s)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q", want)
		}
	}
}

func TestJSON(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport().JSON(&b); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Runs      []Result  `json:"runs"`
		Summaries []Summary `json:"summaries"`
	}
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Runs) != 12 || len(got.Summaries) != 4 {
		t.Fatalf("%d runs and %d summaries, want 12 and 4", len(got.Runs), len(got.Summaries))
	}
	if s := got.Summaries[0]; s.Stack != "raw" || s.Figures[0].Value != 2000 || s.PeakRSSKiB != 110<<10 {
		t.Errorf("first summary %+v, want raw's medians", s)
	}
}

func TestFormatNumber(t *testing.T) {
	for v, want := range map[float64]string{
		0: "0.00", 1.234: "1.23", 12.34: "12.3", 123.4: "123", 1234: "1,234", 1234567: "1,234,567", -1234: "-1,234",
	} {
		if got := formatNumber(v); got != want {
			t.Errorf("formatNumber(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestAdoptBaselineFromEarlierReport(t *testing.T) {
	prev := sampleReport()
	now := sampleReport()
	now.Started = prev.Started.Add(time.Hour)
	now.Stacks = []string{"examnode"}
	var runs []Result
	for _, r := range now.Runs {
		if r.Stack == "examnode" {
			runs = append(runs, r)
		}
	}
	now.Runs = runs
	if err := now.Adopt(prev, Baseline); err != nil {
		t.Fatal(err)
	}
	if now.Stacks[0] != Baseline || len(now.Runs) != len(prev.Runs) {
		t.Fatalf("after Adopt: stacks %v, %d runs; want raw first and %d runs", now.Stacks, len(now.Runs), len(prev.Runs))
	}
	var b bytes.Buffer
	if err := now.Markdown(&b, "examnode bench --baseline-from BENCHMARKS.json"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "adopted from the run that started 2026-01-02 03:04 UTC") {
		t.Fatalf("report does not say the baseline was adopted:\n%s", b.String())
	}
	other := sampleReport()
	other.Params.Records = 5
	if err := now.Adopt(other, Baseline); !errors.Is(err, ErrParamsDiffer) {
		t.Fatalf("adopting from other parameters: %v, want ErrParamsDiffer", err)
	}
}
