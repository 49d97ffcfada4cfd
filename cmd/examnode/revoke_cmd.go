package main

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/examnode/examnode/node"
	"github.com/examnode/examnode/policy"
)

// revokeCmd is `examnode revoke`: the authority signs a revocation, and
// the local (central) node writes it into every organisation it holds,
// from where it replicates to every member.
func revokeCmd(e *env) *cobra.Command {
	var keyFile, peerID, serial, from, reason, network string
	var printOnly bool
	c := &cobra.Command{
		Use:   "revoke --authority FILE --peer ID [--serial SERIAL]",
		Short: "Revoke a peer's membership (one by serial, or all of them) across the mesh",
		Long: `revoke signs, with the authority's private key, the statement "membership SERIAL
of peer ID (or, without --serial, every membership of that peer) is no longer
trusted from TIME on", and hands it to the local node (run it on the central
host), which writes it into every organisation it holds. It replicates to every
member: each disconnects the peer, and refuses records it signed from TIME on.
Records it signed before stay valid; to distrust a stolen key's past too, give
--from the time the machine may have been compromised.`,
		Example: `  examnode revoke --authority ~/examnode-authority.pem --peer 12D3KooW… --reason "stolen laptop"
  examnode revoke --authority ~/examnode-authority.pem --peer 12D3KooW… --serial 0f3c… --from 2026-06-01T08:00:00Z
  examnode revoke --authority ~/examnode-authority.pem --peer 12D3KooW… --print   # sign only`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, id, err := authorityAndPeer(keyFile, peerID, "peers` lists them")
			if err != nil {
				return err
			}
			req := policy.RevokeRequest{Network: network, Peer: id.String(), Reason: reason}
			if serial != "" {
				if req.Serial, err = policy.ParseSerial(serial); err != nil {
					return fmt.Errorf("--serial: %w (`examnode grant --json` prints a membership's serial)", err)
				}
			}
			now := time.Now()
			if from != "" {
				if req.From, err = parseFrom(from, now); err != nil {
					return err
				}
			}
			if req.Network == "" {
				req.Network = "examnode"
				if cfg, err := node.LoadConfig(e.dir); err == nil {
					req.Network = cfg.Network
				}
			}
			r, err := a.Revoke(req, now)
			if err != nil {
				return err
			}
			if printOnly {
				fmt.Fprintln(e.stdout, r.String())
				return nil
			}
			cl, err := e.client()
			if err != nil {
				return err
			}
			res, err := cl.Revoke(cmd.Context(), r.String())
			if err != nil {
				return err
			}
			if e.json {
				return e.printJSON(res)
			}
			what := "every membership"
			if res.Serial != "" {
				what = "membership " + res.Serial
			}
			fmt.Fprintf(e.stdout, "revoked %s of peer %s from %s; written into %d organisation(s): %s\n",
				what, res.Peer, res.RevokedAt.Format(time.RFC3339), len(res.Orgs), strings.Join(res.Orgs, ", "))
			return nil
		},
	}
	c.Flags().StringVar(&keyFile, "authority", "", "the authority's private key file (required)")
	c.Flags().StringVar(&peerID, "peer", "", "the peer whose membership is revoked, 12D3KooW… (required)")
	c.Flags().StringVar(&serial, "serial", "", "revoke only this membership (32 hex digits); default: every membership of the peer")
	c.Flags().StringVar(&from, "from", "", "when the revocation takes effect: RFC 3339 time, or a duration ago (2h); default now")
	c.Flags().StringVar(&reason, "reason", "", "why, for people (shown where records are refused)")
	c.Flags().StringVar(&network, "network", "", "the mesh's network name (default: the local node's)")
	c.Flags().BoolVar(&printOnly, "print", false, "print the signed revocation instead of handing it to the local node")
	_ = c.MarkFlagRequired("peer")
	return c
}

// parseFrom reads an RFC 3339 time or a duration before now ("2h").
func parseFrom(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("--from %q: give an RFC 3339 time (2026-06-01T08:00:00Z) or how long ago (2h)", s)
}

// refusedCmd is `examnode refused ORG`: what the verified view of an
// organisation refused, and why.
func refusedCmd(e *env) *cobra.Command {
	var limit int
	c := &cobra.Command{
		Use:   "refused ORG",
		Short: "List the records this node refused in an organisation, and why",
		Long: `refused lists what peers wrote into ORG that this node's policy refused (a forged
signature, a VM writing central data or another VM's results, a revoked membership,
a replayed record, ...), and what waits for a membership or an execution to arrive.
Refused records are never served; the legitimate ones at the same keys are.`,
		Example: `  examnode refused C1
  examnode refused C1 --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := e.client()
			if err != nil {
				return err
			}
			res, err := cl.Refused(cmd.Context(), args[0], limit)
			if err != nil {
				return err
			}
			if e.json {
				return e.printJSON(res)
			}
			var arrived []string
			for _, r := range slices.Sorted(maps.Keys(res.Arrived)) {
				arrived = append(arrived, fmt.Sprintf("%s: %d", r, res.Arrived[r]))
			}
			if !res.Verified {
				fmt.Fprintf(e.stdout, "%s: this node runs open (no authority): records are not checked\n", res.Org)
			}
			fmt.Fprintf(e.stdout, "%s: refused where it arrived: %s\n", res.Org, orDash(strings.Join(arrived, "; ")))
			if !res.Verified {
				return nil
			}
			var counts []string
			for r, n := range res.Counts {
				counts = append(counts, r+"="+strconv.FormatUint(n, 10))
			}
			fmt.Fprintf(e.stdout, "%s: refused %s; parked %d\n", res.Org, orDash(strings.Join(counts, " ")), res.Parked)
			rows := [][]string{}
			for _, r := range res.Elements {
				state := "refused"
				if r.Parked {
					state = "parked"
				}
				rows = append(rows, []string{r.Key, state, r.Reason, abbrev(r.Writer), r.Error})
			}
			if len(rows) > 0 {
				e.table("KEY\tSTATE\tREASON\tWRITER\tDETAIL", rows)
			}
			return nil
		},
	}
	c.Flags().IntVar(&limit, "limit", 0, "at most this many (default: the node's limit)")
	return c
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func abbrev(id string) string {
	if len(id) > 16 {
		return id[:8] + "…" + id[len(id)-6:]
	}
	return id
}
