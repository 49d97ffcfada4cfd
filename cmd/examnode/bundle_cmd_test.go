package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/examnode/examnode/bundle"
	"github.com/examnode/examnode/crdt"
	"github.com/examnode/examnode/internal/cluster"
	"github.com/examnode/examnode/node"
	"github.com/examnode/examnode/policy"
	"github.com/examnode/examnode/schema"
)

func TestBundleCommands(t *testing.T) {
	ctx := context.Background()
	// Gated: an open mesh seals to no claimed archive, so makes no bundle.
	auth, err := policy.GenerateAuthority()
	if err != nil {
		t.Fatal(err)
	}
	c := cluster.NewCluster(t.TempDir(), cluster.Options{
		Tuning:    node.Tuning{ExchangeInterval: node.Duration(time.Hour), RebroadcastInterval: node.Duration(time.Hour)},
		Bundles:   node.BundleConfig{Interval: node.Duration(100 * time.Millisecond)},
		Authority: auth,
	})
	t.Cleanup(func() { _ = c.Close() })
	if _, err := c.Add(ctx, cluster.Spec{Name: "archive", Role: schema.RoleArchive, Orgs: []string{"C1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Add(ctx, cluster.Spec{Name: "vm", Role: schema.RoleVM, Orgs: []string{"C1"}}); err != nil {
		t.Fatal(err)
	}
	arch, vm := c.Members()[0], c.Members()[1]
	if err := cluster.WaitFor(ctx, 20*time.Second, func() (bool, error) {
		rs, err := vm.Node.BundleRecipients(ctx, "C1")
		return slices.Contains(rs, arch.ID.String()), err
	}); err != nil {
		t.Fatal(err)
	}

	// The VM finishes an execution.
	rep, _ := vm.Node.Replica("C1")
	el, _ := schema.NewRecord("C1", "el1", schema.Eligibility{TestCenter: "c1", Delivery: "d1", TestTakers: []string{"tt1"}})
	enc, _ := schema.Encode(el)
	// Signed as a central node of the authority (there is none in the cluster).
	ckey, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	cid, _ := peer.IDFromPrivateKey(ckey)
	now := time.Now()
	cm, err := auth.Grant(policy.GrantRequest{Network: vm.Node.Config().Network, Peer: cid.String(), Role: schema.RoleCentral, AllOrgs: true,
		NotBefore: now.Add(-time.Hour), Expires: now.Add(time.Hour)}, now)
	if err != nil {
		t.Fatal(err)
	}
	sr, err := policy.Sign(ckey, cm, enc, policy.NextSeq(0, now), now)
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.Put(ctx, crdt.MembershipKey(cm.Serial), cm.Encode()); err != nil {
		t.Fatal(err)
	}
	if err := rep.Put(ctx, el.Key(), policy.EncodeSigned(sr)); err != nil {
		t.Fatal(err)
	}
	cl := &node.Client{Addr: vm.Node.APIAddr(), Token: vm.Node.Token()}
	if err := cluster.WaitFor(ctx, 10*time.Second, func() (bool, error) {
		_, err := cl.GetRecord(ctx, "C1", "eligibilities", "el1")
		return err == nil, nil
	}); err != nil {
		t.Fatalf("the signed eligibility never reached the VM's view: %v", err)
	}
	for _, r := range []struct{ kind, id, body string }{
		{"executions", "e1", fmt.Sprintf(`{"delivery":"d1","test_taker":"tt1","state":"finished","started":"2026-06-01T08:00:00Z","finished":"2026-06-01T09:30:00Z","vm":"%s","version":1}`, vm.ID)},
		{"results", "e1", `{"execution":"e1","finished":"2026-06-01T09:30:00Z","variables":{"SCORE":{"base_type":"float","cardinality":"single","value":9}}}`},
	} {
		if _, err := cl.PutRecord(ctx, "C1", r.kind, r.id, []byte(r.body)); err != nil {
			t.Fatal(err)
		}
	}
	var bs []node.BundleStatus
	if err := cluster.WaitFor(ctx, 60*time.Second, func() (bool, error) {
		out := mustCLI(t, "bundle", "ls", "--dir", arch.Dir, "--json")
		if err := json.Unmarshal([]byte(out), &bs); err != nil {
			return false, err
		}
		return len(bs) == 1 && bs[0].Local.Pinned && len(bs[0].Receipts) == 1, nil
	}); err != nil {
		t.Fatalf("bundle ls --json never showed e1 receipted: %+v: %v", bs, err)
	}
	out := mustCLI(t, "bundle", "ls", "--dir", arch.Dir)
	for _, want := range []string{"HELD BY", "RECEIPTED", "TIME-STAMPED", "DELETED", "e1", "pinned", bs[0].SHA256[:12]} {
		if !strings.Contains(out, want) {
			t.Fatalf("bundle ls lacks %q:\n%s", want, out)
		}
	}
	if out := mustCLI(t, "bundle", "ls", "--dir", vm.Dir); !strings.Contains(out, "made here") {
		t.Fatalf("bundle ls on the VM:\n%s", out)
	}

	// Export on the archive; the VM cannot read what it sealed.
	dir := filepath.Join(t.TempDir(), "e1")
	if out := mustCLI(t, "bundle", "export", "--dir", arch.Dir, "e1", dir); !strings.Contains(out, bs[0].SHA256) {
		t.Fatalf("export: %s", out)
	}
	if code, _, errs := cli(t, "", "bundle", "export", "--dir", vm.Dir, "e1", filepath.Join(t.TempDir(), "x")); code == 0 || !strings.Contains(errs, "sealed") {
		t.Fatalf("export on the VM: exit %d %q", code, errs)
	}

	// verify works offline: stop both daemons first.
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	out = mustCLI(t, "bundle", "verify", dir)
	if !strings.Contains(out, "OK: bundle of execution e1") || !strings.Contains(out, bs[0].SHA256) {
		t.Fatalf("verify:\n%s", out)
	}
	for _, f := range []string{"result.json", bundle.ManifestName, bundle.SignatureName, bundle.ArchiveName} {
		p := filepath.Join(dir, f)
		orig, _ := os.ReadFile(p)
		b := slices.Clone(orig)
		b[len(b)/2] ^= 0x20
		os.WriteFile(p, b, 0o644)
		code, _, errs := cli(t, "", "bundle", "verify", dir)
		if code == 0 || !strings.Contains(errs, "FAILED: "+f) {
			t.Fatalf("verify after changing %s: exit %d %q", f, code, errs)
		}
		code, jsonOut, _ := cli(t, "", "bundle", "verify", dir, "--json")
		var res struct {
			OK   bool   `json:"ok"`
			File string `json:"file"`
		}
		if code == 0 || json.Unmarshal([]byte(jsonOut), &res) != nil || res.OK || !strings.HasPrefix(res.File, f) {
			t.Fatalf("verify --json after changing %s: exit %d %q", f, code, jsonOut)
		}
		os.WriteFile(p, orig, 0o644)
	}
	mustCLI(t, "bundle", "verify", filepath.Join(dir, bundle.ArchiveName))
}
