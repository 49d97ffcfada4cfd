package node

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/examnode/examnode/bundle"
	"github.com/examnode/examnode/schema"
)

// putResultPrerequisites writes, through n's API, the eligibility and the
// finished execution the fixture result needs.
func putResultPrerequisites(t *testing.T, n *Node) {
	t.Helper()
	for _, k := range []schema.Kind{schema.KindEligibilities, schema.KindExecutions} {
		putFixture(t, n, k)
	}
}

// storedResult reads /results/e1 of C1 as stored (not as served).
func storedResult(t *testing.T, n *Node) ([]byte, schema.Record) {
	t.Helper()
	rep, err := n.Replica("C1")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := rep.Get(context.Background(), "/results/e1")
	if err != nil {
		t.Fatal(err)
	}
	rec, err := schema.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	return raw, rec
}

func getView(t *testing.T, n *Node) RecordView {
	t.Helper()
	a := call(t, n, "GET", recPath(schema.KindResults, "e1"), nil)
	var v RecordView
	if a.status != 200 || json.Unmarshal(a.body, &v) != nil {
		t.Fatalf("get: %d %s", a.status, a.body)
	}
	return v
}

func listViews(t *testing.T, n *Node) []RecordView {
	t.Helper()
	a := call(t, n, "GET", recPath(schema.KindResults, "")+"?execution=e1", nil)
	var l RecordList
	if a.status != 200 || json.Unmarshal(a.body, &l) != nil {
		t.Fatalf("list: %d %s", a.status, a.body)
	}
	return l.Records
}

func unsealedCount(t *testing.T, n *Node) int {
	t.Helper()
	st, err := n.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range st.Replicas {
		if r.Org == "C1" {
			return r.ResultsUnsealed
		}
	}
	t.Fatalf("no replica summary of C1: %+v", st.Replicas)
	return 0
}

// TestOpenNodeSealsToNoClaimedRole: an open node (no authority) that
// remembers a peer as an archive of C1 (a role the peer announced, which no
// authority vouches for: any LAN peer may claim it) does not seal to it:
// it has no recipient, stores the result in clear and counts it. Sealing
// to vouched-for recipients is in integration's
// TestResultsSealedToCentralAndArchive (a gated cluster).
func TestOpenNodeSealsToNoClaimedRole(t *testing.T) {
	n := startRoles(t, schema.RoleCentral, schema.RoleVM)
	ctx := context.Background()
	archKey, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	arch, _ := peer.IDFromPrivateKey(archKey)
	kr, _ := json.Marshal(knownRecipient{Peer: arch.String(), Role: string(schema.RoleArchive), Orgs: []string{"C1"}})
	if err := n.store.Datastore().Put(ctx, recipientPrefix.ChildString(arch.String()), kr); err != nil {
		t.Fatal(err)
	}
	if rs, err := n.BundleRecipients(ctx, "C1"); err != nil || len(rs) != 0 {
		t.Fatalf("recipients %v, %v; want none on an open node", rs, err)
	}
	putResultPrerequisites(t, n)
	if a := call(t, n, "PUT", recPath(schema.KindResults, "e1"), []byte(fixtures[schema.KindResults][1])); a.status != 200 {
		t.Fatalf("put: %d %s", a.status, a.body)
	}
	raw, stored := storedResult(t, n)
	if !bytes.Contains(raw, []byte("SCORE")) || bundle.IsSealedResult(stored) {
		t.Fatalf("stored %s; want it in clear, sealed to no claimed archive", raw)
	}
	if c := unsealedCount(t, n); c != 1 {
		t.Fatalf("results_unsealed = %d; want 1", c)
	}
}

// TestResultInClearWhenNoRecipient: a node that knows no central or
// archive peer of the organisation stores the result in clear and counts
// it in its status and metrics; the identical write again is a no-op and
// counts nothing more.
func TestResultInClearWhenNoRecipient(t *testing.T) {
	n := startRoles(t, schema.RoleCentral, schema.RoleVM)
	putResultPrerequisites(t, n)
	body := []byte(fixtures[schema.KindResults][1])
	for range 2 {
		if a := call(t, n, "PUT", recPath(schema.KindResults, "e1"), body); a.status != 200 {
			t.Fatalf("put: %d %s", a.status, a.body)
		}
	}
	raw, stored := storedResult(t, n)
	if !bytes.Contains(raw, []byte("SCORE")) || bundle.IsSealedResult(stored) {
		t.Fatalf("stored %s; want it in clear", raw)
	}
	if v := getView(t, n); v.StoredSealed || !bytes.Contains(v.Body, []byte("SCORE")) {
		t.Fatalf("served %+v", v)
	}
	if c := unsealedCount(t, n); c != 1 {
		t.Fatalf("results_unsealed = %d; want 1", c)
	}
	m, err := (&Client{Addr: n.APIAddr(), Token: n.Token()}).Metrics(context.Background())
	if want := `examnode_results_unsealed{org="C1"} 1`; err != nil || !strings.Contains(string(m), want) {
		t.Fatalf("metrics lack %s: %v", want, err)
	}
}

// TestSealedResultServedSealedToOthers: a result sealed to other peers
// (as another VM of the centre receives one) is served sealed, without
// variables, by GET and list alike, and never fails the request; a write
// of any result at its key is refused, since it cannot be compared; and
// the API refuses a result written in sealed form.
func TestSealedResultServedSealedToOthers(t *testing.T) {
	n := startRoles(t, schema.RoleCentral, schema.RoleVM)
	ctx := context.Background()
	putResultPrerequisites(t, n)
	otherKey, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := peer.IDFromPrivateKey(otherKey)
	body := fixtures[schema.KindResults][1]
	clear, err := schema.Decode([]byte(`{"schema":1,"kind":"results","id":"e1","org":"C1","body":` + body + `}`))
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := bundle.SealResult(clear, []string{other.String()})
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := schema.Encode(sealed)
	rep, _ := n.Replica("C1")
	if err := rep.Put(ctx, "/results/e1", enc); err != nil {
		t.Fatal(err)
	}
	for _, v := range append(listViews(t, n), getView(t, n)) {
		b, err := v.DecodeBody()
		if err != nil {
			t.Fatal(err)
		}
		if r := b.(schema.Result); !v.StoredSealed || !r.IsSealed() || r.Variables != nil || bytes.Contains(v.Body, []byte("SCORE")) {
			t.Fatalf("served %s (stored_sealed %v); want it sealed, without variables", v.Body, v.StoredSealed)
		}
	}
	if a := call(t, n, "PUT", recPath(schema.KindResults, "e1"), []byte(body)); a.status != 409 || a.err.Code != "append_only" {
		t.Fatalf("put over a result this node cannot open: %d %s; want 409 append_only", a.status, a.body)
	}
	// A platform writes variables, never the sealed form.
	if a := call(t, n, "PUT", recPath(schema.KindResults, "e1"), sealed.Body); a.status != 400 || a.err.Field != "body.sealed" {
		t.Fatalf("put of a sealed body: %d %s; want 400 on body.sealed", a.status, a.body)
	}
}
