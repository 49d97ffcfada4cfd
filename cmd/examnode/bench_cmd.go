package main

import "github.com/spf13/cobra"

// addBenchCmds is filled in once the bench package lands.
func addBenchCmds(root *cobra.Command, e *env) {}
