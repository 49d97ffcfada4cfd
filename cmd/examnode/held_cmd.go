package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// heldCmd prints, for each record named, how many peers hold it (from the
// heads they reported in the heads exchange).
func heldCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "held ORG KEY...",
		Short: "How many other machines hold a record, and which (from the heads they reported)",
		Long: `held tells, for each record, how many peers hold it as this node has it:
a peer holds a record when the delta that carried it lies at or below one of
the heads the peer last reported in the heads exchange. A peer that went away
still counts for what it held when it last reported. "examnode sync" shows,
per organisation, how many records written here no other machine holds yet.`,
		Example: "  examnode held C1 /results/e1 /result-logs/e1.0",
		Args:    cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := e.client()
			if err != nil {
				return err
			}
			var out []any
			var rows [][]string
			for _, key := range args[1:] {
				h, err := cl.HeldBy(cmd.Context(), args[0], key)
				if err != nil {
					return err
				}
				out = append(out, h)
				short := make([]string, len(h.Peers))
				for i, p := range h.Peers {
					short[i] = shortID(p)
				}
				rows = append(rows, []string{h.Key, fmt.Sprint(h.HeldBy), strings.Join(short, " ")})
			}
			if e.json {
				if len(out) == 1 {
					return e.printJSON(out[0])
				}
				return e.printJSON(out)
			}
			e.table("KEY\tHELD BY\tPEERS", rows)
			return nil
		},
	}
}
