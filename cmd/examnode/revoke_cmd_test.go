package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/examnode/examnode/mesh"
	"github.com/examnode/examnode/node"
	"github.com/examnode/examnode/policy"
)

func TestRevokeAndRefusedAgainstAGatedCentral(t *testing.T) {
	tmp := t.TempDir()
	keyFile := filepath.Join(tmp, "authority.pem")
	pub := strings.TrimSpace(mustCLI(t, "authority", "init", "--out", keyFile))
	dir := filepath.Join(tmp, "central")
	key, err := mesh.LoadOrCreateKey(filepath.Join(dir, node.IdentityFile))
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(key)
	m := strings.TrimSpace(mustCLI(t, "grant", "--authority", keyFile, "--peer", id.String(), "--org", "C1",
		"--role", "central", "--network", "exams"))
	mustCLI(t, "init", "--dir", dir, "--role", "central", "--org", "C1", "--network", "exams",
		"--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0", "--lan-discovery=false", "--authority", pub, "--membership", m)
	startDaemon(t, dir)

	if out := mustCLI(t, "refused", "C1", "--dir", dir); !strings.Contains(out, "C1: refused -; parked 0") {
		t.Fatalf("refused of a clean organisation:\n%s", out)
	}
	victim, _ := peer.Decode("12D3KooWBniUTUPjRAuyAMcZFYj8XXG9pAVJBVCfMtMLc6mMrQfR")
	out := mustCLI(t, "revoke", "--dir", dir, "--authority", keyFile, "--peer", victim.String(), "--reason", "stolen", "--from", "1h")
	if !strings.Contains(out, "revoked every membership of peer "+victim.String()) || !strings.Contains(out, "1 organisation(s): C1") {
		t.Fatalf("revoke:\n%s", out)
	}
	printed := strings.TrimSpace(mustCLI(t, "revoke", "--dir", dir, "--authority", keyFile, "--peer", victim.String(), "--print"))
	r, err := policy.ParseRevocation(printed)
	if err != nil || r.Network != "exams" || r.Peer != victim.String() || time.Since(r.RevokedAt) > time.Minute {
		t.Fatalf("revoke --print: %q: %+v %v", printed, r, err)
	}
	for _, args := range [][]string{
		{"--peer", "not-a-peer"},
		{"--peer", victim.String(), "--serial", "xyz"},
		{"--peer", victim.String(), "--from", "yesterday"},
	} {
		args = append([]string{"revoke", "--dir", dir, "--authority", keyFile}, args...)
		if code, _, errs := cli(t, "", args...); code == 0 || errs == "" {
			t.Errorf("examnode %s: exit %d, stderr %q", strings.Join(args, " "), code, errs)
		}
	}
}
