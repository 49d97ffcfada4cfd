package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/examnode/examnode/bundle"
	"github.com/examnode/examnode/node"
)

func bundleCmd(e *env) *cobra.Command {
	c := &cobra.Command{
		Use:   "bundle",
		Short: "Result bundles: status, export, offline verification",
		Long: `A result bundle is one signed, checksummed archive per finished execution,
made by the VM that ran it, held by the centre's VMs and archived, receipted and
time-stamped by archive nodes.`,
		Example: `  examnode bundle ls
  examnode bundle export e1 ./e1
  examnode bundle verify ./e1`,
	}
	c.AddCommand(bundleLsCmd(e), bundleExportCmd(e), bundleVerifyCmd(e))
	return c
}

func bundleLsCmd(e *env) *cobra.Command {
	var org string
	c := &cobra.Command{
		Use:   "ls",
		Short: "Each bundle's status: created, held by N, receipted, time-stamped, deleted",
		Example: `  examnode bundle ls --org C1
  examnode bundle ls --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := e.client()
			if err != nil {
				return err
			}
			bs, err := cl.Bundles(cmd.Context(), org)
			if err != nil {
				return err
			}
			if e.json {
				return e.printJSON(bs)
			}
			var rows [][]string
			for _, b := range bs {
				receipted := "no"
				if len(b.Receipts) > 0 {
					receipted = fmt.Sprintf("%d (%s)", len(b.Receipts), b.Receipts[0].At.UTC().Format(time.RFC3339))
				}
				stamped := "-"
				if b.Timestamp != nil {
					stamped = b.Timestamp.Time
				}
				deleted := "-"
				if !b.Deleted.IsZero() {
					deleted = b.Deleted.UTC().Format(time.RFC3339) + " (" + b.Rule + ")"
				}
				rows = append(rows, []string{
					b.Org, b.ID, b.Created.UTC().Format(time.RFC3339), fmt.Sprint(b.Size), fmt.Sprint(len(b.HeldBy)),
					receipted, stamped, deleted, localState(b.Local), b.SHA256[:12],
				})
			}
			e.table("ORG\tID\tCREATED\tSIZE\tHELD BY\tRECEIPTED\tTIME-STAMPED\tDELETED\tHERE\tSHA-256", rows)
			return nil
		},
	}
	c.Flags().StringVar(&org, "org", "", "only this organisation")
	return c
}

// localState says in a word or two what this node holds of a bundle.
func localState(l node.BundleLocal) string {
	var s []string
	switch {
	case l.Failed != "":
		s = append(s, "FAILED: "+l.Failed)
	case l.Pinned:
		s = append(s, "pinned")
	case l.Held:
		s = append(s, "held")
	case !l.Dropped.IsZero():
		s = append(s, "dropped")
	default:
		s = append(s, "-")
	}
	if l.Made {
		s = append(s, "made here")
	}
	if l.StampError != "" {
		s = append(s, "time-stamp failed: "+l.StampError)
	}
	return strings.Join(s, ", ")
}

func bundleExportCmd(e *env) *cobra.Command {
	var org string
	c := &cobra.Command{
		Use:   "export ID DIR",
		Short: "Write a bundle's archive, MANIFEST.sha256, signature and time-stamp into DIR",
		Long: `Export writes, into DIR (new or empty): bundle.tar.gz, bundle.tar.gz.sha256,
MANIFEST.sha256, MANIFEST.sha256.sig, the content files, and bundle.tar.gz.tsq /
.tsr if the bundle is time-stamped. Only an archive or central node can read a
bundle (it is sealed to them). Central holds no copies: it fetches one from the
VMs or an archive for the export and deletes it after. In DIR, 'sha256sum -c MANIFEST.sha256' checks the
files and 'openssl ts -verify -in bundle.tar.gz.tsr -data bundle.tar.gz -CAfile
<the TSA's CA>' checks the time-stamp.`,
		Example: `  examnode bundle export e1 ./e1
  examnode bundle export --org C1 e1 ./e1 && cd e1 && sha256sum -c MANIFEST.sha256`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := e.client()
			if err != nil {
				return err
			}
			id, dir := args[0], args[1]
			if org == "" {
				bs, err := cl.Bundles(cmd.Context(), "")
				if err != nil {
					return err
				}
				var orgs []string
				for _, b := range bs {
					if b.ID == id {
						orgs = append(orgs, b.Org)
					}
				}
				switch len(orgs) {
				case 0:
					return fmt.Errorf("no bundle %s on this node (see `examnode bundle ls`)", id)
				case 1:
					org = orgs[0]
				default:
					return fmt.Errorf("bundle %s exists in %s; choose one with --org", id, strings.Join(orgs, ", "))
				}
			}
			info, err := cl.ExportBundle(cmd.Context(), org, id, dir)
			if err != nil {
				return err
			}
			if e.json {
				return e.printJSON(info)
			}
			fmt.Fprintf(e.stdout, "exported bundle %s of %s into %s: %d files, archive %d bytes, SHA-256 %s, signed by %s\n",
				id, org, dir, len(info.Files), info.Size, info.SHA256, info.Signer)
			return nil
		},
	}
	c.Flags().StringVar(&org, "org", "", "the bundle's organisation (found by ID if omitted)")
	return c
}

func bundleVerifyCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "verify PATH",
		Short: "Verify an exported bundle offline, with no daemon; exits non-zero naming the file that failed",
		Long: `Verify checks, offline: the archive's structure, the manifest, every file's
SHA-256, the VM's signature over the manifest (its key is in its peer ID), the
archive's recorded SHA-256, that the directory's files are the archive's, and the
time-stamp token's imprint and signature. PATH is an export directory, its
bundle.tar.gz, or a lone archive file.`,
		Example: `  examnode bundle verify ./e1
  examnode bundle verify ./e1/bundle.tar.gz --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			r, err := bundle.Verify(args[0])
			var ve *bundle.VerifyError
			if errors.As(err, &ve) {
				if e.json {
					_ = e.printJSON(map[string]any{"ok": false, "file": ve.File, "error": ve.Reason})
				}
				return fmt.Errorf("bundle verification FAILED: %s: %s", ve.File, ve.Reason)
			}
			if err != nil {
				return err
			}
			if e.json {
				return e.printJSON(map[string]any{"ok": true, "report": r})
			}
			fmt.Fprintf(e.stdout, "OK: bundle of execution %s, created %s, signed by %s\n", r.Execution, r.Created.Format(time.RFC3339), r.Signer)
			names := r.Checked
			if len(names) > 8 {
				names = append(slices.Clone(names[:7]), fmt.Sprintf("… %d more", len(r.Checked)-7))
			}
			fmt.Fprintf(e.stdout, "archive SHA-256 %s (%d bytes); %d files checked: %s\n", r.SHA256, r.Size, len(r.Checked), strings.Join(names, ", "))
			if r.Timestamp != nil {
				fmt.Fprintf(e.stdout, "time-stamped %s by %s (serial %s); check its chain with openssl ts -verify -CAfile\n", r.Timestamp.Time, r.Timestamp.Authority, r.Timestamp.Serial)
			}
			return nil
		},
	}
}
