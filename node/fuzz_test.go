package node

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/examnode/examnode/crdt"
	"github.com/examnode/examnode/internal/fuzzseed"
	"github.com/examnode/examnode/schema"
)

// Fuzz targets of what the node decodes from its data directory: the
// config file, the change feed's persisted state (an organisation's last
// sequence and its entries), the store key and the private-network key.
// The seeds added here are also checked in under testdata/fuzz/<FuzzName>/
// (regenerate them with EXAMNODE_WRITE_FUZZ_CORPUS=1 go test
// -run='^Fuzz' ./node), beside malformed inputs and regressions.

// FuzzDecodeConfig decodes config files. What it accepts is valid, and
// survives being written back and read again unchanged.
func FuzzDecodeConfig(f *testing.F) {
	vm := DefaultConfig(schema.RoleVM, "C1")
	vm.Peers = []string{"/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp"}
	vm.Encrypt, vm.PnetKey = true, "/etc/examnode/swarm.key"
	vm.Tuning = Tuning{ExchangeInterval: Duration(time.Second), GroupWindow: Duration(2 * time.Millisecond)}
	central := DefaultConfig(schema.RoleCentral)
	central.Roles = append(central.Roles, schema.RoleArchive)
	for _, c := range []Config{vm, central} {
		b, err := json.MarshalIndent(c, "", "  ")
		if err != nil {
			f.Fatal(err)
		}
		fuzzseed.Add(f, b)
		fuzzseed.Add(f, b[:len(b)/2])
	}
	for _, s := range []string{
		``, `{}`, `null`, `[]`, `{"roles":["vm"],"orgs":["C1","C2"]}`, `{"roles":["king"]}`,
		`{"roles":["vm"],"orgs":["../x"]}`, `{"roles":["central"],"peers":["/ip4/1.2.3.4/tcp/1"]}`,
		`{"roles":["central"],"tuning":{"exchange_interval":"-1s"}}`, `{"roles":["central"],"tuning":{"group_window":5}}`,
		`{"roles":["central"],"membership":"examnode-membership:AAAA"}`, `{"roles":["central"],"authority":"examnode-authority:x"}`,
		`{"roles":["central"],"encrypt":"yes"}`, `{"roles":["central"],"listen":["not a multiaddr"]}`,
	} {
		fuzzseed.Add(f, []byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := DecodeConfig(data, "config.json")
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("an accepted config does not validate again: %v", err)
		}
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		c2, err := DecodeConfig(b, "config.json")
		if err != nil {
			t.Fatalf("the config does not read back: %v\n%s", err, b)
		}
		if !reflect.DeepEqual(normConfig(c), normConfig(c2)) {
			t.Fatalf("the config changed in a round trip:\n%+v\n%+v", c, c2)
		}
	})
}

// normConfig makes empty and nil lists alike (omitempty drops both).
func normConfig(c Config) Config {
	if len(c.Peers) == 0 {
		c.Peers = nil
	}
	if len(c.Orgs) == 0 {
		c.Orgs = nil
	}
	return c
}

// FuzzFeedState stores an organisation's feed state as a damaged disk
// might hold it (any last-sequence value, any entry bytes) and has the
// feed register the organisation and read it: errors, never a crash or a
// hang.
func FuzzFeedState(f *testing.F) {
	store, err := crdt.OpenStore("", crdt.StoreOptions{InMemory: true})
	if err != nil {
		f.Fatal(err)
	}
	fd, err := openFeed(context.Background(), store, time.Now, slog.New(slog.DiscardHandler))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		_ = fd.close()
		_ = store.Close()
	})
	entry, _ := json.Marshal(Change{Seq: 1, Key: "/results/e1", Kind: "results", ID: "e1", Op: OpPut, At: time.Unix(1e9, 0).UTC()})
	for _, s := range [][2]string{
		{"1", string(entry)}, {"2", string(entry)}, {"0", ""}, {"", ""}, {"-1", string(entry)},
		{"18446744073709551615", string(entry)}, {"18446744073709551616", ""}, {"1", "{"}, {"1", "null"},
		{"1", `{"seq":"x"}`}, {"1", `{"at":"yesterday"}`}, {" 1", string(entry)}, {"1\n", string(entry)},
	} {
		fuzzseed.Add(f, []byte(s[0]), []byte(s[1]))
	}
	var n atomic.Uint64
	f.Fuzz(func(t *testing.T, last, entry []byte) {
		org := fmt.Sprintf("fuzz-%d", n.Add(1))
		ctx := context.Background()
		d := store.Datastore()
		if err := d.Put(ctx, feedSeqPrefix.ChildString(org), last); err != nil {
			t.Fatal(err)
		}
		if err := d.Put(ctx, feedKey(org, 1), entry); err != nil {
			t.Fatal(err)
		}
		if err := fd.register(org); err != nil {
			return
		}
		for _, since := range []uint64{0, 1} {
			changes, next, _, err := fd.read(ctx, org, since, 10)
			if err != nil {
				continue
			}
			if next < since && !(len(changes) == 1 && changes[0].Op == OpResync) {
				t.Fatalf("cursor went back from %d to %d", since, next)
			}
		}
	})
}

// FuzzParseStoreKey parses store keys (EXAMNODE_STORE_KEY, store.key):
// what it accepts is exactly 32 bytes.
func FuzzParseStoreKey(f *testing.F) {
	for _, s := range []string{
		strings.Repeat("ab", 32), strings.Repeat("ab", 32) + "\n", strings.Repeat("AB", 32),
		"q83vq83vq83vq83vq83vq83vq83vq83vq83vq83vq80=", "q83vq83vq83vq83vq83vq83vq83vq83vq83vq83vq80",
		"q83vq83vq83vq83vq83vq83vq83vq83vq83vq83vq8-_", strings.Repeat("ab", 31), strings.Repeat("zz", 32), "", " ",
	} {
		fuzzseed.Add(f, s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseStoreKey(s)
		if err == nil && len(k) != StoreKeySize {
			t.Fatalf("ParseStoreKey(%q) accepted %d bytes", s, len(k))
		}
	})
}

// FuzzDecodePnetKey decodes private-network key files: what it accepts is
// exactly 32 bytes.
func FuzzDecodePnetKey(f *testing.F) {
	hexKey := strings.Repeat("0f", 32)
	for _, s := range []string{
		"/key/swarm/psk/1.0.0/\n/base16/\n" + hexKey + "\n",
		"/key/swarm/psk/1.0.0/\r\n/base16/\r\n" + hexKey,
		"/key/swarm/psk/1.0.0/\n/base64/\nDw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8=\n",
		"/key/swarm/psk/1.0.0/\n/bin/\n" + strings.Repeat("k", 32),
		"/key/swarm/psk/1.0.0/\n/base16/\n" + hexKey[:60] + "\n",
		"/key/swarm/psk/1.0.0/\n/base32/\n" + hexKey + "\n",
		"/key/swarm/psk/2.0.0/\n/base16/\n" + hexKey + "\n",
		hexKey, "", "/key/swarm/psk/1.0.0/",
	} {
		fuzzseed.Add(f, []byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := DecodePnetKey(b)
		if err == nil && len(k) != 32 {
			t.Fatalf("DecodePnetKey accepted %d bytes", len(k))
		}
	})
}
