package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/examnode/examnode/internal/demo"
	"github.com/examnode/examnode/node"
	"github.com/examnode/examnode/schema"
)

func (e *env) printJSON(v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (e *env) table(header string, rows [][]string) {
	tw := tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		cells := make([]string, len(r))
		for i, c := range r {
			cells[i] = strings.Join(strings.Fields(c), " ") // one line per row: errors can span several
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	_ = tw.Flush()
}

func initCmd(e *env) *cobra.Command {
	var role, network, api, authority, membership, pnetKey string
	var lan, encrypt, insecureOpen, debug bool
	var orgs, listen, peers []string
	c := &cobra.Command{
		Use:   "init",
		Short: "Create this node's data directory: config, identity and API token",
		Long: `init creates this node's data directory: config.json, the node's identity
and the local API's token. A node is gated by a network authority
(--authority, from ` + "`examnode authority init`" + ` on the central host): only
peers holding a membership it signed may connect, and only the roles it
granted count. --insecure-open makes an open node instead, for demos and
test benches only.`,
		Example: `  # an exam VM of test centre C1 that keeps central in reach
  examnode init --role vm --org C1 --authority examnode-authority:… \
      --peer /ip4/10.0.0.1/tcp/4001/p2p/12D3KooW...

  # the central host
  examnode init --role central --listen /ip4/0.0.0.0/tcp/4001 --authority examnode-authority:…

  # a throw-away test bench: open, with the raw debugging verbs
  examnode init --role vm --org C1 --insecure-open --debug`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := schema.ParseRole(role)
			if err != nil {
				return err
			}
			if authority == "" && !insecureOpen {
				return errNoAuthority
			}
			if authority != "" && insecureOpen {
				return errors.New("--authority and --insecure-open contradict each other: a node with an authority is gated; drop --insecure-open")
			}
			cfg := node.DefaultConfig(r, orgs...)
			cfg.Network, cfg.API, cfg.Peers, cfg.LANDiscovery = network, api, peers, lan
			cfg.Authority, cfg.Membership = authority, membership
			cfg.Debug = debug
			if err := setSecrets(&cfg, encrypt, pnetKey); err != nil {
				return err
			}
			if len(listen) > 0 {
				cfg.Listen = listen
			}
			if err := node.Init(e.dir, cfg); err != nil {
				return err
			}
			n, err := node.New(e.dir, cfg, node.Deps{})
			if err != nil {
				return err
			}
			id := n.ID()
			if err := n.Close(); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "initialised %s\n  peer ID: %s\n  role:    %s\n  orgs:    %s\n",
				e.dir, id, r, strings.Join(orgs, ", "))
			printSecrets(e, cfg)
			switch {
			case authority == "":
				fmt.Fprintf(e.stdout, "  trust:   OPEN (--insecure-open): any machine that reaches this one and names network %s may connect, read and write every record; never use it for exams\n", network)
			case membership == "":
				var of string
				for _, o := range orgs {
					of += " --org " + o
				}
				fmt.Fprintf(e.stdout, "  trust:   gated, but this node has no membership yet: on the central host run\n"+
					"    examnode grant --authority FILE --peer %s --role %s%s --network %s\n"+
					"  and put the printed examnode-membership:… in %s as \"membership\"\n",
					id, r, of, network, filepath.Join(e.dir, node.ConfigFile))
				return nil
			default:
				fmt.Fprintf(e.stdout, "  trust:   gated by %s\n", authority)
			}
			fmt.Fprintf(e.stdout, "start it with: examnode run --dir %s\n", e.dir)
			return nil
		},
	}
	c.Flags().StringVar(&role, "role", "", "central, vm or archive (required)")
	c.Flags().StringSliceVar(&orgs, "org", nil, "organisation (test centre) ID; a vm takes exactly one")
	c.Flags().StringVar(&network, "network", "examnode", "mesh name; nodes of different networks refuse each other")
	c.Flags().StringSliceVar(&listen, "listen", nil, "libp2p listen multiaddr (default /ip4/0.0.0.0/tcp/4001)")
	c.Flags().StringSliceVar(&peers, "peer", nil, "multiaddr of a peer to keep connected to, ending in /p2p/<id>")
	c.Flags().StringVar(&api, "api", node.DefaultAPIAddr, "local API address (keep it on loopback)")
	c.Flags().BoolVar(&lan, "lan-discovery", true, "find and connect peers of this network on the LAN by mDNS")
	c.Flags().StringVar(&authority, "authority", "", "the network authority's public key, examnode-authority:… (from `examnode authority init`; required unless --insecure-open)")
	c.Flags().BoolVar(&insecureOpen, "insecure-open", false, "run open, without an authority: any peer of the network may connect and claim any role (demos and test benches only)")
	c.Flags().BoolVar(&debug, "debug", false, "turn on the debugging aids: the raw API routes and the raw verbs put, get, ls, rm (\"debug\": true in config.json; never in production)")
	c.Flags().StringVar(&membership, "membership", "", "this node's membership, examnode-membership:… from `examnode grant`")
	addSecretFlags(c, &encrypt, &pnetKey)
	_ = c.MarkFlagRequired("role")
	return c
}

// errNoAuthority explains why init wants an authority.
var errNoAuthority = errors.New(`init needs --authority examnode-authority:… (the network authority's public key; ` +
	"`examnode authority init`" + ` on the central host prints it).
Without one the mesh is open: any machine on the network that runs examnode with the same network name
joins it, may claim to be central or an archive, receives every organisation's records and can write and
delete them on every node, erasing results everywhere. For a demo or a test bench only, pass --insecure-open`)

func runCmd(e *env) *cobra.Command {
	var verbose bool
	c := &cobra.Command{
		Use:     "run",
		Short:   "Run the examnode daemon until interrupted",
		Example: "  examnode run --dir /var/lib/examnode",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := node.LoadConfig(e.dir)
			if err != nil {
				return err
			}
			level := slog.LevelInfo
			if verbose {
				level = slog.LevelDebug
			}
			logger := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))
			n, err := node.New(e.dir, cfg, node.Deps{Logger: logger})
			if err != nil {
				return err
			}
			if err := n.Start(cmd.Context()); err != nil {
				return errorsJoin(err, n.Close())
			}
			logger.Info("examnode running", "id", n.ID(), "roles", cfg.Roles, "orgs", n.Orgs(), "api", n.APIAddr())
			for _, a := range n.Addrs() {
				logger.Info("listening", "addr", a)
			}
			<-cmd.Context().Done()
			logger.Info("stopping")
			return n.Close()
		},
	}
	c.Flags().BoolVarP(&verbose, "verbose", "v", false, "debug logging")
	return c
}

// statusCmd, peersCmd and syncCmd are in inspect_cmd.go.

func withOrgFlag(c *cobra.Command, org *string) *cobra.Command {
	c.Flags().StringVar(org, "org", "", "only this organisation")
	return c
}

func putCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:    "put ORG KEY VALUE|-",
		Hidden: true,
		Short:  "Write a raw record (a debugging aid, with \"debug\": true); '-' reads the value from stdin",
		Example: `  examnode put C1 /notes/n1 "hello"
  echo '{"a":1}' | examnode put C1 /notes/n2 -`,
		Args: cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := e.rawClient()
			if err != nil {
				return err
			}
			val := []byte(args[2])
			if args[2] == "-" {
				if val, err = io.ReadAll(io.LimitReader(e.stdin, node.MaxValueSize+1)); err != nil {
					return err
				}
			}
			r, err := cl.Put(cmd.Context(), args[0], args[1], val)
			if err != nil {
				return err
			}
			if e.json {
				return e.printJSON(r)
			}
			fmt.Fprintf(e.stdout, "stored %s in %s (durable)\n", r.Key, r.Org)
			return nil
		},
	}
}

func getCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:     "get ORG KEY",
		Hidden:  true,
		Short:   "Print a raw record's value (a debugging aid, with \"debug\": true)",
		Example: "  examnode get C1 /notes/n1",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := e.rawClient()
			if err != nil {
				return err
			}
			v, err := cl.Get(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			_, err = e.stdout.Write(v)
			if err == nil && len(v) > 0 && v[len(v)-1] != '\n' {
				_, err = fmt.Fprintln(e.stdout)
			}
			return err
		},
	}
}

func lsCmd(e *env) *cobra.Command {
	var values bool
	var offset, limit int
	c := &cobra.Command{
		Use:     "ls ORG [PREFIX]",
		Hidden:  true,
		Short:   "List raw records of an organisation (a debugging aid, with \"debug\": true)",
		Example: "  examnode ls C1 /results --values",
		Args:    cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := e.rawClient()
			if err != nil {
				return err
			}
			prefix := "/"
			if len(args) == 2 {
				prefix = args[1]
			}
			es, err := cl.List(cmd.Context(), args[0], prefix, values, offset, limit)
			if err != nil {
				return err
			}
			if e.json {
				return e.printJSON(es)
			}
			var rows [][]string
			for _, en := range es {
				v := en.Value
				if en.Binary {
					v = "(binary)"
				}
				rows = append(rows, []string{en.Key, fmt.Sprint(en.Size), v})
			}
			e.table("KEY\tSIZE\tVALUE", rows)
			return nil
		},
	}
	c.Flags().BoolVar(&values, "values", false, "show values (text only)")
	c.Flags().IntVar(&offset, "offset", 0, "skip this many records")
	c.Flags().IntVar(&limit, "limit", 1000, "list at most this many records")
	return c
}

func rmCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:     "rm ORG KEY",
		Hidden:  true,
		Short:   "Delete a raw record (a debugging aid, with \"debug\": true)",
		Example: "  examnode rm C1 /notes/n1",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := e.rawClient()
			if err != nil {
				return err
			}
			if err := cl.Delete(cmd.Context(), args[0], args[1]); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "deleted %s from %s (durable)\n", args[1], args[0])
			return nil
		},
	}
}

func demoCmd(e *env) *cobra.Command {
	var opts demo.Options
	c := &cobra.Command{
		Use:   "demo",
		Short: "Run a local mesh (central + VMs, one process, 127.0.0.1) and show it converge",
		Long: `demo starts a central node and exam VMs of one test centre on 127.0.0.1, each
with its own badger store in a temporary directory. Central writes deliveries and
every VM writes results; then one VM is cut off, both sides keep writing, and the
cut heals. It prints each record as it reaches every node, and exits 0 only if
every node ends with every record.`,
		Example: `  examnode demo
  examnode demo --vms 5 --records 50 --json`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			progress := e.stdout
			if e.json {
				progress = io.Discard
			}
			sum, err := demo.Run(cmd.Context(), opts, progress)
			if e.json {
				if perr := e.printJSON(sum); perr != nil {
					return perr
				}
			}
			if err != nil {
				return err
			}
			if !sum.OK {
				return fmt.Errorf("demo did not converge")
			}
			return nil
		},
	}
	c.Flags().IntVar(&opts.VMs, "vms", 3, "number of exam VMs")
	c.Flags().IntVar(&opts.Records, "records", 10, "records each node writes per phase")
	c.Flags().DurationVar(&opts.Timeout, "timeout", time.Minute, "give up on convergence after this long")
	c.Flags().StringVar(&opts.Dir, "keep", "", "keep the nodes' data in this directory instead of a temporary one")
	return c
}

func shortID(id string) string {
	if len(id) > 16 {
		return id[:8] + "…" + id[len(id)-6:]
	}
	return id
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return time.Since(t).Round(time.Second).String() + " ago"
}

func humanBytes(b uint64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := uint64(unit), 0
	for n := b / unit; n >= unit; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTPE"[exp])
}

func errorsJoin(errs ...error) error {
	var out []string
	for _, err := range errs {
		if err != nil {
			out = append(out, err.Error())
		}
	}
	if len(out) == 0 {
		return nil
	}
	return fmt.Errorf("%s", strings.Join(out, "; "))
}

var _ = context.Background
var _ = os.Stdout
