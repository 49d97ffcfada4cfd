package bench

import (
	"fmt"
	"strings"
)

// Target is one figure a stack must reach: issue 4's convergence and
// write-rate targets are the ones examnode is held to (Targets).
type Target struct {
	// What says the target in words, as the report prints it.
	What string
	// Workload and Figure name the measured figure; Records, when not 0,
	// says the target holds at that N only (a run of another N does not
	// count).
	Workload, Figure string
	Records          int
	// Limit is the bound; HigherIsBetter says whether it is a floor
	// (true) or a ceiling.
	Limit          float64
	HigherIsBetter bool
	Unit           string
}

// Targets are examnode's targets at the default parameters (N = 10,000
// records of 1 KiB, 32 writers, 3,000 per node in converge-three) and the
// large catch-up at 100,000.
var Targets = []Target{
	{"≥ 5,000 durably acknowledged records/s on one node, 32 concurrent writers", "write-single", figWriteRate, DefaultRecords, 5000, true, "records/s"},
	{"a connected peer holds all 10,000 records ≤ 2 s after the last ack", "replicate-connected", figAfterAck, DefaultRecords, 2, false, "s"},
	{"a fresh peer catches up on 10,000 records in ≤ 1.5 s", "catchup-fresh", figCatchup, DefaultRecords, 1.5, false, "s"},
	{"a fresh peer catches up on 100,000 records in ≤ 10 s", "catchup-fresh", figCatchup, 100_000, 10, false, "s"},
	{"three peers writing 3,000 each converge ≤ 2 s after the last ack", "converge-three", figAfterAck, DefaultRecords, 2, false, "s"},
}

// Verdict is a target checked against a report.
type Verdict struct {
	Target
	// Measured says a run measured the figure; Value is its median.
	Measured bool
	Value    float64
	Met      bool
}

// Check looks each target up in the reports (the first that measured it
// for stack, at the target's N) and says whether it is met. A target no
// report measured is returned with Measured false.
func Check(stack string, targets []Target, reports ...*Report) []Verdict {
	out := make([]Verdict, 0, len(targets))
	for _, t := range targets {
		v := Verdict{Target: t}
		for _, r := range reports {
			if r == nil || (t.Records != 0 && r.Params.Records != t.Records) {
				continue
			}
			if val, ok := r.median(stack, t.Workload, t.Figure); ok {
				v.Measured, v.Value = true, val
				break
			}
		}
		if v.Measured {
			v.Met = v.Value <= t.Limit
			if t.HigherIsBetter {
				v.Met = v.Value >= t.Limit
			}
		}
		out = append(out, v)
	}
	return out
}

// median returns the median of figure over stack's runs of workload.
func (r *Report) median(stack, workload, figure string) (float64, bool) {
	for _, s := range r.Summaries() {
		if s.Stack != stack || s.Workload != workload {
			continue
		}
		for _, f := range s.Figures {
			if f.Name == figure {
				return f.Value, true
			}
		}
	}
	return 0, false
}

// TargetsMarkdown writes the verdicts as a table, then lists plainly the
// targets not met and those not measured.
func TargetsMarkdown(stack string, vs []Verdict) string {
	var b strings.Builder
	fmt.Fprintf(&b, "| target | measured (%s) | met |\n| --- | ---: | --- |\n", stack)
	var unmet, missing []string
	for _, v := range vs {
		got, met := "not measured", "—"
		if v.Measured {
			got = formatNumber(v.Value) + " " + v.Unit
			met = "yes"
			if !v.Met {
				met = "**no**"
				unmet = append(unmet, v.What)
			}
		} else {
			missing = append(missing, v.What)
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", v.What, got, met)
	}
	switch {
	case len(unmet) == 0 && len(missing) == 0:
		fmt.Fprintf(&b, "\nEvery target is met in this run.\n")
	default:
		if len(unmet) > 0 {
			fmt.Fprintf(&b, "\nNot met in this run: %s.\n", strings.Join(unmet, "; "))
		}
		if len(missing) > 0 {
			fmt.Fprintf(&b, "\nNot measured in this run: %s.\n", strings.Join(missing, "; "))
		}
	}
	return b.String()
}

// FormatNumber formats v as the report does: thousands grouped, at most
// three significant decimals.
func FormatNumber(v float64) string { return formatNumber(v) }

// ScaleOrgs is the organisation count central's targets hold at.
const ScaleOrgs = 200

// ScaleFigures is what the central-scale measurement found at one
// organisation count (internal/scale measures it).
type ScaleFigures struct {
	Orgs           int
	IdleCPUPercent float64 // of one core
	RSSMiB         float64
	WriteMaxSecs   float64 // slowest write on central to reach its VM
}

// ScaleTargets are central's targets at ScaleOrgs organisations.
var ScaleTargets = []Target{
	{What: "central at 200 organisations: idle CPU < 5% of one core", Workload: "central-scale", Figure: "idle CPU", Limit: 5, Unit: "%"},
	{What: "central at 200 organisations: RSS < 1 GiB", Workload: "central-scale", Figure: "RSS", Limit: 1024, Unit: "MiB"},
	{What: "central at 200 organisations: a write reaches its VM ≤ 2 s (slowest sampled)", Workload: "central-scale", Figure: "write→VM max", Limit: 2, Unit: "s"},
}

// CheckScale checks ScaleTargets against the run at ScaleOrgs, if any.
// Idle CPU and RSS must be below their limits; the write time at most its.
func CheckScale(runs []ScaleFigures) []Verdict {
	out := make([]Verdict, 0, len(ScaleTargets))
	var at *ScaleFigures
	for i := range runs {
		if runs[i].Orgs == ScaleOrgs {
			at = &runs[i]
		}
	}
	for _, t := range ScaleTargets {
		v := Verdict{Target: t}
		if at != nil {
			v.Measured = true
			switch t.Figure {
			case "idle CPU":
				v.Value, v.Met = at.IdleCPUPercent, at.IdleCPUPercent < t.Limit
			case "RSS":
				v.Value, v.Met = at.RSSMiB, at.RSSMiB < t.Limit
			default:
				v.Value, v.Met = at.WriteMaxSecs, at.WriteMaxSecs <= t.Limit
			}
		}
		out = append(out, v)
	}
	return out
}
