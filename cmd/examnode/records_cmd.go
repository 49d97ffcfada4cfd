package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/examnode/examnode/bundle"
	"github.com/examnode/examnode/node"
	"github.com/examnode/examnode/schema"
)

// explain adds the code and field of a record route's refusal to its message.
func explain(err error) error {
	var re *node.RecordError
	if errors.As(err, &re) && re.Code != "" {
		if re.Field != "" {
			return fmt.Errorf("%w [%s, field %s]", err, re.Code, re.Field)
		}
		return fmt.Errorf("%w [%s]", err, re.Code)
	}
	return err
}

func recordsCmd(e *env) *cobra.Command {
	c := &cobra.Command{
		Use:   "records",
		Short: "Read and write typed exam records (the API exam platforms use)",
		Long: `Typed records of the schema: test-centers, administrators, proctors,
test-takers, eligibilities, deliveries, lti-consumers (written by central);
executions, results, result-logs, lti-users, bundles, custody (written by a vm);
bundle-receipts, retention-records (written by an archive).`,
		Example: `  examnode records put C1 test-takers tt1 -f tt1.json
  examnode records ls C1 executions --state active
  examnode records get C1 results e1 --json`,
	}
	c.AddCommand(recordsLsCmd(e), recordsGetCmd(e), recordsPutCmd(e), recordsRmCmd(e))
	return c
}

func recordsLsCmd(e *env) *cobra.Command {
	var q node.RecordQuery
	filters := map[string]*string{}
	c := &cobra.Command{
		Use:   "ls ORG KIND",
		Short: "List an organisation's records of one kind",
		Example: `  examnode records ls C1 executions --state active --limit 20
  examnode records ls C1 eligibilities --test-taker tt1 --json`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := e.client()
			if err != nil {
				return err
			}
			q.Filters = map[string]string{}
			for k, v := range filters {
				if *v != "" {
					q.Filters[k] = *v
				}
			}
			l, err := cl.ListRecords(cmd.Context(), args[0], args[1], q)
			if err != nil {
				return explain(err)
			}
			if e.json {
				return e.printJSON(l)
			}
			var rows [][]string
			for _, r := range l.Records {
				rows = append(rows, []string{r.ID, fmt.Sprint(r.Schema), clip(string(r.Body), 70)})
			}
			e.table("ID\tSCHEMA\tBODY", rows)
			if l.More {
				fmt.Fprintf(e.stdout, "more: --offset %d\n", l.Offset+len(l.Records))
			}
			return nil
		},
	}
	c.Flags().IntVar(&q.Offset, "offset", 0, "skip this many records")
	c.Flags().IntVar(&q.Limit, "limit", 0, "list at most this many records (default 100)")
	for _, f := range []string{"test_taker", "delivery", "state", "execution"} {
		filters[f] = c.Flags().String(strings.ReplaceAll(f, "_", "-"), "", "only records whose "+f+" is this")
	}
	return c
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

func recordsGetCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:     "get ORG KIND ID",
		Short:   "Print one record",
		Example: "  examnode records get C1 executions e1",
		Args:    cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := e.client()
			if err != nil {
				return err
			}
			r, err := cl.GetRecord(cmd.Context(), args[0], args[1], args[2])
			if err != nil {
				return explain(err)
			}
			if e.json {
				return e.printJSON(r)
			}
			fmt.Fprintf(e.stdout, "%s in %s (schema %d)\n", r.Key(), r.Org, r.Schema)
			if r.StoredSealed {
				fmt.Fprintln(e.stdout, sealedNote(r))
			}
			var body any
			if err := json.Unmarshal(r.Body, &body); err != nil {
				return err
			}
			return e.printJSON(body)
		},
	}
}

func recordsPutCmd(e *env) *cobra.Command {
	var file string
	c := &cobra.Command{
		Use:   "put ORG KIND ID [-f FILE|-]",
		Short: "Write one record; the body is the kind's JSON body, from a file or stdin",
		Example: `  examnode records put C1 test-takers tt1 -f tt1.json
  echo '{"login":"jdoe","name":"Jane Doe"}' | examnode records put C1 test-takers tt1 -f -`,
		Args: cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := e.client()
			if err != nil {
				return err
			}
			var in io.Reader = e.stdin
			if file != "-" {
				f, err := os.Open(file)
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			}
			body, err := io.ReadAll(io.LimitReader(in, schema.MaxRecordSize+1))
			if err != nil {
				return err
			}
			r, err := cl.PutRecord(cmd.Context(), args[0], args[1], args[2], body)
			if err != nil {
				return explain(err)
			}
			if e.json {
				return e.printJSON(r)
			}
			what := map[string]string{"create": "created", "replace": "replaced", "no-op": "unchanged (identical record already stored)"}[r.Outcome]
			fmt.Fprintf(e.stdout, "%s %s in %s (durable)\n", what, schema.Key(schema.Kind(r.Kind), r.ID), r.Org)
			return nil
		},
	}
	c.Flags().StringVarP(&file, "file", "f", "-", "read the body from this file ('-': stdin)")
	return c
}

func recordsRmCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:     "rm ORG KIND ID",
		Short:   "Delete one record (central kinds only, on the central host)",
		Example: "  examnode records rm C1 test-takers tt1",
		Args:    cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := e.client()
			if err != nil {
				return err
			}
			r, err := cl.DeleteRecord(cmd.Context(), args[0], args[1], args[2])
			if err != nil {
				return explain(err)
			}
			if e.json {
				return e.printJSON(r)
			}
			fmt.Fprintf(e.stdout, "deleted %s in %s (durable)\n", schema.Key(schema.Kind(r.Kind), r.ID), r.Org)
			return nil
		},
	}
}

func changesCmd(e *env) *cobra.Command {
	var since string
	var follow bool
	var limit int
	var wait time.Duration
	c := &cobra.Command{
		Use:   "changes ORG",
		Short: "Show an organisation's change feed (local and replicated writes, in order)",
		Long: `Show an organisation's change feed. Each change has a sequence number; pass the
"next" cursor printed at the end as --since to continue where you stopped, even
across a restart of the daemon. A change with op "resync" means the daemon
stopped uncleanly and some changes may be missing: re-list the records.`,
		Example: `  examnode changes C1
  examnode changes C1 --since 42
  examnode changes C1 --follow --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := e.client()
			if err != nil {
				return err
			}
			if follow {
				if !e.json {
					fmt.Fprintln(e.stdout, "SEQ\tOP\tKEY\tAT")
				}
				err := cl.FollowChanges(cmd.Context(), args[0], since, func(c node.Change) error {
					if e.json {
						b, err := json.Marshal(c)
						if err != nil {
							return err
						}
						_, err = fmt.Fprintf(e.stdout, "%s\n", b)
						return err
					}
					_, err := fmt.Fprintf(e.stdout, "%d\t%s\t%s\t%s\n", c.Seq, c.Op, c.Key, c.At.Format(time.RFC3339))
					return err
				})
				if cmd.Context().Err() != nil {
					return nil // interrupted: the normal end of --follow
				}
				return explain(err)
			}
			page, err := cl.Changes(cmd.Context(), args[0], since, limit, wait)
			if err != nil {
				return explain(err)
			}
			if e.json {
				return e.printJSON(page)
			}
			var rows [][]string
			for _, c := range page.Changes {
				rows = append(rows, []string{fmt.Sprint(c.Seq), c.Op, c.Key, c.At.Format(time.RFC3339)})
			}
			e.table("SEQ\tOP\tKEY\tAT", rows)
			fmt.Fprintf(e.stdout, "next: %s\n", page.Next)
			return nil
		},
	}
	c.Flags().StringVar(&since, "since", "0", "show changes after this cursor")
	c.Flags().BoolVar(&follow, "follow", false, "keep streaming new changes until interrupted")
	c.Flags().IntVar(&limit, "limit", 0, "at most this many changes (default 100)")
	c.Flags().DurationVar(&wait, "wait", 0, "wait up to this long for a change if there is none yet")
	return c
}

// sealedNote says how a result sealed in the store is shown.
func sealedNote(r node.RecordView) string {
	if bundle.IsSealedResult(r.Record) {
		return "sealed in the store to central and the archive: this node is not a recipient, so the variables are not shown"
	}
	return "sealed in the store; shown in clear because this node is a recipient"
}
