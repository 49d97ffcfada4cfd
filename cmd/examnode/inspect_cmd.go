package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/examnode/examnode/mesh"
	"github.com/examnode/examnode/node"
)

func statusCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "This node: identity, roles, organisations, versions, store size, and a one-line verdict",
		Long: `status answers "is this node all right?" with a one-line verdict, first:

  in sync                nothing to fetch, no errors (and, on a VM, central connected)
  catching up            this node is fetching deltas it was told of (DAG jobs queued,
                         or a connected peer sent heads this node does not hold yet)
  isolated from central  a VM with no central host connected: it keeps syncing with the
                         VMs of its centre, and central catches up when the link returns
  errors                 a replica is marked dirty or writes failed (listed as problems)

then the node (peer ID, roles, organisations, trust, versions, encryption at
rest, private network, record schema version, uptime, store size on disk,
connected peers, listen addresses) and one line per organisation:

  RECORDS  records held          DAG     DAG nodes (deltas) processed
  HEADS    current DAG heads     HEIGHT  highest DAG height
  QUEUED   DAG jobs waiting      PEERS   connected peers of the organisation
  DIRTY    a DAG walk failed; repaired on restart or within the hour`,
		Example: `  examnode status
  examnode status --watch
  examnode status --json | jq .verdict`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := e.client()
			if err != nil {
				return err
			}
			st, err := cl.Status(cmd.Context())
			if err != nil {
				return err
			}
			if e.json {
				return e.printJSON(st)
			}
			roles := make([]string, len(st.Roles))
			for i, r := range st.Roles {
				roles[i] = string(r)
			}
			w := e.stdout
			fmt.Fprintf(w, "verdict:   %s\n", st.Verdict)
			for _, p := range st.Problems {
				fmt.Fprintf(w, "  problem: %s\n", p)
			}
			fmt.Fprintf(w, "peer ID:   %s\nroles:     %s\norgs:      %s\nnetwork:   %s\ntrust:     %s\nversion:   %s (protocol %d)\n",
				st.ID, strings.Join(roles, ","), dash(strings.Join(st.Orgs, ",")), st.Network, st.Trust, st.Version, st.Protocol)
			if v := versionLine(st.Versions); v != "" {
				fmt.Fprintf(w, "built:     %s\n", v)
			}
			printSecurity(w, st)
			fmt.Fprintf(w, "uptime:    %s\nstore:     %s on disk\npeers:     %d connected\n", st.Uptime, humanBytes(st.StoreBytes), st.Peers)
			for _, a := range st.Addrs {
				fmt.Fprintf(w, "address:   %s\n", a)
			}
			var rows [][]string
			for _, r := range st.Replicas {
				rows = append(rows, []string{r.Org, fmt.Sprint(r.Records), fmt.Sprint(r.DAGSize), fmt.Sprint(len(r.Heads)), fmt.Sprint(r.MaxHeight),
					fmt.Sprint(r.QueuedJobs), fmt.Sprint(len(r.Peers)), fmt.Sprint(r.Dirty)})
			}
			fmt.Fprintln(w)
			e.table("ORG\tRECORDS\tDAG\tHEADS\tHEIGHT\tQUEUED\tPEERS\tDIRTY", rows)
			for _, r := range st.Replicas {
				if r.ResultsUnsealed > 0 {
					fmt.Fprintf(w, "  %s: %d results written here in clear: no central or archive peer was known to seal them to; connect this VM to central before exams\n",
						r.Org, r.ResultsUnsealed)
				}
			}
			return nil
		},
	}
}

// versionLine lists the module versions of Status.Versions.
func versionLine(v map[string]string) string {
	var out []string
	if g := v["go"]; g != "" {
		out = append(out, g)
	}
	for _, k := range slices.Sorted(maps.Keys(v)) {
		if k != "go" && k != "examnode" && k != "protocol" {
			out = append(out, k+" "+v[k])
		}
	}
	return strings.Join(out, ", ")
}

func peersCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "peers",
		Short: "Every peer this node knows: roles, organisations, connection, how, address, last seen, RTT",
		Long: `peers lists every peer in this node's peer book, connected or not:

  PEER        peer ID (shortened; --json has it whole)
  ROLES       central, vm or archive, as its membership (or, on an open mesh, its hello) says
  ORGS        organisations it carries that it may share with this node
  STATE       connected (inbound or outbound) or disconnected
  VIA         LAN: found on the local network by mDNS; WAN: a configured peer or
              one that dialled in
  ADDRESS     the address of the connection (or of the last one)
  LAST SEEN   when it was last connected or heard from
  RTT         round trip of the last heads exchange this node started with it
  LAST ERROR  why it was refused or why the last exchange failed`,
		Example: `  examnode peers
  examnode peers --watch --interval 5s
  examnode peers --json | jq '.[] | select(.connected) | .id'`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := e.client()
			if err != nil {
				return err
			}
			ps, err := cl.Peers(cmd.Context())
			if err != nil {
				return err
			}
			if e.json {
				return e.printJSON(ps)
			}
			var rows [][]string
			for _, p := range ps {
				state := "disconnected"
				if p.Connected {
					state = "connected (" + p.Direction + ")"
				}
				rows = append(rows, []string{shortID(p.ID), dash(strings.Join(p.Roles, ",")), dash(strings.Join(p.Orgs, ",")), state,
					via(p), dash(p.Addr), ago(p.LastSeen), rtt(p.RTT), dash(p.LastError)})
			}
			e.table("PEER\tROLES\tORGS\tSTATE\tVIA\tADDRESS\tLAST SEEN\tRTT\tLAST ERROR", rows)
			return nil
		},
	}
}

func via(p mesh.PeerInfo) string {
	if p.LAN {
		return "LAN"
	}
	return "WAN"
}

func rtt(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	}
	return d.Round(100 * time.Microsecond).String()
}

func syncCmd(e *env) *cobra.Command {
	var org string
	return withOrgFlag(&cobra.Command{
		Use:   "sync",
		Short: "Per organisation: heads, height, DAG size, queue, refusals; and each peer: in sync, behind or ahead",
		Long: `sync shows, per organisation, the replica and how every peer stands.

The organisation table:
  RECORDS       records held                 DAG      DAG nodes (deltas) processed
  HEADS         current DAG heads            HEIGHT   highest DAG height
  QUEUED        DAG jobs waiting             DIRTY    a DAG walk failed
  WRITTEN HERE  records written on this node since start
  NOT ELSEWHERE (VMs) records written here that no other machine is known to hold
                yet: none of the heads peers sent includes them
  ANNOUNCE      head announcements since start: sent / received / dropped
                (a dropped one is made up for by the heads exchange)
  REFUSED       what arrived and was refused since start; the reasons follow

The peer table (one line per peer and organisation):
  STATE         in sync: its heads are this node's heads
                behind: it lacks deltas this node holds (LAG: how many heights)
                ahead: it holds heads this node is still fetching (LAG: how many)
                unknown: connected, no heads exchanged yet
                disconnected / error: LAG tells how it stood at its last exchange
  HEADS AT      when it last sent its heads (a heads exchange runs on connect,
                after every commit and every 15 s): the states are as of then
  VIA           LAN (found by mDNS) or WAN; RTT: round trip of the last exchange`,
		Example: `  examnode sync --org C1
  examnode sync --watch
  examnode sync --json | jq '.[].peer_states[] | select(.state != "in sync")'`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := e.client()
			if err != nil {
				return err
			}
			rs, err := cl.Sync(cmd.Context(), org)
			if err != nil {
				return err
			}
			if e.json {
				return e.printJSON(rs)
			}
			var rows, peers [][]string
			var refusals []string
			for _, r := range rs {
				a := r.Announcements
				unconfirmed := "-"
				if u := r.Unconfirmed; u != nil {
					unconfirmed = fmt.Sprint(u.Records)
					if u.Records > 0 {
						unconfirmed += " since " + ago(u.Oldest)
					}
				}
				rows = append(rows, []string{r.Org, fmt.Sprint(r.Records), fmt.Sprint(r.DAGSize), fmt.Sprint(len(r.Heads)), fmt.Sprint(r.MaxHeight),
					fmt.Sprint(r.QueuedJobs), fmt.Sprint(r.Dirty), fmt.Sprint(r.Written), unconfirmed,
					fmt.Sprintf("%d/%d/%d", a.Published, a.Received+a.Exchanged, a.Dropped), fmt.Sprint(r.Refused)})
				for _, reason := range slices.Sorted(maps.Keys(r.RefusedByReason)) {
					refusals = append(refusals, fmt.Sprintf("%s: %d refused: %s", r.Org, r.RefusedByReason[reason], reason))
				}
				for _, p := range r.PeerStates {
					conn := "WAN"
					if p.LAN {
						conn = "LAN"
					}
					peers = append(peers, []string{shortID(p.Peer), dash(strings.Join(p.Roles, ",")), p.Org, p.State, lag(p),
						ago(p.HeadsAt), conn, rtt(p.RTT), dash(p.Reason)})
				}
			}
			e.table("ORG\tRECORDS\tDAG\tHEADS\tHEIGHT\tQUEUED\tDIRTY\tWRITTEN HERE\tNOT ELSEWHERE\tANNOUNCE SENT/RECV/DROPPED\tREFUSED", rows)
			for _, r := range refusals {
				fmt.Fprintln(e.stdout, "  "+r)
			}
			fmt.Fprintln(e.stdout)
			if len(peers) == 0 {
				fmt.Fprintln(e.stdout, "no peers of these organisations known yet")
				return nil
			}
			e.table("PEER\tROLES\tORG\tSTATE\tLAG\tHEADS AT\tVIA\tRTT\tWHY", peers)
			return nil
		},
	}, &org)
}

// lag is a peer's lag as its last heads tell it.
func lag(p node.PeerSync) string {
	switch {
	case p.Behind > 0:
		return fmt.Sprintf("%d behind", p.Behind)
	case p.Missing > 0:
		return fmt.Sprintf("%d heads ahead", p.Missing)
	case p.HeadsAt.IsZero():
		return "?"
	}
	return "0"
}
