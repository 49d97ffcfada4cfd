package integration

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/examnode/examnode/internal/cluster"
	"github.com/examnode/examnode/node"
	"github.com/examnode/examnode/schema"
)

// writeDelivery has central write delivery d1 and an eligibility of
// test-taker tt1 for it, and waits until vm holds the eligibility.
func writeDelivery(t *testing.T, central, vm *node.Node) {
	t.Helper()
	ctx := context.Background()
	delivery := `{"label":"Maths 2026","opens":"2026-06-01T08:00:00Z","closes":"2026-06-01T18:00:00Z",` +
		`"package":{"cid":"bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi","sha256":"` +
		strings.Repeat("ab", 32) + `","size":1024,"media_type":"application/zip"},"max_attempts":1}`
	if _, err := client(central).PutRecord(ctx, org, "deliveries", "d1", []byte(delivery)); err != nil {
		t.Fatal(err)
	}
	if _, err := client(central).PutRecord(ctx, org, "eligibilities", "el1",
		[]byte(`{"test_center":"c1","delivery":"d1","test_takers":["tt1"],"by_proctor":false}`)); err != nil {
		t.Fatal(err)
	}
	waitForChange(t, vm, "/eligibilities/el1")
}

// writeMarkedResult has vm write, through its API, an execution, a result
// log and the result, the log and the result each carrying marker
// (several times, in a body over the store's value threshold, as a real
// result's variables are), and waits until central serves the result with
// the marker. The result's variables travel and rest sealed to central
// (and vm); the log is replicated in clear, so the marker is on disk
// wherever the store is not encrypted.
func writeMarkedResult(t *testing.T, central, vm *node.Node, id, marker string) {
	t.Helper()
	ctx := context.Background()
	exec := fmt.Sprintf(`{"delivery":"d1","test_taker":"tt1","state":"finished","started":"2026-06-01T08:00:00Z",`+
		`"finished":"2026-06-01T09:30:00Z","vm":"%s","version":1}`, vm.ID())
	if _, err := client(vm).PutRecord(ctx, org, "executions", id, []byte(exec)); err != nil {
		t.Fatal(err)
	}
	answer := strings.Repeat(marker+" ", 40)
	logBody := fmt.Sprintf(`{"execution":"%s","seq":1,"at":"2026-06-01T09:00:00Z","event":"answer","data":{"text":%q}}`, id, answer)
	if _, err := client(vm).PutRecord(ctx, org, "result-logs", schema.LogID(id, 1), []byte(logBody)); err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`{"execution":"%s","finished":"2026-06-01T09:30:00Z","variables":{"RESPONSE":{"base_type":"string","cardinality":"single","value":%q}}}`, id, answer)
	if res, err := client(vm).PutRecord(ctx, org, "results", id, []byte(body)); err != nil || !res.Durable {
		t.Fatalf("result: %+v %v", res, err)
	}
	err := cluster.WaitFor(ctx, 30*time.Second, func() (bool, error) {
		rec, err := client(central).GetRecord(ctx, org, "results", id)
		if err != nil {
			return false, err
		}
		return bytes.Contains(rec.Body, []byte(marker)), nil
	})
	if err != nil {
		t.Fatalf("the result never reached central: %v", err)
	}
}

// filesHolding walks dir and returns the files whose bytes contain any of
// needles.
func filesHolding(t *testing.T, dir string, needles ...[]byte) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, n := range needles {
			if bytes.Contains(b, n) {
				out = append(out, p)
				break
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestEncryptionAtRest writes results and result logs carrying a
// recognisable marker through a VM's API, lets them replicate to central,
// stops both nodes and reads every file of their data directories: with
// encryption on no file holds the marker (nor the store key's bytes
// outside store.key); with it off the same writes leave the marker on disk
// (in the logs: result variables are sealed), which shows the scan finds
// plaintext where there is some.
func TestEncryptionAtRest(t *testing.T) {
	for _, encrypt := range []bool{false, true} {
		t.Run(fmt.Sprintf("encrypt=%v", encrypt), func(t *testing.T) {
			opts := testTuning()
			opts.Encrypt = encrypt
			c := makeN(t, 2, opts)
			marker := fmt.Sprintf("PLAINTEXT-MARKER-%d-%v", time.Now().UnixNano(), encrypt)
			writeDelivery(t, c.Node(0), c.Node(1))
			for i := range 3 {
				writeMarkedResult(t, c.Node(0), c.Node(1), fmt.Sprintf("e%d", i), marker)
			}
			// Keys of each store, read before the nodes stop.
			var keys [][]byte
			for _, m := range c.Members() {
				if b, err := os.ReadFile(filepath.Join(m.Dir, node.StoreKeyFile)); err == nil {
					k, err := node.ParseStoreKey(string(b))
					if err != nil {
						t.Fatal(err)
					}
					keys = append(keys, k, []byte(hex.EncodeToString(k)))
				} else if encrypt {
					t.Fatalf("%s: no store key: %v", m.Spec.Name, err)
				}
			}
			// While the nodes run (badger's write-ahead logs hold the
			// newest writes uncompressed), then after they stop.
			if encrypt {
				for _, m := range c.Members() {
					if found := filesHolding(t, m.Dir, []byte(marker)); len(found) > 0 {
						t.Errorf("%s (encrypted, running): the marker is in plaintext in %v", m.Spec.Name, found)
					}
				}
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			for _, m := range c.Members() {
				found := filesHolding(t, m.Dir, []byte(marker))
				switch {
				case encrypt && len(found) > 0:
					t.Errorf("%s (encrypted): the marker is in plaintext in %v", m.Spec.Name, found)
				case !encrypt && len(found) == 0:
					t.Errorf("%s (not encrypted): the marker is in no file: the scan cannot tell encrypted from plain", m.Spec.Name)
				default:
					t.Logf("%s: marker in %d files", m.Spec.Name, len(found))
				}
				if len(keys) > 0 {
					for _, f := range filesHolding(t, m.Dir, keys...) {
						if filepath.Base(f) != node.StoreKeyFile {
							t.Errorf("%s: a store key is in %s", m.Spec.Name, f)
						}
					}
				}
			}
			if !encrypt {
				return
			}
			// With its key, the VM reads its results back after a restart.
			ctx := context.Background()
			if err := c.Restart(ctx, 1); err != nil {
				t.Fatal(err)
			}
			rec, err := client(c.Node(1)).GetRecord(ctx, org, "results", "e2")
			if err != nil || rec.Kind != schema.KindResults || !bytes.Contains(rec.Body, []byte(marker)) {
				t.Fatalf("after restart: %+v %v", rec, err)
			}
		})
	}
}

// TestEncryptedStoreRefusesAWrongOrMissingKey opens an encrypted node's
// store with another key, with none, and as unencrypted, and expects an
// error naming the fix each time, then opens it again with its key.
func TestEncryptedStoreRefusesAWrongOrMissingKey(t *testing.T) {
	opts := testTuning()
	opts.Encrypt = true
	c := makeN(t, 1, opts)
	m := c.Members()[0]
	cfg := c.Node(0).Config()
	if err := c.Stop(0); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(m.Dir, node.StoreKeyFile)
	good, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(keyFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("store key file mode: %v %v; want 0600", st.Mode(), err)
	}
	open := func(cfg node.Config) error {
		n, err := node.New(m.Dir, cfg, node.Deps{})
		if err == nil {
			return n.Close()
		}
		return err
	}
	expect := func(what string, err error, want ...string) {
		t.Helper()
		if !errors.Is(err, node.ErrStoreKey) {
			t.Fatalf("%s: %v; want node.ErrStoreKey", what, err)
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Fatalf("%s: %q does not say %q", what, err, w)
			}
		}
		if strings.Contains(err.Error(), "goroutine") || strings.Contains(err.Error(), ".go:") {
			t.Fatalf("%s: a stack trace: %v", what, err)
		}
		t.Logf("%s: %v", what, err)
	}

	// Another key in the environment.
	t.Setenv(node.StoreKeyEnv, strings.Repeat("ab", 32))
	expect("wrong key", open(cfg), node.StoreKeyEnv, "does not open", "the key it was created with")
	// The right key in the environment opens it (the file is not read).
	t.Setenv(node.StoreKeyEnv, string(good))
	if err := open(cfg); err != nil {
		t.Fatalf("right key from the environment: %v", err)
	}
	// A malformed key.
	t.Setenv(node.StoreKeyEnv, "not-a-key")
	expect("malformed key", open(cfg), "64 hexadecimal digits", node.StoreKeyEnv)
	// The environment set on an unencrypted config.
	plain := cfg
	plain.Encrypt = false
	expect("key without encrypt", open(plain), "not encrypted", "unset "+node.StoreKeyEnv)
	os.Unsetenv(node.StoreKeyEnv)
	// No key at all.
	if err := os.Rename(keyFile, keyFile+".away"); err != nil {
		t.Fatal(err)
	}
	expect("missing key", open(cfg), "key is missing", node.StoreKeyEnv, keyFile)
	// The encrypted store opened as an unencrypted one.
	expect("encrypted store, plain config", open(plain), "is encrypted", `"encrypt": true`)
	// Back in place, the node starts again.
	if err := os.Rename(keyFile+".away", keyFile); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(context.Background(), 0); err != nil {
		t.Fatalf("restart with the key back: %v", err)
	}
}
