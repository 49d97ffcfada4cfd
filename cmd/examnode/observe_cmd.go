package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func historyCmd(e *env) *cobra.Command {
	var org, peer string
	var limit int
	c := &cobra.Command{
		Use:   "history",
		Short: "Sync log per organisation and peer: connections, records received and written, errors",
		Long: `history shows, for every peer and organisation this node shares with it:

  STATE          its sync state, from the heads it last sent (see examnode sync --help)
  LAST EXCHANGE  when this node last completed a heads exchange it started with it
  CONNECTED      since when it is connected
  RECEIVED       records credited to it, by kind (when it was the only connected
                 peer of the organisation; otherwise events say "via" the peers)
  OFFERED        records written here while it was connected, by kind
  WHY            the reason behind a state other than in sync

then the log of events since the daemon started (the last 1000): connected and
disconnected (LAN or WAN, address), received and written (counts by kind),
converged (a peer's heads came to agree with this node's), caught up (this node
fetched everything it was told of), and error (refusals, dropped announcements,
failed dials, pulls and writes).`,
		Example: `  examnode history
  examnode history --org C1 --peer 12D3KooW... --watch`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := e.client()
			if err != nil {
				return err
			}
			h, err := cl.History(cmd.Context(), org, peer)
			if err != nil {
				return err
			}
			if e.json {
				return e.printJSON(h)
			}
			var rows [][]string
			for _, p := range h.Peers {
				rows = append(rows, []string{shortID(p.Peer), strings.Join(p.Roles, ","), dash(p.Org), p.State, ago(p.LastExchange),
					sinceOr(p.ConnectedSince, p.Connected), dash(kindCounts(p.Received)), dash(kindCounts(p.Offered)), dash(p.Reason)})
			}
			e.table("PEER\tROLES\tORG\tSTATE\tLAST EXCHANGE\tCONNECTED\tRECEIVED\tOFFERED\tWHY", rows)
			fmt.Fprintln(e.stdout)
			evs := h.Events
			if limit > 0 && len(evs) > limit {
				evs = evs[len(evs)-limit:]
			}
			rows = rows[:0]
			for _, ev := range evs {
				who := shortID(ev.Peer)
				if ev.Peer == "" && len(ev.Via) > 0 {
					var v []string
					for _, p := range ev.Via {
						v = append(v, shortID(p))
					}
					who = "via " + strings.Join(v, " or ")
				}
				n := ""
				if ev.Count > 0 {
					n = fmt.Sprint(ev.Count)
					if len(ev.Kinds) > 0 {
						n += " (" + kindCounts(ev.Kinds) + ")"
					}
				}
				rows = append(rows, []string{ev.At.Local().Format("15:04:05"), ev.Event, dash(ev.Org), dash(who), dash(n), ev.Detail})
			}
			e.table("TIME\tEVENT\tORG\tPEER\tRECORDS\tDETAIL", rows)
			return nil
		},
	}
	c.Flags().StringVar(&org, "org", "", "only this organisation")
	c.Flags().StringVar(&peer, "peer", "", "only this peer (full peer ID)")
	c.Flags().IntVar(&limit, "limit", 50, "show the last this many events (0: all kept)")
	return c
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func sinceOr(t time.Time, connected bool) string {
	switch {
	case !connected:
		return "no"
	case t.IsZero():
		return "yes"
	}
	return "since " + t.Local().Format("15:04:05")
}

func kindCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []string
	for _, k := range keys {
		out = append(out, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(out, ", ")
}

// watchable adds --watch and --interval to a command that prints one
// snapshot: with --watch it prints a snapshot every interval until
// interrupted. On a terminal each snapshot replaces the last (ANSI clear
// screen); otherwise snapshots follow each other, separated by a line
// (JSON snapshots by nothing, so that the output stays a JSON stream).
func watchable(e *env, c *cobra.Command) *cobra.Command {
	var watch bool
	var interval time.Duration
	c.Flags().BoolVarP(&watch, "watch", "w", false, "refresh every --interval until interrupted")
	c.Flags().DurationVar(&interval, "interval", 2*time.Second, "refresh interval for --watch")
	run := c.RunE
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if !watch {
			return run(cmd, args)
		}
		if interval <= 0 {
			return fmt.Errorf("--interval must be positive, e.g. 2s")
		}
		return e.watch(cmd.Context(), interval, cmd.CommandPath(), func() error { return run(cmd, args) })
	}
	return c
}

func (e *env) watch(ctx context.Context, interval time.Duration, title string, snapshot func() error) error {
	out := e.stdout
	defer func() { e.stdout = out }()
	tty := isTerminal(out)
	t := time.NewTicker(interval)
	defer t.Stop()
	for first := true; ; first = false {
		var buf bytes.Buffer
		e.stdout = &buf
		err := snapshot()
		e.stdout = out
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			fmt.Fprintf(&buf, "error: %v\n", err)
		}
		var head string
		switch {
		case tty:
			head = fmt.Sprintf("\x1b[H\x1b[2J%s every %s, %s (Ctrl-C to stop)\n\n", title, interval, time.Now().Format("15:04:05"))
		case e.json:
		case !first:
			head = fmt.Sprintf("--- %s\n", time.Now().Format(time.RFC3339))
		}
		if _, werr := io.WriteString(out, head+buf.String()); werr != nil {
			return werr
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
