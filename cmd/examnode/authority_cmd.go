package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"

	"github.com/examnode/examnode/policy"
	"github.com/examnode/examnode/schema"
)

// authorityCmd is `examnode authority`: the network authority's key,
// kept on the central operator's machine, never in a data directory.
func authorityCmd(e *env) *cobra.Command {
	c := &cobra.Command{
		Use:   "authority",
		Short: "The network authority: the key that signs memberships",
	}
	c.AddCommand(authorityInitCmd(e))
	return c
}

func authorityInitCmd(e *env) *cobra.Command {
	var out string
	c := &cobra.Command{
		Use:   "init --out FILE",
		Short: "Create the network authority's key (private, mode 0600) and print its public key",
		Long: `init creates the network authority: an Ed25519 key pair. The private key goes
to FILE (mode 0600; it is never overwritten) and must stay off every node's data
directory: keep it on the central operator's machine or in a secret store. The
public key it prints is what every node is initialised with (--authority).`,
		Example: `  examnode authority init --out ~/examnode-authority.pem
  examnode init --role central --authority examnode-authority:… --membership …`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("--out FILE is required: where to write the authority's private key")
			}
			a, err := policy.GenerateAuthority()
			if err != nil {
				return err
			}
			f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if errors.Is(err, os.ErrExist) {
				return fmt.Errorf("%s already exists; an authority key is never overwritten (every membership it signed depends on it): choose another --out", out)
			}
			if err != nil {
				return err
			}
			if _, err := f.Write(a.MarshalPrivate()); err != nil {
				f.Close()
				return err
			}
			if err := f.Sync(); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			pub := a.Public().String()
			if e.json {
				return e.printJSON(map[string]string{"authority": pub, "private_key_file": out})
			}
			fmt.Fprintf(e.stdout, "%s\n", pub)
			fmt.Fprintf(e.stderr, "wrote the authority's private key to %s (mode 0600); keep it off every node.\n"+
				"initialise nodes with: examnode init … --authority %s --membership <from examnode grant>\n", out, pub)
			return nil
		},
	}
	c.Flags().StringVar(&out, "out", "", "file to write the authority's private key to (PEM, mode 0600; required)")
	return c
}

func grantCmd(e *env) *cobra.Command {
	var keyFile, peerID, role, expires, network string
	var orgs []string
	var allOrgs bool
	c := &cobra.Command{
		Use:   "grant --authority FILE --peer ID --org ORG --role vm|central|archive",
		Short: "Sign a membership: peer ID has a role in organisations until an expiry",
		Long: `grant signs, with the authority's private key, the statement "peer ID has role
ROLE in organisations ORG… of network NAME until EXPIRY", and prints it as an
examnode-membership:… string for that node's --membership. A VM holds exactly one
organisation; central and archive hosts may hold several, or --all-orgs.`,
		Example: `  examnode grant --authority ~/examnode-authority.pem --peer 12D3KooW… --org C1 --role vm --expires 90d
  examnode grant --authority ~/examnode-authority.pem --peer 12D3KooW… --role central --all-orgs --expires 365d`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, id, err := authorityAndPeer(keyFile, peerID, "status` on that node prints it")
			if err != nil {
				return err
			}
			r, err := schema.ParseRole(role)
			if err != nil {
				return err
			}
			d, err := parseExpiry(expires)
			if err != nil {
				return err
			}
			now := time.Now()
			m, err := a.Grant(policy.GrantRequest{
				Network: network, Peer: id.String(), Role: r, Orgs: orgs, AllOrgs: allOrgs, Expires: now.Add(d),
			}, now)
			if err != nil {
				return err
			}
			if e.json {
				return e.printJSON(map[string]any{
					"membership": m.String(), "peer": m.Peer, "role": m.Role, "orgs": m.Orgs,
					"all_orgs": m.AllOrgs, "network": m.Network, "expires": m.Expires, "serial": m.Serial.String(),
				})
			}
			fmt.Fprintln(e.stdout, m.String())
			fmt.Fprintf(e.stderr, "granted: %s\n", m.Describe())
			return nil
		},
	}
	c.Flags().StringVar(&keyFile, "authority", "", "the authority's private key file (required)")
	c.Flags().StringVar(&peerID, "peer", "", "the node's peer ID, 12D3KooW… (required)")
	c.Flags().StringSliceVar(&orgs, "org", nil, "organisation the membership covers (repeat; a vm takes exactly one)")
	c.Flags().BoolVar(&allOrgs, "all-orgs", false, "every organisation, present and future (central or archive only)")
	c.Flags().StringVar(&role, "role", "", "vm, central or archive (required)")
	c.Flags().StringVar(&expires, "expires", "90d", "validity from now: 90d, 12h, 1d12h, …")
	c.Flags().StringVar(&network, "network", "examnode", "the mesh's network name (as in the node's --network)")
	_ = c.MarkFlagRequired("peer")
	_ = c.MarkFlagRequired("role")
	return c
}

// parseExpiry reads a validity period: a Go duration ("12h", "90m"), or
// days ("90d"), or days then a Go duration ("1d12h"). It must be positive.
// authorityAndPeer loads the authority's private key from keyFile and
// parses the --peer flag; hint says where the operator finds peer IDs.
func authorityAndPeer(keyFile, peerID, hint string) (*policy.Authority, peer.ID, error) {
	if keyFile == "" {
		return nil, "", errors.New("--authority FILE is required: the authority's private key, from `examnode authority init`")
	}
	b, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, "", fmt.Errorf("read the authority key: %w", err)
	}
	a, err := policy.UnmarshalAuthority(b)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", keyFile, err)
	}
	id, err := peer.Decode(peerID)
	if err != nil {
		return nil, "", fmt.Errorf("--peer %q is not a peer ID (`examnode %s): %w", peerID, hint, err)
	}
	return a, id, nil
}

func parseExpiry(s string) (time.Duration, error) {
	bad := fmt.Errorf("--expires %q: give a period such as 90d, 12h or 1d12h", s)
	var d time.Duration
	rest := s
	if i := strings.IndexByte(s, 'd'); i >= 0 {
		days, err := strconv.Atoi(s[:i])
		if err != nil || days < 0 || days > 100*365 {
			return 0, bad
		}
		d = time.Duration(days) * 24 * time.Hour
		rest = s[i+1:]
	}
	if rest != "" {
		r, err := time.ParseDuration(rest)
		if err != nil || (d > 0 && strings.HasPrefix(rest, "-")) {
			return 0, bad
		}
		d += r
	}
	if d <= 0 {
		return 0, fmt.Errorf("--expires %q: the period must be positive", s)
	}
	return d, nil
}
