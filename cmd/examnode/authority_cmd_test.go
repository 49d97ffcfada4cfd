package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/examnode/examnode/node"
	"github.com/examnode/examnode/policy"
	"github.com/examnode/examnode/schema"
)

func TestAuthorityInitAndGrant(t *testing.T) {
	tmp := t.TempDir()
	keyFile := filepath.Join(tmp, "authority.pem")
	pub := strings.TrimSpace(mustCLI(t, "authority", "init", "--out", keyFile))
	key, err := policy.ParseAuthorityKey(pub)
	if err != nil {
		t.Fatalf("authority init printed %q: %v", pub, err)
	}
	info, err := os.Stat(keyFile)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v", err, info.Mode())
	}
	if code, _, errs := cli(t, "", "authority", "init", "--out", keyFile); code == 0 || !strings.Contains(errs, "never overwritten") {
		t.Fatalf("authority init overwrote its key: exit %d %q", code, errs)
	}

	// A VM is initialised gated, without a membership yet: init says what to run.
	dir := filepath.Join(tmp, "vm")
	out := mustCLI(t, "init", "--dir", dir, "--role", "vm", "--org", "C1", "--network", "exams",
		"--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0", "--lan-discovery=false", "--authority", pub)
	if !strings.Contains(out, "examnode grant") {
		t.Fatalf("init without a membership does not say how to get one:\n%s", out)
	}
	cfg, err := node.LoadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.New(dir, cfg, node.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	id := n.ID()
	// Start refuses a gated node without a membership, naming the command.
	if err := n.Start(t.Context()); err == nil || !strings.Contains(err.Error(), "examnode grant --peer "+id.String()) {
		t.Fatalf("start without a membership: %v", err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}

	m := strings.TrimSpace(mustCLI(t, "grant", "--authority", keyFile, "--peer", id.String(), "--org", "C1",
		"--role", "vm", "--expires", "90d", "--network", "exams"))
	mb, err := policy.ParseMembership(m)
	if err != nil {
		t.Fatalf("grant printed %q: %v", m, err)
	}
	trust := policy.Trust{Network: "exams", Authority: key}
	if err := policy.Check(mb, policy.RevocationSet{}, trust, time.Now()); err != nil {
		t.Fatal(err)
	}
	if mb.Role != schema.RoleVM || mb.Peer != id.String() || strings.Join(mb.Orgs, ",") != "C1" ||
		mb.Expires.Sub(time.Now()).Round(time.Hour) != 90*24*time.Hour {
		t.Fatalf("granted %s", mb.Describe())
	}

	// With the membership in its config, the node starts gated.
	cfg.Membership = m
	n, err = node.New(dir, cfg, node.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !n.Mesh().Gated() {
		t.Fatal("the node runs open")
	}
	st, err := n.Status(t.Context())
	if err != nil || !strings.HasPrefix(st.Trust, "gated") {
		t.Fatalf("status trust %q: %v", st.Trust, err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}

	// init refuses a membership of another peer, or of another role.
	other := filepath.Join(tmp, "other")
	if code, _, errs := cli(t, "", "init", "--dir", other, "--role", "vm", "--org", "C1", "--network", "exams",
		"--authority", pub, "--membership", m); code == 0 || !strings.Contains(errs, "is for peer "+id.String()) {
		t.Fatalf("init took another peer's membership: exit %d %q", code, errs)
	}
	if code, _, errs := cli(t, "", "init", "--dir", filepath.Join(tmp, "c"), "--role", "vm", "--org", "C1", "--insecure-open",
		"--membership", m); code == 0 || !strings.Contains(errs, "authority") {
		t.Fatalf("init took a membership without an authority: exit %d %q", code, errs)
	}

	// Grant refuses what policy refuses, and bad input, with a reason.
	for _, args := range [][]string{
		{"--peer", id.String(), "--role", "vm", "--all-orgs"},
		{"--peer", id.String(), "--role", "vm", "--org", "C1", "--org", "C2"},
		{"--peer", "not-a-peer", "--role", "vm", "--org", "C1"},
		{"--peer", id.String(), "--role", "proctor", "--org", "C1"},
		{"--peer", id.String(), "--role", "vm", "--org", "C1", "--expires", "soon"},
	} {
		args = append([]string{"grant", "--authority", keyFile}, args...)
		if code, _, errs := cli(t, "", args...); code == 0 || errs == "" {
			t.Errorf("examnode %s: exit %d, stderr %q", strings.Join(args, " "), code, errs)
		}
	}
	if out := mustCLI(t, "grant", "--authority", keyFile, "--peer", id.String(), "--role", "central", "--all-orgs", "--json"); !strings.Contains(out, `"all_orgs": true`) {
		t.Fatalf("grant --json:\n%s", out)
	}
}

func TestOpenNodeSaysSo(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vm")
	out := mustCLI(t, "init", "--dir", dir, "--role", "vm", "--org", "C1", "--insecure-open",
		"--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0", "--lan-discovery=false")
	if !strings.Contains(out, "trust:   OPEN") {
		t.Fatalf("init of an open node:\n%s", out)
	}
	startDaemon(t, dir)
	if out := mustCLI(t, "status", "--dir", dir); !strings.Contains(out, "trust:     "+node.TrustOpen) {
		t.Fatalf("status of an open node:\n%s", out)
	}
}

func TestParseExpiry(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"90d": 90 * 24 * time.Hour, "12h": 12 * time.Hour, "1d12h": 36 * time.Hour, "30m": 30 * time.Minute,
	} {
		if got, err := parseExpiry(in); err != nil || got != want {
			t.Errorf("parseExpiry(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0d", "-1d", "d", "1x", "1d-2h", "-5h", "90 d"} {
		if got, err := parseExpiry(in); err == nil {
			t.Errorf("parseExpiry(%q) = %v, want an error", in, got)
		}
	}
}
