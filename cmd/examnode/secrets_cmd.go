package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/examnode/examnode/node"
)

// addSecretFlags adds init's flags for encryption at rest and the
// private-network key.
func addSecretFlags(c *cobra.Command, encrypt *bool, pnetKey *string) {
	c.Flags().BoolVar(encrypt, "encrypt", false,
		"encrypt the store at rest (AES-256): the key is "+node.StoreKeyEnv+" if set (64 hex digits, or base64 of 32 bytes; "+
			"make one with `openssl rand -hex 32`), else a new key in <dir>/"+node.StoreKeyFile+" (mode 0600); without the key the data cannot be read")
	c.Flags().StringVar(pnetKey, "pnet-key", "",
		"private-network key FILE (swarm.key format, from `examnode pnet-key new`): only hosts with the same file can connect (TCP)")
	c.Example += `

  # a VM whose store is encrypted and whose mesh is private
  examnode pnet-key new /etc/examnode/swarm.key     # once, then copy to every host
  examnode init --role vm --org C1 --authority examnode-authority:… --encrypt --pnet-key /etc/examnode/swarm.key`
}

// setSecrets puts init's secret options into cfg. The pnet key file is
// recorded by absolute path; its content stays in the file.
func setSecrets(cfg *node.Config, encrypt bool, pnetKey string) error {
	cfg.Encrypt = encrypt
	if pnetKey != "" {
		abs, err := filepath.Abs(pnetKey)
		if err != nil {
			return err
		}
		cfg.PnetKey = abs
	}
	return nil
}

func printSecrets(e *env, cfg node.Config) {
	switch {
	case !cfg.Encrypt:
		fmt.Fprintf(e.stdout, "  store:   not encrypted (add --encrypt to a new data directory to encrypt it)\n")
	case envSet(node.StoreKeyEnv):
		fmt.Fprintf(e.stdout, "  store:   encrypted; the key is %s: set it for every `examnode run`, and keep a copy: without it the data cannot be read\n", node.StoreKeyEnv)
	default:
		fmt.Fprintf(e.stdout, "  store:   encrypted; key in %s (mode 0600): back it up apart from the data, or move it into %s\n",
			filepath.Join(e.dir, node.StoreKeyFile), node.StoreKeyEnv)
	}
	if cfg.PnetKey != "" {
		fmt.Fprintf(e.stdout, "  pnet:    private network, key file %s (every host needs the same file)\n", cfg.PnetKey)
	}
}

func pnetKeyCmd(e *env) *cobra.Command {
	c := &cobra.Command{
		Use:   "pnet-key",
		Short: "Make a private-network key: only hosts holding it can connect to each other",
	}
	c.AddCommand(&cobra.Command{
		Use:   "new FILE",
		Short: "Write a new random private-network key to FILE (mode 0600; refuses to overwrite)",
		Long: `Writes a libp2p private-network key (the swarm.key format of kubo and
ipfs-cluster). Copy the same file to every host of the network and give it to
` + "`examnode init --pnet-key FILE`" + ` (or "pnet_key" in config.json). A host without it
cannot complete a handshake with the network: it learns nothing, not even a
peer ID. The mesh uses TCP, which takes such a key (QUIC does not).`,
		Example: "  examnode pnet-key new /etc/examnode/swarm.key",
		Args:    cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			if err := node.NewPnetKey(args[0]); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "wrote %s; copy it to every host of the network\n", args[0])
			return nil
		},
	})
	return c
}

func envSet(name string) bool {
	_, ok := os.LookupEnv(name)
	return ok
}

// printSecurity is status's line on encryption at rest, the private
// network and the record schema version.
func printSecurity(w io.Writer, st node.Status) {
	rest, pn := "not encrypted", "none"
	if st.Encrypted {
		rest = "encrypted (AES-256)"
	}
	if st.PrivateNet {
		pn = "private-network key"
	}
	fmt.Fprintf(w, "at rest:   %s\nhandshake: %s\nschema:    record schema version %d\n", rest, pn, st.Schema)
}
