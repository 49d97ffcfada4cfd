// Command examnode is the examnode daemon and its command-line client.
//
// It only wires: every command is a thin layer over the node package's
// library (init, run), its local API client (status, peers, sync, put,
// get, ls, rm), the demo (internal/demo), or the bench package with
// examnode's stack (internal/benchstack, internal/scale).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(execute(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
