package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/examnode/examnode/bundle"
	"github.com/examnode/examnode/crdt"
	"github.com/examnode/examnode/internal/cluster"
	"github.com/examnode/examnode/node"
	"github.com/examnode/examnode/policy"
	"github.com/examnode/examnode/schema"
)

// bundleOpts: bundle rounds every 100 ms besides those changes trigger,
// short fetch attempts.
// bundleOpts configures a gated cluster that makes bundles: bundles are
// sealed only to archives and central peers an authority vouches for, so
// an open mesh makes none.
func bundleOpts() cluster.Options {
	o := testTuning()
	o.Bundles = node.BundleConfig{Interval: node.Duration(100 * time.Millisecond), FetchTimeout: node.Duration(5 * time.Second)}
	a, err := policy.GenerateAuthority()
	if err != nil {
		panic(err)
	}
	o.Authority = a
	authorities.Store(a.Public().String(), a)
	return o
}

// authorities maps a test cluster's authority key (as in its nodes'
// config) to the authority, so that finishExecution can sign central
// data for a cluster without a central node.
var authorities sync.Map

// asCentral signs rec as a central node of the authority vm's config names
// would: under a membership it grants a fresh key.
func asCentral(t *testing.T, vm *node.Node, rec schema.Record) ([]byte, policy.Membership) {
	t.Helper()
	v, ok := authorities.Load(vm.Config().Authority)
	if !ok {
		t.Fatal("the cluster's authority is unknown: make its options with bundleOpts")
	}
	a := v.(*policy.Authority)
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(key)
	now := time.Now()
	m, err := a.Grant(policy.GrantRequest{Network: vm.Config().Network, Peer: id.String(), Role: schema.RoleCentral, AllOrgs: true,
		NotBefore: now.Add(-time.Hour), Expires: now.Add(time.Hour)}, now)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := schema.Encode(rec)
	if err != nil {
		t.Fatal(err)
	}
	sr, err := policy.Sign(key, m, enc, policy.NextSeq(0, now), now)
	if err != nil {
		t.Fatal(err)
	}
	return policy.EncodeSigned(sr), m
}

// bundleCluster starts an archive (0) and VMs (1…vms) of org, connected.
func bundleCluster(t *testing.T, opts cluster.Options, vms int, archive cluster.Spec) *cluster.Cluster {
	t.Helper()
	c := cluster.NewCluster(t.TempDir(), opts)
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close cluster: %v", err)
		}
	})
	ctx := context.Background()
	archive.Role, archive.Orgs, archive.Name = schema.RoleArchive, []string{org}, "archive"
	if _, err := c.Add(ctx, archive); err != nil {
		t.Fatal(err)
	}
	for i := range vms {
		if _, err := c.Add(ctx, cluster.Spec{Name: fmt.Sprintf("vm%d", i+1), Role: schema.RoleVM, Orgs: []string{org}}); err != nil {
			t.Fatal(err)
		}
	}
	waitConnected(t, c)
	return c
}

// waitRecipient waits until vm would seal org's bundles to the archive.
func waitRecipient(t *testing.T, vm, archive *node.Node) {
	t.Helper()
	err := cluster.WaitFor(context.Background(), 20*time.Second, func() (bool, error) {
		rs, err := vm.BundleRecipients(context.Background(), org)
		return slices.Contains(rs, archive.ID().String()), err
	})
	if err != nil {
		t.Fatalf("VM %s never learnt the archive as a recipient: %v", vm.ID(), err)
	}
}

// finishExecution writes, on vm, an eligibility (directly into its
// replica, as central's would arrive), a finished execution, two result
// logs and the result.
func finishExecution(t *testing.T, vm *node.Node, id string) {
	t.Helper()
	finishExecutionVia(t, nil, vm, id)
}

// finishExecutionVia is finishExecution with the eligibility written by
// central through its API (signed, on a gated cluster) and awaited on vm,
// or, with central nil, put directly into vm's replica.
func finishExecutionVia(t *testing.T, central, vm *node.Node, id string) {
	t.Helper()
	finishExecutionWith(t, central, vm, id, scoreVariables)
}

// scoreVariables are the result variables finishExecution writes.
const scoreVariables = `{"SCORE":{"base_type":"float","cardinality":"single","value":7.5}}`

// resultWith is the body of execution id's result with vars.
func resultWith(id, vars string) string {
	return fmt.Sprintf(`{"execution":"%s","finished":"2026-06-01T09:30:00Z","variables":%s}`, id, vars)
}

// finishExecutionWith is finishExecutionVia with the result's variables
// vars (JSON).
func finishExecutionWith(t *testing.T, central, vm *node.Node, id, vars string) {
	t.Helper()
	ctx := context.Background()
	rep, err := vm.Replica(org)
	if err != nil {
		t.Fatal(err)
	}
	if central != nil {
		body := fmt.Sprintf(`{"test_center":"c1","delivery":"d1","test_takers":["tt-%s"]}`, id)
		if _, err := client(central).PutRecord(ctx, org, "eligibilities", "el-"+id, []byte(body)); err != nil {
			t.Fatalf("central writes the eligibility: %v", err)
		}
		err := cluster.WaitFor(ctx, 30*time.Second, func() (bool, error) {
			_, err := client(vm).GetRecord(ctx, org, "eligibilities", "el-"+id)
			return err == nil, nil
		})
		if err != nil {
			t.Fatalf("the eligibility never reached the VM: %v", err)
		}
		finishOnVM(t, vm, id, vars)
		return
	}
	putEligibility(t, vm, rep, id)
	finishOnVM(t, vm, id, vars)
}

// putEligibility stores, in vm's replica, the eligibility of test-taker
// tt-<id> that central would write, signed as central on a gated cluster,
// and waits until vm's API serves it.
func putEligibility(t *testing.T, vm *node.Node, rep *crdt.Replica, id string) {
	t.Helper()
	ctx := context.Background()
	el, err := schema.NewRecord(org, "el-"+id, schema.Eligibility{TestCenter: "c1", Delivery: "d1", TestTakers: []string{"tt-" + id}})
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := schema.Encode(el)
	if vm.Config().Authority != "" {
		// A gated VM's view takes only signed central data, written under
		// a membership held in the replica.
		var m policy.Membership
		enc, m = asCentral(t, vm, el)
		if err := rep.Put(ctx, crdt.MembershipKey(m.Serial), m.Encode()); err != nil {
			t.Fatal(err)
		}
	}
	if err := rep.Put(ctx, el.Key(), enc); err != nil {
		t.Fatal(err)
	}
	if err := cluster.WaitFor(ctx, 10*time.Second, func() (bool, error) {
		_, err := client(vm).GetRecord(ctx, org, "eligibilities", "el-"+id)
		return err == nil, nil
	}); err != nil {
		t.Fatalf("the eligibility never reached the VM's view: %v", err)
	}
}

// finishOnVM writes, through vm's API, a finished execution, two result
// logs, an attachment and the result with vars.
func finishOnVM(t *testing.T, vm *node.Node, id, vars string) {
	t.Helper()
	ctx := context.Background()
	cl := client(vm)
	put := func(kind, rid, body string) {
		t.Helper()
		if _, err := cl.PutRecord(ctx, org, kind, rid, []byte(body)); err != nil {
			t.Fatalf("put %s/%s: %v", kind, rid, err)
		}
	}
	put("executions", id, fmt.Sprintf(`{"delivery":"d1","test_taker":"tt-%s","state":"finished","started":"2026-06-01T08:00:00Z",`+
		`"finished":"2026-06-01T09:30:00Z","vm":"%s","version":1}`, id, vm.ID()))
	for seq := 1; seq <= 2; seq++ {
		put("result-logs", schema.LogID(id, uint64(seq)), fmt.Sprintf(`{"execution":"%s","seq":%d,"at":"2026-06-01T08:0%d:00Z","event":"item-%d"}`, id, seq, seq, seq))
	}
	if err := cl.PutAttachment(ctx, org, id, "essay.txt", []byte("An essay on offline-first sync, by tt-"+id)); err != nil {
		t.Fatalf("attachment: %v", err)
	}
	put("results", id, resultWith(id, vars))
}

// waitBundle polls n's bundle list until id satisfies cond.
func waitBundle(t *testing.T, n *node.Node, id, what string, cond func(node.BundleStatus) bool) node.BundleStatus {
	t.Helper()
	var last node.BundleStatus
	err := cluster.WaitFor(context.Background(), 60*time.Second, func() (bool, error) {
		bs, err := n.Bundles(context.Background(), org)
		if err != nil {
			return false, err
		}
		for _, b := range bs {
			if b.ID == id {
				last = b
				return cond(b), nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("bundle %s on %s: never %s (last %+v): %v", id, n.ID(), what, last, err)
	}
	return last
}

// bundleCounts checks the bundle counts n's status reports for org.
func bundleCounts(t *testing.T, n *node.Node, want map[string]int) {
	t.Helper()
	st, err := n.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range st.Bundles {
		if b.Org != org {
			continue
		}
		for state, k := range want {
			if b.States[state] != k {
				t.Fatalf("%s's status counts %d bundles %s in %s, want %d: %v", n.ID(), b.States[state], state, org, k, b.States)
			}
		}
		return
	}
	t.Fatalf("%s's status has no bundle counts for %s: %+v", n.ID(), org, st.Bundles)
}

func hasBlock(t *testing.T, n *node.Node, root string) bool {
	t.Helper()
	c, err := cid.Decode(root)
	if err != nil {
		t.Fatal(err)
	}
	ok, err := n.Store().Blockstore().Has(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func receiptedBy(id string) func(node.BundleStatus) bool {
	return func(b node.BundleStatus) bool {
		return slices.ContainsFunc(b.Receipts, func(r node.Receipt) bool { return r.Archive == id })
	}
}

// TestBundleSurvivesItsVM: a VM seals a bundle while the archive is cut
// off; another VM takes custody; the first VM dies; the archive archives
// the bundle from the second VM's copy, and that VM drops its copy only
// once the receipt has reached it.
func TestBundleSurvivesItsVM(t *testing.T) {
	opts := bundleOpts()
	opts.Bundles.DropAfterReceipt = true
	c := bundleCluster(t, opts, 2, cluster.Spec{Bundles: &node.BundleConfig{Interval: opts.Bundles.Interval, FetchTimeout: opts.Bundles.FetchTimeout}})
	ctx := context.Background()
	arch, vm1, vm2 := c.Node(0), c.Node(1), c.Node(2)
	waitRecipient(t, vm1, arch)
	c.Partition(0, 1)
	c.Partition(0, 2)

	finishExecution(t, vm1, "e1")
	both := []string{vm1.ID().String(), vm2.ID().String()}
	slices.Sort(both)
	b := waitBundle(t, vm1, "e1", "held by both VMs", func(b node.BundleStatus) bool { return slices.Equal(b.HeldBy, both) })
	if !b.Local.Made || !b.Local.Held || b.Signer != vm1.ID().String() || b.Size <= 0 || len(b.Receipts) != 0 {
		t.Fatalf("vm1's view of its bundle: %+v", b)
	}
	b2 := waitBundle(t, vm2, "e1", "held", func(b node.BundleStatus) bool { return b.Local.Held })
	// vm1 cannot read what it sealed: only the archive can.
	if _, err := vm1.BundleArchive(ctx, org, "e1"); err == nil {
		t.Fatal("a VM read a bundle sealed to the archive")
	}

	// No receipt yet: several rounds later vm2 still holds its copy.
	r0 := vm2.BundleRounds()
	if err := cluster.WaitFor(ctx, 20*time.Second, func() (bool, error) { return vm2.BundleRounds() >= r0+5, nil }); err != nil {
		t.Fatal(err)
	}
	if b := waitBundle(t, vm2, "e1", "listed", func(node.BundleStatus) bool { return true }); !b.Local.Held || !b.Local.Dropped.IsZero() || !hasBlock(t, vm2, b.Root) {
		t.Fatalf("vm2 dropped its copy before any receipt: %+v", b)
	}

	bundleCounts(t, vm2, map[string]int{"pending": 1, "archived": 0})

	// vm1 dies; the archive reaches only vm2.
	if err := c.Stop(1); err != nil {
		t.Fatal(err)
	}
	if err := c.Heal(ctx, 0, 2); err != nil {
		t.Fatal(err)
	}
	a := waitBundle(t, arch, "e1", "receipted", receiptedBy(arch.ID().String()))
	if !a.Local.Pinned || a.Local.Failed != "" || a.SHA256 != b2.SHA256 || a.Receipts[0].SHA256 != b2.SHA256 {
		t.Fatalf("archive's view: %+v", a)
	}
	bundleCounts(t, arch, map[string]int{"pending": 0, "archived": 1})
	// The receipt replicates to vm2, which then drops its copy.
	d := waitBundle(t, vm2, "e1", "dropped", func(b node.BundleStatus) bool { return !b.Local.Dropped.IsZero() })
	if d.Local.Held || hasBlock(t, vm2, d.Root) {
		t.Fatalf("vm2 says it dropped the bundle but still holds it: %+v", d)
	}
	if !hasBlock(t, arch, a.Root) {
		t.Fatal("the archive does not hold the bundle's root block")
	}

	// The export passes sha256sum -c and bundle.Verify.
	dir := filepath.Join(t.TempDir(), "e1")
	info, err := client(arch).ExportBundle(ctx, org, "e1", dir)
	if err != nil {
		t.Fatal(err)
	}
	if info.SHA256 != a.SHA256 || info.Signer != vm1.ID().String() {
		t.Fatalf("exported %+v; the bundle record says %+v", info, a)
	}
	runIn(t, dir, "sha256sum", "--strict", "-c", bundle.ManifestName)
	if r, err := bundle.Verify(dir); err != nil || !slices.Contains(r.Files, "result.json") || !slices.Contains(r.Files, "result-logs/"+schema.LogID("e1", 2)+".json") {
		t.Fatalf("Verify: %+v, %v", r, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "attachments", "essay.txt")); err != nil || string(b) != "An essay on offline-first sync, by tt-e1" {
		t.Fatalf("the attachment in the export: %q, %v", b, err)
	}
	// The bundle is sealed: a late attachment is refused on the VM that ran it.
	var ae *node.APIError
	if err := client(vm2).PutAttachment(ctx, org, "e1", "late.txt", []byte("x")); !errors.As(err, &ae) || ae.Status != 403 {
		t.Fatalf("an attachment on another VM: %v", err)
	}
}

// TestArchiveKeepsAsideABundleThatFails: a bundle record whose payload is
// another execution's archive is not receipted; the archive shows why.
func TestArchiveKeepsAsideABundleThatFails(t *testing.T) {
	c := bundleCluster(t, bundleOpts(), 1, cluster.Spec{})
	ctx := context.Background()
	arch, vm := c.Node(0), c.Node(1)
	waitRecipient(t, vm, arch)
	finishExecution(t, vm, "e1")
	good := waitBundle(t, arch, "e1", "receipted", receiptedBy(arch.ID().String()))
	// drop_after_receipt is off by default: the VM keeps its copy after the receipt.
	waitBundle(t, vm, "e1", "receipted on the VM", receiptedBy(arch.ID().String()))
	r1 := vm.BundleRounds()
	if err := cluster.WaitFor(ctx, 20*time.Second, func() (bool, error) { return vm.BundleRounds() >= r1+3, nil }); err != nil {
		t.Fatal(err)
	}
	if b := waitBundle(t, vm, "e1", "listed", func(node.BundleStatus) bool { return true }); !b.Local.Held || !hasBlock(t, vm, b.Root) {
		t.Fatalf("the VM dropped its copy with drop_after_receipt off: %+v", b)
	}
	// Sealed: the VM kept no plain copy of the attachment and refuses a late one.
	if as, err := client(vm).Attachments(ctx, org, "e1"); err != nil || len(as) != 0 {
		t.Fatalf("attachments left after sealing: %+v, %v", as, err)
	}
	var ae *node.APIError
	if err := client(vm).PutAttachment(ctx, org, "e1", "late.txt", []byte("x")); !errors.As(err, &ae) || ae.Code != "bundle_sealed" {
		t.Fatalf("a late attachment: %v", err)
	}

	// e2's record points at e1's payload: the VM, which runs e2 (still
	// active), signs it as its bundle.
	rep, _ := vm.Replica(org)
	putEligibility(t, vm, rep, "e2")
	if _, err := client(vm).PutRecord(ctx, org, "executions", "e2", []byte(fmt.Sprintf(`{"delivery":"d1","test_taker":"tt-e2","state":"active",`+
		`"started":"2026-06-01T08:00:00Z","vm":"%s","version":1}`, vm.ID()))); err != nil {
		t.Fatal(err)
	}
	bad, err := schema.NewRecord(org, "e2", schema.BundleMeta{Execution: "e2", SHA256: good.SHA256, Size: good.Size,
		Signer: good.Signer, Created: good.Created, Root: good.Root})
	if err != nil {
		t.Fatal(err)
	}
	ml := newMallory(t, c, 1, org)
	ml.put(bad.Key(), ml.signAs(ml.key, ml.m, bad))
	f := waitBundle(t, arch, "e2", "kept aside", func(b node.BundleStatus) bool { return b.Local.Failed != "" })
	if !strings.Contains(f.Local.Failed, "execution e1") || len(f.Receipts) != 0 {
		t.Fatalf("failed bundle: %+v", f)
	}
	r0 := arch.BundleRounds()
	if err := cluster.WaitFor(ctx, 20*time.Second, func() (bool, error) { return arch.BundleRounds() >= r0+3, nil }); err != nil {
		t.Fatal(err)
	}
	if f := waitBundle(t, arch, "e2", "listed", func(node.BundleStatus) bool { return true }); len(f.Receipts) != 0 {
		t.Fatalf("a failed bundle was receipted: %+v", f)
	}
}

// TestTimestampAndRetention: an archive without a TSA archives a bundle;
// restarted with one, it adds a token that openssl verifies; retention
// (short period, moved clock) deletes the payload and the time-stamp files
// and keeps the metadata, marked deleted.
func TestTimestampAndRetention(t *testing.T) {
	tsa, err := StartTSA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tsa.Close() })
	clock := &testClock{}
	opts := bundleOpts()
	opts.BundleClock = clock.Now
	c := bundleCluster(t, opts, 1, cluster.Spec{})
	ctx := context.Background()
	arch, vm := c.Node(0), c.Node(1)
	waitRecipient(t, vm, arch)
	finishExecution(t, vm, "e1")
	a := waitBundle(t, arch, "e1", "receipted", receiptedBy(arch.ID().String()))
	if a.Timestamp != nil {
		t.Fatalf("time-stamped without a TSA: %+v", a)
	}

	// Restart the archive with a TSA and a one-hour retention.
	cfg := opts.Bundles
	cfg.TSA = tsa.URL
	cfg.Retention = map[string]node.RetentionConfig{org: {Period: node.Duration(time.Hour), Locked: true}}
	if err := c.Stop(0); err != nil {
		t.Fatal(err)
	}
	c.Members()[0].Spec.Bundles = &cfg
	if err := c.Restart(ctx, 0); err != nil {
		t.Fatal(err)
	}
	arch = c.Node(0)
	// It listens on a new port: dial the VM, whose configured address is stale.
	if err := c.Connect(ctx, 0, 1); err != nil {
		t.Fatal(err)
	}
	a = waitBundle(t, arch, "e1", "time-stamped", func(b node.BundleStatus) bool { return b.Timestamp != nil })
	if tsa.Requests.Load() == 0 || a.Local.StampError != "" {
		t.Fatalf("stamped without asking the TSA? %+v", a)
	}
	dir := filepath.Join(t.TempDir(), "e1")
	if _, err := client(arch).ExportBundle(ctx, org, "e1", dir); err != nil {
		t.Fatal(err)
	}
	runIn(t, dir, "openssl", "ts", "-verify", "-in", bundle.TSRName, "-data", bundle.ArchiveName, "-CAfile", tsa.CAFile)
	runIn(t, dir, "openssl", "ts", "-verify", "-in", bundle.TSRName, "-queryfile", bundle.TSQName, "-CAfile", tsa.CAFile)
	runIn(t, dir, "sha256sum", "--strict", "-c", bundle.ManifestName)
	if r, err := bundle.Verify(dir); err != nil || r.Timestamp == nil {
		t.Fatalf("Verify: %+v, %v", r, err)
	}
	// A changed byte in the token or the request is named.
	for _, f := range []string{bundle.TSRName, bundle.TSQName} {
		p := filepath.Join(dir, f)
		orig, _ := os.ReadFile(p)
		b := slices.Clone(orig)
		b[len(b)-40] ^= 0x01
		os.WriteFile(p, b, 0o644)
		var ve *bundle.VerifyError
		if _, err := bundle.Verify(dir); !errors.As(err, &ve) || ve.File != f {
			t.Fatalf("Verify after changing %s: %v", f, err)
		}
		os.WriteFile(p, orig, 0o644)
	}

	// Not yet expired: nothing deleted. Then two hours pass.
	r0 := arch.BundleRounds()
	if err := cluster.WaitFor(ctx, 20*time.Second, func() (bool, error) { return arch.BundleRounds() >= r0+3, nil }); err != nil {
		t.Fatal(err)
	}
	if b := waitBundle(t, arch, "e1", "listed", func(node.BundleStatus) bool { return true }); !b.Deleted.IsZero() || !hasBlock(t, arch, b.Root) {
		t.Fatalf("deleted before its time: %+v", b)
	}
	clock.Advance(2 * time.Hour)
	d := waitBundle(t, arch, "e1", "deleted", func(b node.BundleStatus) bool { return !b.Deleted.IsZero() })
	if !strings.Contains(d.Rule, "keep 1h0m0s locked by central") || d.SHA256 != a.SHA256 || d.Local.Pinned || hasBlock(t, arch, d.Root) {
		t.Fatalf("after retention: %+v", d)
	}
	if _, err := arch.BundleStamp(ctx, org, "e1", ".tsr"); err == nil {
		t.Fatal("the time-stamp token survived retention")
	}
	if _, err := arch.BundleArchive(ctx, org, "e1"); err == nil {
		t.Fatal("the archive still exports a deleted bundle")
	}
	// The deletion (metadata kept, marked deleted) replicates to the VM.
	waitBundle(t, vm, "e1", "marked deleted", func(b node.BundleStatus) bool { return !b.Deleted.IsZero() && b.SHA256 == a.SHA256 })
}

type testClock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

func runIn(t *testing.T, dir, name string, args ...string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s is not installed (.ci/run installs it on Debian): %v", name, err)
	}
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	t.Logf("%s %s: %s", name, strings.Join(args, " "), strings.TrimSpace(string(out)))
}

// TestGatedBundle: under an authority, a VM seals to the archive its
// membership names (not to the other VM), the other VM of the centre takes
// custody, and the archive receipts after checking the signer's membership.
func TestGatedBundle(t *testing.T) {
	c := gatedBundleCluster(t)
	ctx := context.Background()
	arch, vm1, vm2 := c.Node(0), c.Node(1), c.Node(2)
	waitRecipient(t, vm1, arch)
	// Recipients are the archive and central, never a VM.
	if rs, _ := vm1.BundleRecipients(ctx, org); !slices.Contains(rs, arch.ID().String()) ||
		slices.Contains(rs, vm1.ID().String()) || slices.Contains(rs, vm2.ID().String()) {
		t.Fatalf("vm1 seals to %v; want the archive (and central), no VM", rs)
	}
	finishExecutionVia(t, c.Node(3), vm1, "e1")
	a := waitBundle(t, arch, "e1", "receipted", receiptedBy(arch.ID().String()))
	if a.Local.Failed != "" || !a.Local.Pinned {
		t.Fatalf("archive: %+v", a)
	}
	waitBundle(t, vm2, "e1", "held by vm2", func(b node.BundleStatus) bool {
		return b.Local.Held && slices.Contains(b.HeldBy, vm2.ID().String())
	})
	if _, err := arch.BundleArchive(ctx, org, "e1"); err != nil {
		t.Fatalf("the archive cannot read the bundle: %v", err)
	}
}

// gatedBundleCluster starts, under a new authority, an archive (0), two
// VMs (1, 2) and central (3) of org, with bundle rounds (bundleOpts), and
// waits until they are connected.
func gatedBundleCluster(t *testing.T) *cluster.Cluster {
	t.Helper()
	auth, err := policy.GenerateAuthority()
	if err != nil {
		t.Fatal(err)
	}
	opts := bundleOpts()
	opts.Authority = auth
	c := cluster.NewCluster(t.TempDir(), opts)
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close cluster: %v", err)
		}
	})
	for _, s := range []cluster.Spec{
		{Name: "archive", Role: schema.RoleArchive, Orgs: []string{org}},
		{Name: "vm1", Role: schema.RoleVM, Orgs: []string{org}},
		{Name: "vm2", Role: schema.RoleVM, Orgs: []string{org}},
		{Name: "central", Role: schema.RoleCentral, Orgs: []string{org}},
	} {
		if _, err := c.Add(context.Background(), s); err != nil {
			t.Fatal(err)
		}
	}
	waitConnected(t, c)
	return c
}

// TestCentralExportsABundleItDoesNotHold: with no archive, a bundle lives
// on the VMs of the centre, sealed to central. Central's export fetches it
// from a VM, unseals and verifies it, and keeps no copy afterwards; a VM,
// not a recipient, cannot export it.
func TestCentralExportsABundleItDoesNotHold(t *testing.T) {
	c := cluster.NewCluster(t.TempDir(), bundleOpts())
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close cluster: %v", err)
		}
	})
	ctx := context.Background()
	if _, err := c.Add(ctx, cluster.Spec{Name: "central", Role: schema.RoleCentral, Orgs: []string{org}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Add(ctx, cluster.Spec{Name: "vm1", Role: schema.RoleVM, Orgs: []string{org}}); err != nil {
		t.Fatal(err)
	}
	waitConnected(t, c)
	central, vm := c.Node(0), c.Node(1)
	waitRecipient(t, vm, central)
	finishExecution(t, vm, "e1")
	made := waitBundle(t, central, "e1", "listed on central", func(b node.BundleStatus) bool { return b.Root != "" })
	if hasBlock(t, central, made.Root) {
		t.Fatal("central holds the bundle's payload before any export")
	}

	plain, err := client(central).BundleFile(ctx, org, "e1", "archive")
	if err != nil {
		t.Fatalf("export on central: %v", err)
	}
	info, err := bundle.VerifyArchive(bytes.NewReader(plain))
	if err != nil {
		t.Fatalf("the exported archive does not verify: %v", err)
	}
	if info.Execution != "e1" || info.SHA256 != made.SHA256 || info.Signer != vm.ID().String() {
		t.Fatalf("exported %+v; the bundle record says %s signed by %s", info, made.SHA256, made.Signer)
	}
	if hasBlock(t, central, made.Root) {
		t.Fatal("central kept the payload it fetched for the export")
	}
	// A second export fetches it again.
	if again, err := client(central).BundleFile(ctx, org, "e1", "archive"); err != nil || !bytes.Equal(again, plain) {
		t.Fatalf("second export: %d bytes, %v", len(again), err)
	}
	// The VM holds the payload but is not a recipient.
	var ae *node.APIError
	if _, err := client(vm).BundleFile(ctx, org, "e1", "archive"); !errors.As(err, &ae) {
		t.Fatalf("export on the VM: %v; want an API error", err)
	}
}
