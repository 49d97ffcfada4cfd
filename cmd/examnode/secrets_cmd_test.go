package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/examnode/examnode/node"
)

func TestInitEncryptAndPnetKey(t *testing.T) {
	tmp := t.TempDir()
	swarm := filepath.Join(tmp, "swarm.key")
	mustCLI(t, "pnet-key", "new", swarm)
	if st, err := os.Stat(swarm); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("pnet key file: %v %v", st, err)
	}
	if code, _, errs := cli(t, "", "pnet-key", "new", swarm); code == 0 || !strings.Contains(errs, "exists") {
		t.Fatalf("pnet-key new over an existing file: exit %d, %q", code, errs)
	}

	dir := filepath.Join(tmp, "vm")
	out := mustCLI(t, "init", "--dir", dir, "--role", "vm", "--org", "C1", "--insecure-open", "--debug", "--encrypt", "--pnet-key", swarm,
		"--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0", "--lan-discovery=false")
	for _, want := range []string{"store:   encrypted", node.StoreKeyFile, "pnet:    private network", swarm} {
		if !strings.Contains(out, want) {
			t.Fatalf("init output lacks %q:\n%s", want, out)
		}
	}
	keyFile := filepath.Join(dir, node.StoreKeyFile)
	if st, err := os.Stat(keyFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("store key file: %v %v", st, err)
	}
	key, _ := os.ReadFile(keyFile)
	b, err := os.ReadFile(filepath.Join(dir, node.ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	var cfg node.Config
	if err := json.Unmarshal(b, &cfg); err != nil || !cfg.Encrypt || cfg.PnetKey != swarm {
		t.Fatalf("config: %+v %v", cfg, err)
	}
	if strings.Contains(string(b), strings.TrimSpace(string(key))) {
		t.Fatal("the store key is in config.json")
	}

	// The daemon runs with both, and stores data.
	func() {
		t.Run("run", func(t *testing.T) {
			startDaemon(t, dir)
			mustCLI(t, "put", "--dir", dir, "C1", "/notes/n1", "encrypted hello")
			out := mustCLI(t, "status", "--dir", dir)
			for _, want := range []string{"at rest:   encrypted", "handshake: private-network key", "record schema version 1"} {
				if !strings.Contains(out, want) {
					t.Fatalf("status lacks %q:\n%s", want, out)
				}
			}
		})
	}()

	// A wrong key in the environment: run fails, naming the fix.
	t.Setenv(node.StoreKeyEnv, strings.Repeat("cd", 32))
	code, _, errs := cli(t, "", "run", "--dir", dir)
	if code == 0 || !strings.Contains(errs, node.StoreKeyEnv) || !strings.Contains(errs, "the key it was created with") {
		t.Fatalf("run with a wrong key: exit %d, %q", code, errs)
	}
	// A missing pnet key file: run fails, naming the file.
	os.Unsetenv(node.StoreKeyEnv)
	if err := os.Rename(swarm, swarm+".away"); err != nil {
		t.Fatal(err)
	}
	code, _, errs = cli(t, "", "run", "--dir", dir)
	if code == 0 || !strings.Contains(errs, swarm) || !strings.Contains(errs, "pnet_key") {
		t.Fatalf("run without the pnet key file: exit %d, %q", code, errs)
	}
}

func TestInitEncryptWithKeyFromEnvironment(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c")
	t.Setenv(node.StoreKeyEnv, strings.Repeat("ef", 32))
	out := mustCLI(t, "init", "--dir", dir, "--role", "central", "--insecure-open", "--encrypt",
		"--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0", "--lan-discovery=false")
	if !strings.Contains(out, "the key is "+node.StoreKeyEnv) {
		t.Fatalf("init output:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, node.StoreKeyFile)); !os.IsNotExist(err) {
		t.Fatalf("a key file was written although the key is in the environment: %v", err)
	}
	// Without --encrypt while the variable is set: refused.
	code, _, errs := cli(t, "", "init", "--dir", filepath.Join(t.TempDir(), "d"), "--role", "central", "--insecure-open")
	if code == 0 || !strings.Contains(errs, "--encrypt") {
		t.Fatalf("init without --encrypt, key set: exit %d, %q", code, errs)
	}
}
