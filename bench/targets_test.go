package bench

import (
	"strings"
	"testing"
)

func TestCheckTargets(t *testing.T) {
	rep := &Report{Params: Params{Records: DefaultRecords}, Stacks: []string{"examnode"},
		Workloads: []string{"write-single", "replicate-connected"}}
	rep.Runs = []Result{
		{Stack: "examnode", Workload: "write-single", Figures: []Figure{{Name: figWriteRate, Value: 7000, HigherIsBetter: true}}},
		{Stack: "examnode", Workload: "replicate-connected", Figures: []Figure{{Name: figAfterAck, Value: 3.5}}},
		{Stack: "raw", Workload: "replicate-connected", Figures: []Figure{{Name: figAfterAck, Value: 0.1}}},
	}
	big := &Report{Params: Params{Records: 100_000}, Stacks: []string{"examnode"}, Workloads: []string{"catchup-fresh"},
		Runs: []Result{{Stack: "examnode", Workload: "catchup-fresh", Figures: []Figure{{Name: figCatchup, Value: 4}}}}}

	vs := Check("examnode", Targets, rep, big)
	got := map[string]Verdict{}
	for _, v := range vs {
		got[v.What] = v
	}
	want := map[string]struct{ measured, met bool }{
		Targets[0].What: {true, true},   // 7,000 ≥ 5,000
		Targets[1].What: {true, false},  // 3.5 s > 2 s (raw's 0.1 is another stack)
		Targets[2].What: {false, false}, // 10k catch-up: not run (the 100k run is another N)
		Targets[3].What: {true, true},   // 4 s ≤ 10 s
		Targets[4].What: {false, false},
	}
	for what, w := range want {
		v := got[what]
		if v.Measured != w.measured || v.Met != w.met {
			t.Errorf("%s: measured %v met %v (value %v), want measured %v met %v", what, v.Measured, v.Met, v.Value, w.measured, w.met)
		}
	}
	md := TargetsMarkdown("examnode", vs)
	for _, s := range []string{"Not met in this run: " + Targets[1].What, "Not measured in this run: " + Targets[2].What, "| **no** |"} {
		if !strings.Contains(md, s) {
			t.Errorf("markdown lacks %q:\n%s", s, md)
		}
	}
}

func TestCheckScaleTargets(t *testing.T) {
	runs := []ScaleFigures{
		{Orgs: 10, IdleCPUPercent: 1, RSSMiB: 50, WriteMaxSecs: 0.02},
		{Orgs: 200, IdleCPUPercent: 5.0, RSSMiB: 118, WriteMaxSecs: 2},
	}
	vs := CheckScale(runs)
	if len(vs) != len(ScaleTargets) {
		t.Fatalf("%d verdicts, want %d", len(vs), len(ScaleTargets))
	}
	// 5.0% is not under 5%; 118 MiB is under 1 GiB; 2 s is within 2 s.
	for i, want := range []bool{false, true, true} {
		if !vs[i].Measured || vs[i].Met != want {
			t.Errorf("%s: measured %v met %v (value %v), want met %v", vs[i].What, vs[i].Measured, vs[i].Met, vs[i].Value, want)
		}
	}
	// Without a run at 200 organisations nothing is measured.
	for _, v := range CheckScale(runs[:1]) {
		if v.Measured {
			t.Errorf("%s measured from a run at 10 organisations", v.What)
		}
	}
	md := TargetsMarkdown("examnode", append(Check("examnode", Targets), vs...))
	if !strings.Contains(md, "Not met in this run: "+ScaleTargets[0].What) {
		t.Errorf("markdown does not name the unmet scale target:\n%s", md)
	}
}
