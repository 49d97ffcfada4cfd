package bench

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"time"
)

// Report is the outcome of a Run: every run's Result and where it ran.
type Report struct {
	Started   time.Time `json:"started"`
	Seconds   float64   `json:"seconds"`
	Machine   Machine   `json:"machine"`
	Params    Params    `json:"params"`
	Repeat    int       `json:"repeat"`
	Baseline  string    `json:"baseline"`
	Stacks    []string  `json:"stacks"`
	Workloads []string  `json:"workloads"`
	Runs      []Result  `json:"runs"`
	// Adopted names the stacks whose runs were taken from an earlier
	// report (see Adopt), with the time that report started.
	Adopted map[string]time.Time `json:"adopted,omitempty"`
}

// ErrParamsDiffer is returned by Adopt for a report of other parameters.
var ErrParamsDiffer = errors.New("bench: the earlier report was measured with other parameters")

// Adopt copies the runs of stack from an earlier report prev into r, so a
// stack that takes long to measure (raw go-ds-crdt waits minutes on its
// timers) need not be measured again while another stack changes. The
// report says which figures were adopted, and from when. prev must have
// been measured with the same workload parameters.
func (r *Report) Adopt(prev *Report, stack string) error {
	a, b := r.Params, prev.Params
	if a.Records != b.Records || a.ValueSize != b.ValueSize || a.Writers != b.Writers ||
		a.BatchSize != b.BatchSize || a.PerNode != b.PerNode {
		return fmt.Errorf("%w: %+v, now %+v", ErrParamsDiffer, b, a)
	}
	n := 0
	for _, run := range prev.Runs {
		if run.Stack == stack && slices.Contains(r.Workloads, run.Workload) {
			r.Runs = append(r.Runs, run)
			n++
		}
	}
	if n == 0 {
		return fmt.Errorf("bench: the earlier report has no runs of %q for these workloads", stack)
	}
	if !slices.Contains(r.Stacks, stack) {
		r.Stacks = append([]string{stack}, r.Stacks...)
	}
	if r.Adopted == nil {
		r.Adopted = map[string]time.Time{}
	}
	r.Adopted[stack] = prev.Started
	return nil
}

// Machine describes where a report was measured.
type Machine struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model,omitempty"`
	GOOS      string `json:"goos"`
	GOARCH    string `json:"goarch"`
	GoVersion string `json:"go_version"`
	// Modules maps the replication libraries' module paths to the versions
	// built into the binary.
	Modules map[string]string `json:"modules,omitempty"`
}

// Summary is the median of a (stack, workload) pair's runs.
type Summary struct {
	Stack    string `json:"stack"`
	Workload string `json:"workload"`
	Runs     int    `json:"runs"`
	// Figures holds, for each figure, the median over the runs that
	// measured it; Measured[i] says how many did.
	Figures    []Figure `json:"figures"`
	Measured   []int    `json:"measured"`
	PeakRSSKiB int64    `json:"peak_rss_kib"`
	DiskBytes  int64    `json:"disk_bytes"`
	TimedOut   int      `json:"timed_out"`
	Failed     int      `json:"failed"`
}

// newReport starts a report for opts.
func newReport(opts RunOptions) *Report {
	return &Report{
		Started:   time.Now(),
		Machine:   thisMachine(),
		Params:    opts.Params,
		Repeat:    opts.Repeat,
		Baseline:  opts.Baseline,
		Stacks:    opts.Stacks,
		Workloads: opts.Workloads,
	}
}

// trackedModules are the modules whose versions a report records.
var trackedModules = []string{
	"github.com/ipfs/go-ds-crdt",
	"github.com/ipfs/boxo",
	"github.com/libp2p/go-libp2p",
	"github.com/libp2p/go-libp2p-pubsub",
	"github.com/ipfs/go-ds-badger4",
	"github.com/dgraph-io/badger/v4",
}

// thisMachine describes the machine and binary running now.
func thisMachine() Machine {
	m := Machine{
		CPUs:      runtime.NumCPU(),
		CPUModel:  cpuModel(),
		GOOS:      runtime.GOOS,
		GOARCH:    runtime.GOARCH,
		GoVersion: runtime.Version(),
		Modules:   map[string]string{},
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range bi.Deps {
			if slices.Contains(trackedModules, dep.Path) {
				m.Modules[dep.Path] = dep.Version
			}
		}
	}
	return m
}

// cpuModel reads the CPU model from /proc/cpuinfo where there is one.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// Summaries returns the median of each (stack, workload) pair, workloads
// in report order, stacks in report order.
func (r *Report) Summaries() []Summary {
	var out []Summary
	for _, w := range r.Workloads {
		for _, s := range r.Stacks {
			var runs []Result
			for _, res := range r.Runs {
				if res.Stack == s && res.Workload == w {
					runs = append(runs, res)
				}
			}
			if len(runs) > 0 {
				out = append(out, summarize(s, w, runs))
			}
		}
	}
	return out
}

// summarize takes the medians of runs of one (stack, workload) pair.
func summarize(stack, workload string, runs []Result) Summary {
	sum := Summary{Stack: stack, Workload: workload, Runs: len(runs)}
	var rss, disk []float64
	for _, res := range runs {
		if res.TimedOut {
			sum.TimedOut++
		}
		if res.Error != "" {
			sum.Failed++
		}
		if res.PeakRSSKiB > 0 {
			rss = append(rss, float64(res.PeakRSSKiB))
		}
		if res.DiskBytes > 0 {
			disk = append(disk, float64(res.DiskBytes))
		}
	}
	for _, name := range figureNames(runs) {
		var vals []float64
		var proto Figure
		for _, res := range runs {
			if f, ok := res.Figure(name); ok && res.Error == "" {
				vals, proto = append(vals, f.Value), f
			}
		}
		if len(vals) > 0 {
			proto.Value = median(vals)
			sum.Figures = append(sum.Figures, proto)
			sum.Measured = append(sum.Measured, len(vals))
		}
	}
	sum.PeakRSSKiB = int64(median(rss))
	sum.DiskBytes = int64(median(disk))
	return sum
}

// figureNames lists the figure names of runs in order of first appearance.
func figureNames(runs []Result) []string {
	var names []string
	for _, res := range runs {
		for _, f := range res.Figures {
			if !slices.Contains(names, f.Name) {
				names = append(names, f.Name)
			}
		}
	}
	return names
}

// median returns the median of vals, or 0 for none.
func median(vals []float64) float64 {
	if len(vals) == 0 {
		return 0
	}
	s := slices.Clone(vals)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// JSON writes the report and its summaries as indented JSON.
func (r *Report) JSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		*Report
		Summaries []Summary `json:"summaries"`
	}{r, r.Summaries()})
}

// Markdown writes the report as BENCHMARKS.md: how it was produced, on
// what, and one table per workload comparing each stack with the baseline.
// command is the command line that produced it.
func (r *Report) Markdown(w io.Writer, command string) error {
	var b strings.Builder
	r.writeHeader(&b, command)
	sums := r.Summaries()
	for _, name := range r.Workloads {
		r.writeWorkload(&b, name, sums)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeHeader writes the title, provenance and how to read the tables.
func (r *Report) writeHeader(b *strings.Builder, command string) {
	m := r.Machine
	p := r.Params
	fmt.Fprintf(b, "# examnode benchmarks\n\n")
	fmt.Fprintf(b, "Produced by `%s` on %s; the workload runs took %s (the large catch-up and central scale, when present, come after them).\n\n", command,
		r.Started.UTC().Format("2006-01-02 15:04 MST"), time.Duration(r.Seconds*float64(time.Second)).Round(time.Second))
	cpu := fmt.Sprintf("%d CPUs", m.CPUs)
	if m.CPUModel != "" {
		cpu += " (" + m.CPUModel + ")"
	}
	fmt.Fprintf(b, "Machine: %s, %s/%s, %s.\n\n", cpu, m.GOOS, m.GOARCH, m.GoVersion)
	if len(m.Modules) > 0 {
		var mods []string
		for _, path := range trackedModules {
			if v, ok := m.Modules[path]; ok {
				mods = append(mods, path+" "+v)
			}
		}
		fmt.Fprintf(b, "Modules: %s.\n\n", strings.Join(mods, ", "))
	}
	fmt.Fprintf(b, "Parameters: N = %s records of %s random bytes; %d concurrent writers per node for one-at-a-time writes; "+
		"batches of %d; converge-three writes %s records per node; timeout %s per run; median of %d run(s).\n\n",
		formatNumber(float64(p.Records)), formatNumber(float64(p.ValueSize)), p.Writers, p.BatchSize,
		formatNumber(float64(p.PerNode)), p.Timeout, r.Repeat)
	fmt.Fprintf(b, "Stacks: %s. Each node is a libp2p host on 127.0.0.1 with its own data directory.", codeList(r.Stacks))
	for _, st := range slices.Sorted(maps.Keys(r.Adopted)) {
		fmt.Fprintf(b, " The figures of `%s` are adopted from the run that started %s with the same parameters (`--baseline-from`), not measured again in this one.",
			st, r.Adopted[st].UTC().Format("2006-01-02 15:04 MST"))
	}
	if slices.Contains(r.Stacks, Baseline) {
		fmt.Fprintf(b, " `%s` is go-ds-crdt used as its README shows, with `crdt.DefaultOptions()` "+
			"(heads rebroadcast every minute), gossipsub, bitswap and badger v4 with default options.", Baseline)
	}
	fmt.Fprintf(b, "\n\nEvery (stack, workload) run is its own process, so peak RSS is that run's own; "+
		"disk is the data directory's allocated size after Close. "+
		"The ratio columns are stack ÷ %s: where higher is better a ratio above 1 favours the stack, "+
		"where lower is better a ratio below 1 does.\n", r.Baseline)
}

// writeWorkload writes one workload's section: description, table, notes.
func (r *Report) writeWorkload(b *strings.Builder, name string, sums []Summary) {
	byStack := map[string]Summary{}
	for _, s := range sums {
		if s.Workload == name {
			byStack[s.Stack] = s
		}
	}
	if len(byStack) == 0 {
		return
	}
	fmt.Fprintf(b, "\n## %s\n\n", name)
	if w, ok := LookupWorkload(name); ok {
		fmt.Fprintf(b, "%s\n\n", w.Description)
	}
	others := slices.DeleteFunc(slices.Clone(r.Stacks), func(s string) bool { return s == r.Baseline })
	header := []string{"measure", "better"}
	header = append(header, r.Stacks...)
	for _, o := range others {
		header = append(header, fmt.Sprintf("%s/%s", o, r.Baseline))
	}
	writeRow(b, header)
	align := []string{"---", "---"}
	for range len(header) - 2 {
		align = append(align, "---:")
	}
	writeRow(b, align)
	for _, row := range r.rows(byStack) {
		cells := []string{row.label, better(row.higher)}
		for _, s := range r.Stacks {
			cells = append(cells, row.cell[s])
		}
		for _, o := range others {
			cells = append(cells, ratio(row.value[o], row.value[r.Baseline]))
		}
		writeRow(b, cells)
	}
	r.writeNotes(b, name)
}

// row is one measure of a workload table.
type row struct {
	label  string
	higher bool
	cell   map[string]string  // by stack
	value  map[string]float64 // by stack; 0 when not measured
}

// rows lays out a workload's figures, then peak RSS and disk.
func (r *Report) rows(byStack map[string]Summary) []row {
	var rows []row
	index := map[string]int{}
	for _, stack := range r.Stacks {
		s, ok := byStack[stack]
		if !ok {
			continue
		}
		for i, f := range s.Figures {
			k, ok := index[f.Name]
			if !ok {
				k = len(rows)
				index[f.Name] = k
				rows = append(rows, row{label: fmt.Sprintf("%s (%s)", f.Name, f.Unit), higher: f.HigherIsBetter,
					cell: map[string]string{}, value: map[string]float64{}})
			}
			rows[k].value[stack] = f.Value
			rows[k].cell[stack] = formatNumber(f.Value)
			if s.Measured[i] < s.Runs {
				rows[k].cell[stack] += fmt.Sprintf(" (%d of %d runs)", s.Measured[i], s.Runs)
			}
		}
	}
	rss := row{label: "peak RSS (MiB)", cell: map[string]string{}, value: map[string]float64{}}
	disk := row{label: "disk after close (MiB)", cell: map[string]string{}, value: map[string]float64{}}
	for stack, s := range byStack {
		rss.value[stack] = float64(s.PeakRSSKiB) / 1024
		disk.value[stack] = float64(s.DiskBytes) / (1 << 20)
	}
	for _, extra := range []*row{&rss, &disk} {
		for stack, v := range extra.value {
			if v > 0 {
				extra.cell[stack] = formatNumber(v)
			}
		}
	}
	rows = append(rows, rss, disk)
	for i := range rows { // a stack that never measured it
		for _, stack := range r.Stacks {
			if _, ok := rows[i].cell[stack]; !ok {
				rows[i].cell[stack] = "—"
			}
		}
	}
	return rows
}

// writeNotes lists the runs of a workload that timed out or failed.
func (r *Report) writeNotes(b *strings.Builder, workload string) {
	var notes []string
	for _, res := range r.Runs {
		if res.Workload != workload || (!res.TimedOut && res.Error == "") {
			continue
		}
		what := fmt.Sprintf("error: %s", oneLine(res.Error))
		if res.TimedOut {
			what = fmt.Sprintf("timed out after %s s; the checked node(s) held %s of %s records (%s writes acknowledged)",
				formatNumber(res.Seconds), formatNumber(float64(res.Held)), formatNumber(float64(res.Want)),
				formatNumber(float64(res.Written)))
		}
		notes = append(notes, fmt.Sprintf("- `%s`, run %d: %s.", res.Stack, res.Run, what))
	}
	if len(notes) > 0 {
		fmt.Fprintf(b, "\nNotes (figures above leave these runs out):\n\n%s\n", strings.Join(notes, "\n"))
	}
}

// writeRow writes one Markdown table row.
func writeRow(b *strings.Builder, cells []string) {
	fmt.Fprintf(b, "| %s |\n", strings.Join(cells, " | "))
}

// better names the direction in which a measure improves.
func better(higher bool) string {
	if higher {
		return "higher"
	}
	return "lower"
}

// ratio formats v/base, or a dash when either is unmeasured.
func ratio(v, base float64) string {
	if v <= 0 || base <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", v/base)
}

// formatNumber prints v with precision that suits its size, and thousands
// separators from 1,000 on.
func formatNumber(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1000:
		return groupThousands(fmt.Sprintf("%.0f", v))
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// groupThousands inserts commas into a string of digits (with an optional
// leading minus).
func groupThousands(digits string) string {
	sign := ""
	if strings.HasPrefix(digits, "-") {
		sign, digits = "-", digits[1:]
	}
	var b strings.Builder
	for i, c := range digits {
		if i > 0 && (len(digits)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return sign + b.String()
}

// codeList formats names as inline code, comma-separated.
func codeList(names []string) string {
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = "`" + n + "`"
	}
	return strings.Join(quoted, ", ")
}

// oneLine flattens an error message for a Markdown list item.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	s = strings.ReplaceAll(s, "|", "\\|")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
