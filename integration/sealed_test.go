package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/examnode/examnode/bundle"
	"github.com/examnode/examnode/internal/cluster"
	"github.com/examnode/examnode/node"
	"github.com/examnode/examnode/schema"
)

// TestResultsSealedToCentralAndArchive is issue 6's "result bodies sealed
// so that only the central/archive recipients can read them while every
// VM of the centre can hold copies", with real nodes under an authority:
// vm1 writes a result whose variables carry a unique marker; it reaches
// vm2, central and the archive. Central, the archive and vm1 (its writer)
// serve the variables in clear; vm2 serves the result sealed, without
// variables; no node's stored value holds the marker, and vm2's data
// directory holds it in no file, running or stopped, while a second marker
// vm1 wrote in clear (in a result log) is found there, which shows the
// scan finds plaintext where there is some. The identical result written
// again on vm1 is a no-op, a different one is refused, and the bundle the
// archive exports holds the result in clear.
func TestResultsSealedToCentralAndArchive(t *testing.T) {
	c := gatedBundleCluster(t)
	ctx := context.Background()
	arch, vm1, vm2, central := c.Node(0), c.Node(1), c.Node(2), c.Node(3)
	err := cluster.WaitFor(ctx, 20*time.Second, func() (bool, error) {
		rs, err := vm1.BundleRecipients(ctx, org)
		return slices.Contains(rs, arch.ID().String()) && slices.Contains(rs, central.ID().String()), err
	})
	if err != nil {
		t.Fatalf("vm1 never knew the archive and central as recipients: %v", err)
	}

	stamp := time.Now().UnixNano()
	marker := fmt.Sprintf("SEALED-RESULT-MARKER-%d", stamp)
	clearMarker := fmt.Sprintf("CLEAR-LOG-MARKER-%d", stamp)
	vars := fmt.Sprintf(`{"RESPONSE":{"base_type":"string","cardinality":"single","value":%q},`+
		`"SCORE":{"base_type":"float","cardinality":"single","value":7.5}}`, strings.Repeat(marker+" ", 40))
	finishExecutionWith(t, central, vm1, "e1", vars)
	logBody := fmt.Sprintf(`{"execution":"e1","seq":3,"at":"2026-06-01T09:10:00Z","event":"note","data":{"text":%q}}`, strings.Repeat(clearMarker+" ", 40))
	if _, err := client(vm1).PutRecord(ctx, org, "result-logs", schema.LogID("e1", 3), []byte(logBody)); err != nil {
		t.Fatal(err)
	}

	// Who reads what, through the API.
	for _, n := range []*node.Node{central, arch, vm1} {
		waitRecord(t, n, org, "results", "e1", resultServed(true, marker))
	}
	waitRecord(t, vm2, org, "results", "e1", resultServed(false, marker))
	l, err := client(vm2).ListRecords(ctx, org, "results", node.RecordQuery{})
	if err != nil || len(l.Records) != 1 || resultServed(false, marker)(l.Records[0]) != nil {
		t.Fatalf("vm2's list of results: %+v %v", l, err)
	}
	l, err = client(central).ListRecords(ctx, org, "results", node.RecordQuery{Filters: map[string]string{"execution": "e1"}})
	if err != nil || len(l.Records) != 1 || resultServed(true, marker)(l.Records[0]) != nil {
		t.Fatalf("central's list of results: %+v %v", l, err)
	}
	waitRecord(t, vm2, org, "result-logs", schema.LogID("e1", 3), bodyHas(clearMarker))

	// What every node stores: the sealed form, one and the same.
	var stored string
	for _, n := range []*node.Node{vm1, vm2, central, arch} {
		got, err := cluster.Contents(ctx, n, org)
		if err != nil {
			t.Fatal(err)
		}
		v := got["/results/e1"]
		if v == "" || strings.Contains(v, marker) || strings.Contains(v, "RESPONSE") {
			t.Fatalf("%s stores the result as %.300q; want it sealed", n.ID(), v)
		}
		if stored != "" && v != stored {
			t.Fatalf("%s stores another result than vm1", n.ID())
		}
		stored = v
	}

	// Append-only: the identical result again is a no-op, another refused.
	res, err := client(vm1).PutRecord(ctx, org, "results", "e1", []byte(resultWith("e1", vars)))
	if err != nil || !res.NoOp {
		t.Fatalf("the identical result again on vm1: %+v %v; want a no-op", res, err)
	}
	var re *node.RecordError
	_, err = client(vm1).PutRecord(ctx, org, "results", "e1", []byte(resultWith("e1", scoreVariables)))
	if !errors.As(err, &re) || re.Status != 409 || re.Code != "append_only" {
		t.Fatalf("another result on vm1: %v; want 409 append_only", err)
	}
	if got, _ := cluster.Contents(ctx, vm1, org); got["/results/e1"] != stored {
		t.Fatal("a no-op or refused write changed vm1's stored result")
	}
	if st, err := vm1.Status(ctx); err != nil || len(st.Replicas) != 1 || st.Replicas[0].ResultsUnsealed != 0 {
		t.Fatalf("vm1's status: %+v %v; want no result in clear", st.Replicas, err)
	}

	// Variables too large to seal into a record are refused before
	// anything is stored.
	el := `{"test_center":"c1","delivery":"d1","test_takers":["tt-e2"]}`
	if _, err := client(central).PutRecord(ctx, org, "eligibilities", "el-e2", []byte(el)); err != nil {
		t.Fatal(err)
	}
	waitRecord(t, vm1, org, "eligibilities", "el-e2", func(node.RecordView) error { return nil })
	if _, err := client(vm1).PutRecord(ctx, org, "executions", "e2", []byte(fmt.Sprintf(`{"delivery":"d1","test_taker":"tt-e2","state":"finished",`+
		`"started":"2026-06-01T08:00:00Z","finished":"2026-06-01T09:30:00Z","vm":"%s","version":1}`, vm1.ID()))); err != nil {
		t.Fatal(err)
	}
	big := fmt.Sprintf(`{"ESSAY":{"base_type":"string","cardinality":"single","value":%q}}`, strings.Repeat("x", 800_000))
	_, err = client(vm1).PutRecord(ctx, org, "results", "e2", []byte(resultWith("e2", big)))
	if !errors.As(err, &re) || re.Status != 400 || re.Field != "body.sealed" || re.Rule != "length" {
		t.Fatalf("a result of 800 kB of variables: %v; want 400 on body.sealed (length)", err)
	}
	if _, err := client(vm1).GetRecord(ctx, org, "results", "e2"); err == nil {
		t.Fatal("the refused result was stored")
	}

	// The bundle the archive exports holds the result in clear.
	waitBundle(t, arch, "e1", "receipted", receiptedBy(arch.ID().String()))
	dir := filepath.Join(t.TempDir(), "e1")
	if _, err := client(arch).ExportBundle(ctx, org, "e1", dir); err != nil {
		t.Fatal(err)
	}
	if _, err := bundle.Verify(dir); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "result.json"))
	if err != nil {
		t.Fatal(err)
	}
	inBundle, err := schema.Decode(b)
	if err != nil || bundle.IsSealedResult(inBundle) || !bytes.Contains(b, []byte(marker)) {
		t.Fatalf("the bundle's result.json: %.300s %v; want the variables in clear", b, err)
	}

	// vm2's files: the clear marker, never the sealed one; vm2 is the node
	// of the centre that holds a copy it cannot read.
	waitBundle(t, vm2, "e1", "held by vm2", func(b node.BundleStatus) bool { return b.Local.Held })
	vm2Dir := c.Members()[2].Dir
	scan := func(when string) {
		t.Helper()
		if found := filesHolding(t, vm2Dir, []byte(marker)); len(found) > 0 {
			t.Errorf("vm2 (%s): the sealed result's marker is in plaintext in %v", when, found)
		}
		if found := filesHolding(t, vm2Dir, []byte(clearMarker)); len(found) == 0 {
			t.Errorf("vm2 (%s): the clear log's marker is in no file: the scan cannot tell sealed from clear", when)
		}
	}
	scan("running")
	if err := c.Stop(2); err != nil {
		t.Fatal(err)
	}
	scan("stopped")
}

// TestOpenMeshSealsToNoClaimedRole: in an open mesh (no authority) the
// roles peers announce are vouched for by nobody; a LAN peer that merely
// claims to be central or an archive must not become a recipient. A VM
// connected to an archive and a central that announce their roles knows
// no recipient, stores its result in clear (counted, as for a VM that met
// none) and makes no bundle.
func TestOpenMeshSealsToNoClaimedRole(t *testing.T) {
	opts := testTuning()
	opts.Bundles = node.BundleConfig{Interval: node.Duration(100 * time.Millisecond), FetchTimeout: node.Duration(5 * time.Second)}
	c := cluster.NewCluster(t.TempDir(), opts)
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close cluster: %v", err)
		}
	})
	ctx := context.Background()
	for _, s := range []cluster.Spec{
		{Name: "archive", Role: schema.RoleArchive, Orgs: []string{org}},
		{Name: "vm1", Role: schema.RoleVM, Orgs: []string{org}},
		{Name: "central", Role: schema.RoleCentral, Orgs: []string{org}},
	} {
		if _, err := c.Add(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	waitConnected(t, c)
	arch, vm1, central := c.Node(0), c.Node(1), c.Node(2)
	// vm1's peer book holds both claimed roles, and its bundle worker has
	// had rounds since: it has seen them.
	err := cluster.WaitFor(ctx, 20*time.Second, func() (bool, error) {
		roles := map[string]bool{}
		for _, p := range vm1.Mesh().Peers() {
			if p.Connected && (p.ID == arch.ID().String() || p.ID == central.ID().String()) {
				for _, r := range p.Roles {
					roles[r] = true
				}
			}
		}
		return roles[string(schema.RoleArchive)] && roles[string(schema.RoleCentral)], nil
	})
	if err != nil {
		t.Fatalf("vm1 never learnt the claimed roles: %v", err)
	}
	rounds := vm1.BundleRounds()
	if err := cluster.WaitFor(ctx, 20*time.Second, func() (bool, error) { return vm1.BundleRounds() >= rounds+2, nil }); err != nil {
		t.Fatal(err)
	}
	if rs, err := vm1.BundleRecipients(ctx, org); err != nil || len(rs) != 0 {
		t.Fatalf("vm1's recipients on an open mesh: %v %v; want none", rs, err)
	}

	finishExecutionWith(t, central, vm1, "e1", scoreVariables)
	waitRecord(t, arch, org, "results", "e1", func(r node.RecordView) error {
		if r.StoredSealed || !strings.Contains(string(r.Body), "SCORE") {
			return fmt.Errorf("the archive serves %s (stored sealed: %v); want it stored in clear", r.Body, r.StoredSealed)
		}
		return nil
	})
	got, err := cluster.Contents(ctx, arch, org)
	if err != nil {
		t.Fatal(err)
	}
	if v := got["/results/e1"]; !strings.Contains(v, "SCORE") {
		t.Fatalf("the archive stores the result as %.300q; want it in clear (sealed to no claimed role)", v)
	}
	if st, err := vm1.Status(ctx); err != nil || len(st.Replicas) != 1 || st.Replicas[0].ResultsUnsealed != 1 {
		t.Fatalf("vm1's status: %+v %v; want the result counted as in clear", st.Replicas, err)
	}
	rounds = vm1.BundleRounds()
	if err := cluster.WaitFor(ctx, 20*time.Second, func() (bool, error) { return vm1.BundleRounds() >= rounds+2, nil }); err != nil {
		t.Fatal(err)
	}
	if b, err := vm1.Bundles(ctx, org); err != nil || len(b) != 0 {
		t.Fatalf("vm1's bundles on an open mesh: %+v %v; want none", b, err)
	}
}
