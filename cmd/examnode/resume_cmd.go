package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

// resumeCmd resumes, on this VM, a session whose VM died.
func resumeCmd(e *env) *cobra.Command {
	var force bool
	c := &cobra.Command{
		Use:   "resume ORG EXECUTION",
		Short: "Resume on this VM a test session whose VM died (opens the execution's next version here)",
		Long: `resume continues a test-taker's session on this VM after the VM it ran on
died. An execution is written only by the VM named in it, so resume does not
take the old record over: it writes the execution's next version
(executions/<id>.v<N>, naming the version it continues) on this VM, active,
and prints the result logs written so far, which replicated here while the
old VM was alive. If the old VM is still connected, the session is alive
there and resume refuses unless --force.`,
		Example: "  examnode resume C1 e1\n  examnode resume C1 e1 --force --json",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := e.client()
			if err != nil {
				return err
			}
			res, err := cl.Resume(cmd.Context(), args[0], args[1], force)
			if err != nil {
				return err
			}
			if e.json {
				return e.printJSON(res)
			}
			verb := "resumed"
			if res.AlreadyHere {
				verb = "already running here"
			}
			fmt.Fprintf(e.stdout, "%s: %s\n", verb, res.Execution.Key())
			fmt.Fprintf(e.stdout, "continues:  %s (%s on VM %s, connected: %t)\n", res.ResumedFrom, res.PreviousState, shortID(res.PreviousVM), res.PreviousVMAlive)
			fmt.Fprintf(e.stdout, "logs so far: %d\n", len(res.Logs))
			return nil
		},
	}
	c.Flags().BoolVar(&force, "force", false, "resume even though the old VM is still connected")
	return c
}
