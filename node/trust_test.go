package node

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/examnode/examnode/mesh"
	"github.com/examnode/examnode/policy"
	"github.com/examnode/examnode/schema"
)

// gatedCentral starts a central node of C1 under a fresh authority, in
// dir (reused across restarts).
func gatedCentral(t *testing.T, a *policy.Authority, dir string) *Node {
	t.Helper()
	key, err := mesh.LoadOrCreateKey(filepath.Join(dir, IdentityFile))
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(key)
	now := time.Now()
	m, err := a.Grant(policy.GrantRequest{Network: "examnode", Peer: id.String(), Role: schema.RoleCentral, AllOrgs: true,
		NotBefore: now.Add(-time.Hour), Expires: now.Add(time.Hour)}, now)
	if err != nil {
		t.Fatal(err)
	}
	cfg := localConfig(schema.RoleCentral)
	cfg.Authority, cfg.Membership = a.Public().String(), m.String()
	cfg.Debug = true // the raw routes exist, to show a gated node refuses raw writes
	return openStarted(t, dir, cfg)
}

func storedSigned(t *testing.T, n *Node, key string) policy.SignedRecord {
	t.Helper()
	rep, err := n.Replica("C1")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := rep.GetRaw(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	sr, err := policy.DecodeSigned(raw)
	if err != nil {
		t.Fatalf("%s is not stored signed: %v", key, err)
	}
	if err := policy.VerifySigned(sr); err != nil || sr.Writer != n.ID().String() {
		t.Fatalf("%s signed by %s: %v", key, sr.Writer, err)
	}
	return sr
}

func TestGatedNodeSignsWhatItWrites(t *testing.T) {
	a, err := policy.GenerateAuthority()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	n := gatedCentral(t, a, dir)
	putFixture(t, n, schema.KindDeliveries)
	if got := call(t, n, "GET", recPath(schema.KindDeliveries, "d1"), nil); got.status != 200 {
		t.Fatalf("get: %d %s", got.status, got.body)
	}
	first := storedSigned(t, n, "/deliveries/d1")
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}

	// After a restart the sequence continues above the persisted one.
	n = gatedCentral(t, a, dir)
	defer n.Close()
	putFixture(t, n, schema.KindTestTakers)
	if second := storedSigned(t, n, "/test-takers/tt1"); second.Seq <= first.Seq {
		t.Fatalf("sequence went from %d to %d across a restart", first.Seq, second.Seq)
	}
	// A central delete still deletes.
	if got := call(t, n, "DELETE", recPath(schema.KindTestTakers, "tt1"), nil); got.status != 200 {
		t.Fatalf("delete: %d %s", got.status, got.body)
	}
	if got := call(t, n, "GET", recPath(schema.KindTestTakers, "tt1"), nil); got.status != 404 {
		t.Fatalf("get after delete: %d %s", got.status, got.body)
	}
	// Nothing refused; raw writes are off.
	got := call(t, n, "GET", "/v1/orgs/C1/refused", nil)
	var rf Refused
	if err := json.Unmarshal(got.body, &rf); err != nil || got.status != 200 || !rf.Verified || len(rf.Counts) != 0 || len(rf.Elements) != 0 {
		t.Fatalf("refused: %d %s", got.status, got.body)
	}
	if got := call(t, n, "PUT", "/v1/orgs/C1/raw/x/y", []byte("v")); got.status != 403 {
		t.Fatalf("raw put on a gated node: %d %s", got.status, got.body)
	}
	// The feed shows the view's changes, memberships excluded.
	// The view's verifier applies the signed deletion a moment after the
	// API answers: long-poll until the feed has it (or 10 s passed).
	want := []string{"put /deliveries/d1", "put /test-takers/tt1", "delete /test-takers/tt1"}
	var keys []string
	cursor := "0"
	for deadline := time.Now().Add(10 * time.Second); len(keys) < len(want) && time.Now().Before(deadline); {
		ch := pollChanges(t, n, cursor, "1s")
		for _, c := range ch.Changes {
			keys = append(keys, c.Op+" "+c.Key)
		}
		cursor = ch.Next
	}
	if len(keys) != len(want) {
		t.Fatalf("feed: %v, want %v", keys, want)
	}
	for i := range want {
		if keys[i] != want[i] {
			t.Fatalf("feed: %v, want %v", keys, want)
		}
	}
}

// A gated node refuses a raw DELETE as it refuses a raw PUT (403
// unsigned), instead of answering 200 durable and keeping the value in
// its verified view.
func TestGatedNodeRefusesRawDeleteLikeRawPut(t *testing.T) {
	a, err := policy.GenerateAuthority()
	if err != nil {
		t.Fatal(err)
	}
	n := gatedCentral(t, a, t.TempDir())
	defer n.Close()
	putFixture(t, n, schema.KindTestTakers)
	put := call(t, n, "PUT", "/v1/orgs/C1/raw/test-takers/tt1", []byte("v"))
	del := call(t, n, "DELETE", "/v1/orgs/C1/raw/test-takers/tt1", nil)
	for name, got := range map[string]answer{"raw PUT": put, "raw DELETE": del} {
		if got.status != http.StatusForbidden || !strings.Contains(string(got.body), `"code": "unsigned"`) || !strings.Contains(string(got.body), "/v1/orgs/C1/{kind}/{id}") {
			t.Errorf("%s on a gated node: %d %s, want 403 unsigned naming the record routes", name, got.status, got.body)
		}
	}
	if got := call(t, n, "GET", recPath(schema.KindTestTakers, "tt1"), nil); got.status != 200 {
		t.Fatalf("record after the refused raw delete: %d %s", got.status, got.body)
	}
	rep, err := n.Replica("C1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rep.GetRaw(context.Background(), "/test-takers/tt1"); err != nil {
		t.Fatalf("the stored value after the refused raw delete: %v", err)
	}
}

// A gated node refuses, before sending, what its receivers would refuse
// (issue 15): once its membership is revoked, a record it writes would be
// refused everywhere (ErrRevoked), so the API refuses it with the
// receivers' reason and nothing is stored or sent.
func TestGatedNodeRefusesWhatReceiversWould(t *testing.T) {
	a, err := policy.GenerateAuthority()
	if err != nil {
		t.Fatal(err)
	}
	n := gatedCentral(t, a, t.TempDir())
	defer n.Close()
	m, err := policy.ParseMembership(n.Config().Membership)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	rev, err := a.Revoke(policy.RevokeRequest{Network: "examnode", Peer: m.Peer, Serial: m.Serial, From: now.Add(-time.Minute)}, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Revoke(context.Background(), rev); err != nil {
		t.Fatal(err)
	}
	rep, err := n.Replica("C1")
	if err != nil {
		t.Fatal(err)
	}
	before, _ := rep.Count(context.Background(), "/")
	got := call(t, n, "PUT", recPath(schema.KindTestTakers, "tt1"), []byte(fixtures[schema.KindTestTakers][1]))
	if got.status != http.StatusForbidden || got.err.Code != policy.ReasonRevoked || !strings.Contains(got.err.Error, "revoked") {
		t.Fatalf("write under a revoked membership: %d %s; want 403 %s", got.status, got.body, policy.ReasonRevoked)
	}
	if _, err := rep.GetRaw(context.Background(), "/test-takers/tt1"); err == nil {
		t.Fatal("the refused record was stored")
	}
	if after, _ := rep.Count(context.Background(), "/"); after != before {
		t.Fatalf("%d records after the refused write, want %d", after, before)
	}
	refs, err := rep.Refusals(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range refs {
		if r.Key == "/test-takers/tt1" {
			t.Fatalf("the view refused %+v: the write was sent", r)
		}
	}
}
