package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/examnode/examnode/bench"
	"github.com/examnode/examnode/internal/benchstack"
	"github.com/examnode/examnode/internal/scale"
)

func init() {
	bench.Register("examnode", benchstack.Factory)
}

func addBenchCmds(root *cobra.Command, e *env) {
	var opts bench.RunOptions
	var out string
	var scaleOrgs []int
	var scaleIdle time.Duration
	var baselineFrom string
	var large int
	c := &cobra.Command{
		Use:   "bench",
		Short: "Measure examnode against raw go-ds-crdt on the same workloads; write BENCHMARKS.md",
		Long: `bench runs every workload on examnode's replication and on raw go-ds-crdt with its
default options (bitswap, gossipsub, badger v4), each run in its own process so
that peak RSS is its own, and writes a report with ratios beside absolute figures.
Then it measures one central node carrying many organisations (one VM each):
idle CPU, memory, goroutines, and the time for a write to reach its VM.

Then examnode alone catches up a fresh peer on --large records (100,000 by
default), and the report ends with a table of examnode's targets, each marked
met or not.

Raw go-ds-crdt with default options takes minutes on the larger workloads (that
is the point); a full run takes about half an hour.`,
		Example: `  examnode bench                                   # everything, writes BENCHMARKS.md
  examnode bench --records 1000 --scale 10 --out /tmp/b.md   # a quick look
  examnode bench --stacks examnode --workloads catchup-fresh --records 100000
  examnode bench --baseline-from BENCHMARKS.json     # re-measure examnode only`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			opts.Command = []string{exe, "bench-child"}
			opts.Progress = e.stderr
			var prev *bench.Report
			if baselineFrom != "" {
				if prev, err = readReport(baselineFrom); err != nil {
					return err
				}
				if len(opts.Stacks) == 0 {
					opts.Stacks = slices.DeleteFunc(bench.Stacks(), func(s string) bool { return s == bench.Baseline })
				}
			}
			rep, err := bench.Run(cmd.Context(), opts)
			if err != nil {
				return err
			}
			if prev != nil {
				if err := rep.Adopt(prev, bench.Baseline); err != nil {
					return err
				}
			}
			var md bytes.Buffer
			if err := rep.Markdown(&md, "examnode "+strings.Join(os.Args[1:], " ")); err != nil {
				return err
			}
			var big *bench.Report
			if large > 0 && slices.Contains(rep.Stacks, "examnode") && rep.Params.Records != large {
				lo := opts
				lo.Stacks, lo.Workloads = []string{"examnode"}, []string{"catchup-fresh"}
				lo.Params.Records = large
				if big, err = bench.Run(cmd.Context(), lo); err != nil {
					return err
				}
				writeLarge(&md, big)
			}
			var scaleRuns []bench.ScaleFigures
			if len(scaleOrgs) > 0 && scaleOrgs[0] > 0 {
				res, err := scale.Run(cmd.Context(), scale.Options{
					Exe: []string{exe}, Orgs: scaleOrgs, Idle: scaleIdle, Progress: e.stderr,
				})
				if err != nil {
					return err
				}
				writeScale(&md, res, scaleIdle)
				for _, r := range res {
					scaleRuns = append(scaleRuns, bench.ScaleFigures{Orgs: r.Orgs, IdleCPUPercent: r.IdleCPUPercent,
						RSSMiB: float64(r.RSSBytes) / (1 << 20), WriteMaxSecs: r.WriteMax})
				}
			}
			if slices.Contains(rep.Stacks, "examnode") {
				vs := append(bench.Check("examnode", bench.Targets, rep, big), bench.CheckScale(scaleRuns)...)
				fmt.Fprintf(&md, "\n## Targets\n\nexamnode's targets (issue 4), checked against the figures above.\n\n%s",
					bench.TargetsMarkdown("examnode", vs))
			}
			if e.json {
				return rep.JSON(e.stdout)
			}
			if out == "-" {
				_, err = e.stdout.Write(md.Bytes())
				return err
			}
			md.Write(keptSections(out)) // hand-measured sections (bench_keep.go)
			if err := os.WriteFile(out, md.Bytes(), 0o644); err != nil {
				return err
			}
			// The JSON beside the report lets a later run adopt its baseline.
			js := strings.TrimSuffix(out, filepath.Ext(out)) + ".json"
			var jb bytes.Buffer
			if err := rep.JSON(&jb); err != nil {
				return err
			}
			if err := os.WriteFile(js, jb.Bytes(), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "wrote %s and %s\n", out, js)
			return nil
		},
	}
	f := c.Flags()
	f.StringSliceVar(&opts.Stacks, "stacks", nil, "stacks to measure (default: raw and examnode)")
	f.StringSliceVar(&opts.Workloads, "workloads", nil, "workloads to run (default: all): "+strings.Join(bench.Workloads(), ", "))
	f.IntVar(&opts.Params.Records, "records", 0, "records N per workload (default 10000)")
	f.IntVar(&opts.Params.Writers, "writers", 0, "concurrent writers (default 32)")
	f.IntVar(&opts.Params.PerNode, "per-node", 0, "records per node in converge-three (default 3000)")
	f.DurationVar(&opts.Params.Timeout, "timeout", 0, "give up on one run after this long (default 10m)")
	f.IntVar(&opts.Repeat, "repeat", 1, "runs per stack and workload; the report gives medians")
	f.StringVar(&out, "out", "BENCHMARKS.md", "where to write the report ('-' for stdout)")
	f.IntSliceVar(&scaleOrgs, "scale", []int{10, 50, 200}, "organisation counts for the central-scale measurement (0 to skip)")
	f.DurationVar(&scaleIdle, "scale-idle", 30*time.Second, "how long idle CPU is sampled at each scale")
	f.IntVar(&large, "large", 100_000, "records for examnode's large catch-up run (0 to skip)")
	f.StringVar(&baselineFrom, "baseline-from", "", "adopt raw go-ds-crdt's figures from this earlier report's JSON instead of measuring them again")
	root.AddCommand(c)

	root.AddCommand(&cobra.Command{
		Use:                "bench-child",
		Hidden:             true,
		Short:              "Run one benchmark workload (started by `examnode bench`)",
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return bench.RunChild(cmd.Context(), args, e.stdout)
		},
	})
}

func readReport(path string) (*bench.Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r bench.Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s is not a bench report's JSON: %w", path, err)
	}
	return &r, nil
}

// writeLarge writes the large catch-up run's section.
func writeLarge(md *bytes.Buffer, big *bench.Report) {
	fmt.Fprintf(md, "\n## catchup-fresh at %s records (examnode only)\n\n", bench.FormatNumber(float64(big.Params.Records)))
	var sb bytes.Buffer
	if err := big.Markdown(&sb, ""); err != nil {
		return
	}
	// Keep the workload's table, not the repeated header.
	if i := bytes.Index(sb.Bytes(), []byte("\n## catchup-fresh\n")); i >= 0 {
		body := sb.Bytes()[i+len("\n## catchup-fresh\n"):]
		md.Write(bytes.TrimLeft(body, "\n"))
	}
}

func writeScale(md *bytes.Buffer, rs []scale.Result, idle time.Duration) {
	fmt.Fprintf(md, "\n## central-scale\n\nOne central node (its own process, `examnode run`) configured with N organisations, one VM per organisation connected to it. Idle CPU is sampled over %s with nothing written; a write on central (through its local API) is timed until its VM holds it, for up to 20 organisations spread over the range. Targets: idle CPU under 5%% of one core, RSS under 1 GiB, write to VM within 2 s, at 200 organisations.\n\n", idle)
	fmt.Fprintf(md, "| organisations | idle CPU (%% of one core) | RSS | peak RSS | goroutines | write→VM p50 | write→VM max | setup |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rs {
		fmt.Fprintf(md, "| %d | %.2f | %.0f MiB | %.0f MiB | %d | %.3f s | %.3f s | %.1f s |\n", r.Orgs, r.IdleCPUPercent,
			float64(r.RSSBytes)/(1<<20), float64(r.PeakRSSBytes)/(1<<20), r.Goroutines, r.WriteP50, r.WriteMax, r.SetupSeconds)
	}
	if len(rs) >= 2 {
		a, b := rs[0], rs[len(rs)-1]
		fmt.Fprintf(md, "\nFrom %d to %d organisations: RSS grows %.2f MiB per organisation, goroutines %.1f per organisation.\n",
			a.Orgs, b.Orgs, float64(int64(b.RSSBytes)-int64(a.RSSBytes))/(1<<20)/float64(b.Orgs-a.Orgs),
			float64(b.Goroutines-a.Goroutines)/float64(b.Orgs-a.Orgs))
	}
}
