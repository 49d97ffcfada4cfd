package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/examnode/examnode/node"
)

// env carries what every command needs.
type env struct {
	dir    string
	json   bool
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

func defaultDir() string {
	if d := os.Getenv("EXAMNODE_DIR"); d != "" {
		return d
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".examnode")
	}
	return ".examnode"
}

// errSilent is returned by commands that already explained their failure.
var errSilent = errors.New("")

func execute(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr}
	root := newRoot(e)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		if !errors.Is(err, errSilent) {
			fmt.Fprintln(stderr, "examnode:", err)
		}
		return 1
	}
	return 0
}

func newRoot(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:   "examnode",
		Short: "Peer-to-peer replication of exam data for test centres",
		Long: `examnode replicates exam data between the VMs of a test centre, the central
host and archive hosts, over libp2p, with one CRDT replica per organisation.
Exams keep running and syncing inside a centre while its internet link is down;
everything converges when it returns.

Start here:
  examnode demo                          a local mesh of 4 nodes, in one process
  examnode authority init --out KEY.pem  once, on the central host: the network authority
  examnode init --role vm --org C1 --authority examnode-authority:…
                                         set up this machine's node (then examnode grant)
  examnode run                           run the daemon
  examnode status                        is this room in sync?`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       node.Version,
	}
	root.PersistentFlags().StringVar(&e.dir, "dir", defaultDir(), "data directory (env EXAMNODE_DIR)")
	root.PersistentFlags().BoolVar(&e.json, "json", false, "print JSON for scripts instead of a table")
	root.AddCommand(
		initCmd(e), runCmd(e),
		watchable(e, statusCmd(e)), watchable(e, peersCmd(e)), watchable(e, syncCmd(e)), watchable(e, historyCmd(e)),
		putCmd(e), getCmd(e), lsCmd(e), rmCmd(e), demoCmd(e),
		recordsCmd(e), changesCmd(e),
		authorityCmd(e), grantCmd(e), revokeCmd(e), refusedCmd(e),
		pnetKeyCmd(e),
		bundleCmd(e),
		heldCmd(e), resumeCmd(e),
	)
	addBenchCmds(root, e)
	return root
}

func (e *env) client() (*node.Client, error) { return node.ClientFromDir(e.dir) }

// rawClient is the client of the raw verbs (put, get, ls, rm). They are
// hidden from help: the routes they call exist only on a daemon whose
// config has "debug": true, and any other answers 404 raw_off, naming the
// key (node.ErrRawOff).
func (e *env) rawClient() (*node.Client, error) { return e.client() }
