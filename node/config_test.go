package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/examnode/examnode/schema"
)

// A token file with a trailing newline (an editor's, or `echo`'s) is the
// same token for the daemon and for every client; a weak one is refused by
// both, with the fix.
func TestAPITokenTrimmedOnceAndWeakOneRefused(t *testing.T) {
	dir := t.TempDir()
	tok := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	if err := os.WriteFile(filepath.Join(dir, TokenFile), []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := localConfig(schema.RoleVM)
	n := startConfig(t, dir, cfg)
	if n.Token() != tok {
		t.Fatalf("daemon token %q, want the file's content without its newline", n.Token())
	}
	cl, err := ClientFromDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Status(context.Background()); err != nil {
		t.Fatalf("a client reading the same token file: %v", err)
	}

	for _, weak := range []string{"x", "x\n", strings.Repeat("ab", 20), "short-but-varied-0123456789"} {
		d := t.TempDir()
		if err := os.WriteFile(filepath.Join(d, TokenFile), []byte(weak), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := New(d, cfg, Deps{})
		if !errors.Is(err, ErrWeakToken) || !strings.Contains(err.Error(), "delete the file") {
			t.Errorf("daemon with token %q: %v, want ErrWeakToken naming the fix", weak, err)
		}
		if err := os.WriteFile(filepath.Join(d, APIAddrFile), []byte("127.0.0.1:1"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := ClientFromDir(d); !errors.Is(err, ErrWeakToken) {
			t.Errorf("client with token %q: %v, want ErrWeakToken", weak, err)
		}
	}
}

func TestConfigRefusesDuplicateKeys(t *testing.T) {
	for _, tc := range []struct{ json, key string }{
		{`{"roles":["vm"],"orgs":["C1"],"api":"127.0.0.1:7411","lan_discovery":false,"api":"0.0.0.0:7411"}`, `"api" appears twice in the top-level object`},
		{`{"roles":["vm"],"orgs":["C1"],"api":"127.0.0.1:7411","API":"0.0.0.0:7411"}`, `"API" appears twice`},
		{`{"roles":["vm"],"orgs":["C1"],"tuning":{"redial_max":"1s","redial_max":"1h"}}`, `"redial_max" appears twice in object tuning`},
		{`{"roles":["archive"],"orgs":["C1"],"bundles":{"retention":{"C1":{},"C1":{}}}}`, `"C1" appears twice in object bundles.retention`},
	} {
		_, err := DecodeConfig([]byte(tc.json), "config.json")
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%s: %v, want a refusal containing %q", tc.json, err, tc.key)
		}
	}
	// Distinct keys, and the same key in sibling objects, are fine.
	if _, err := DecodeConfig([]byte(`{"roles":["vm"],"orgs":["C1"],"tuning":{"redial_max":"1s"},"bundles":{"retention":{"C1":{},"c1":{}}}}`), "config.json"); err != nil && strings.Contains(err.Error(), "twice") {
		t.Fatal(err)
	}
}

func TestConfigRefusesNonLoopbackAPIUnlessAllowed(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:7411", ":7411", "[::]:7411", "192.0.2.7:7411", "example.org:7411"} {
		_, err := DecodeConfig([]byte(`{"roles":["vm"],"orgs":["C1"],"api":"`+addr+`"}`), "config.json")
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), `"api_allow_non_loopback": true`) {
			t.Errorf("api %s: %v, want a refusal naming api_allow_non_loopback", addr, err)
		}
		if _, err := DecodeConfig([]byte(`{"roles":["vm"],"orgs":["C1"],"api":"`+addr+`","api_allow_non_loopback":true}`), "config.json"); err != nil {
			t.Errorf("api %s, allowed explicitly: %v", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:7411", "127.0.0.2:0", "[::1]:7411", "localhost:7411", "off"} {
		if _, err := DecodeConfig([]byte(`{"roles":["vm"],"orgs":["C1"],"api":"`+addr+`"}`), "config.json"); err != nil {
			t.Errorf("api %s: %v", addr, err)
		}
	}
	if _, err := DecodeConfig([]byte(`{"roles":["vm"],"orgs":["C1"],"api":"7411"}`), "config.json"); !errors.Is(err, ErrConfig) {
		t.Errorf("api without a host: %v", err)
	}
}
