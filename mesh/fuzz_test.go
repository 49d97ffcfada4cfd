package mesh

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"reflect"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"

	"github.com/examnode/examnode/internal/fuzzseed"
	"github.com/examnode/examnode/policy"
	"github.com/examnode/examnode/schema"
)

// Fuzz targets of the bytes a peer sends the mesh: the sync protocol's
// hello (heads exchange) and head announcements. The seeds added here are
// also checked in under testdata/fuzz/<FuzzName>/ (regenerate them with
// EXAMNODE_WRITE_FUZZ_CORPUS=1 go test -run='^Fuzz' ./mesh), next to the
// malformed inputs and the regressions the fuzzer found.

// frame is one sync-protocol message as writeMsg sends it.
func frame(f *testing.F, v any) []byte {
	var b bytes.Buffer
	if err := writeMsg(&b, v); err != nil {
		f.Fatal(err)
	}
	return b.Bytes()
}

func fuzzHead(i int) cid.Cid {
	h, _ := mh.Sum([]byte{byte(i)}, mh.SHA2_256, -1)
	return cid.NewCidV1(cid.DagProtobuf, h)
}

// fuzzMesh starts a mesh for a fuzz target (gated when trust is set),
// joined to org1 and org2, closed when the fuzz target ends.
func fuzzMesh(f *testing.F, trust *policy.Trust, membership []byte, key crypto.PrivKey) *Mesh {
	f.Helper()
	m := startTestMesh(f, Options{Network: trustNet}, Deps{Key: key, Trust: trust, Membership: membership})
	for _, org := range []string{"org1", "org2"} {
		if _, err := m.Join(org); err != nil {
			f.Fatal(err)
		}
	}
	return m
}

// FuzzHello feeds a peer's sync-protocol message (length-prefixed JSON
// hello: versions, network, roles, organisations, membership, heads) to
// the code that handles it: readMsg, checkHello, notePeer, deliverHeads
// (head announcements into the topics' inboxes) and the reply. It runs on
// an open mesh and on a gated one, whose seeds carry a valid membership of
// the fuzzing peer, so mutations reach past the membership check.
func FuzzHello(f *testing.F) {
	auth, err := policy.GenerateAuthority()
	if err != nil {
		f.Fatal(err)
	}
	trust := policy.Trust{Network: trustNet, Authority: auth.Public()}
	grant := func(k crypto.PrivKey, role schema.Role, orgs ...string) []byte {
		id, _ := peer.IDFromPrivateKey(k)
		now := time.Now()
		mb, err := auth.Grant(policy.GrantRequest{Network: trustNet, Peer: id.String(), Role: role, Orgs: orgs, AllOrgs: len(orgs) == 0,
			NotBefore: now.Add(-time.Hour), Expires: now.AddDate(10, 0, 0)}, now)
		if err != nil {
			f.Fatal(err)
		}
		return mb.Encode()
	}
	selfKey, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	// The fuzzing peer: a fixed identity, so that seeds' memberships verify.
	peerKey, err := crypto.UnmarshalEd25519PrivateKey(bytes.Repeat([]byte{0x42}, 64))
	if err != nil {
		f.Fatal(err)
	}
	p, _ := peer.IDFromPrivateKey(peerKey)
	open := fuzzMesh(f, nil, nil, selfKey)
	gated := fuzzMesh(f, &trust, grant(selfKey, schema.RoleCentral), selfKey)

	h1, _ := encodeHeads([]cid.Cid{fuzzHead(1)})
	h2, _ := encodeHeads([]cid.Cid{fuzzHead(2), fuzzHead(3)})
	vm := grant(peerKey, schema.RoleVM, "org1")
	base := hello{Version: ProtocolVersion, Schema: schema.CurrentVersion, Schemas: schema.SupportedVersions(),
		Network: trustNet, Roles: []string{"vm"}, Orgs: []string{"org1"}, Membership: vm,
		Heads: map[string][]byte{"org1": h1}}
	variants := []hello{
		base,
		{Version: ProtocolVersion, Schema: schema.CurrentVersion, Network: trustNet},
		{Version: ProtocolVersion, Schema: schema.CurrentVersion, Network: trustNet, Orgs: []string{"org1", "org2"},
			Membership: grant(peerKey, schema.RoleCentral), Heads: map[string][]byte{"org1": h1, "org2": h2}},
		{Version: ProtocolVersion, Schema: schema.CurrentVersion, Network: trustNet, Orgs: []string{"org2"},
			Membership: vm, Heads: map[string][]byte{"org2": h2}}, // heads of an org it is not a member of
		{Version: ProtocolVersion + 1, Schema: schema.CurrentVersion, Network: trustNet},
		{Version: ProtocolVersion, Schema: 99, Network: trustNet},
		{Version: ProtocolVersion, Schema: schema.CurrentVersion, Network: "other"},
		{Version: ProtocolVersion, Schema: schema.CurrentVersion, Network: trustNet, Error: "refused"},
		{Version: ProtocolVersion, Schema: schema.CurrentVersion, Network: trustNet, Orgs: []string{"org1"},
			Membership: vm, Heads: map[string][]byte{"org1": []byte("not protobuf"), "org3": h1}},
	}
	for _, h := range variants {
		fuzzseed.Add(f, frame(f, h))
	}
	whole := frame(f, base)
	for _, s := range []string{"", "\x00", "\x02{}", "\x04null", "\x01", "\xff\xff\xff\xff\x7f", "\x80\x80\x80\x04{",
		`{"version":1}`, "\x0e{\"heads\":{\"\":\"\"}}"} {
		fuzzseed.Add(f, []byte(s))
	}
	fuzzseed.Add(f, whole[:len(whole)/2])
	fuzzseed.Add(f, append(bytes.Clone(whole), whole...))

	f.Fuzz(func(t *testing.T, data []byte) {
		var h hello
		if err := readMsg(bufio.NewReader(bytes.NewReader(data)), &h); err != nil {
			return
		}
		for _, m := range []*Mesh{open, gated} {
			member, err := m.checkHello(p, h)
			if err != nil {
				continue
			}
			if m.Gated() && (member == nil || member.Peer != p.String()) {
				t.Fatalf("gated mesh accepted hello without the peer's membership: %+v", member)
			}
			orgs := m.notePeer(p, h, member, false)
			for _, org := range orgs {
				if m.Gated() && policy.MayRead(*member, org) != nil {
					t.Fatalf("peer taken to carry %s, which its membership may not read", org)
				}
			}
			m.deliverHeads(p, member, h.Heads, h.HeadsAt)
			reply := m.helloWithHeads(p, orgs)
			var back hello
			var buf bytes.Buffer
			if err := writeMsg(&buf, reply); err != nil {
				t.Fatal(err)
			}
			if err := readMsg(bufio.NewReader(&buf), &back); err != nil || !reflect.DeepEqual(back, reply) {
				t.Fatalf("the reply does not round-trip: %v\n%+v\n%+v", err, reply, back)
			}
		}
	})
}

// FuzzInbox feeds head announcements (go-ds-crdt's protobuf broadcast, as
// gossipsub and the heads exchange carry them) to a topic inbox and reads
// them back: a malformed one is refused; a well-formed one comes out with
// the same heads, once each.
func FuzzInbox(f *testing.F) {
	one, _ := encodeHeads([]cid.Cid{fuzzHead(1)})
	three, _ := encodeHeads([]cid.Cid{fuzzHead(1), fuzzHead(2), fuzzHead(1)})
	none, _ := encodeHeads(nil)
	for _, b := range [][]byte{one, three, none, one[:len(one)-1], append(bytes.Clone(one), 0), {0x0a, 0x00}, {0x0a, 0x02, 0x0a, 0x00},
		{0x0a, 0x05, 0x0a, 0x03, 0x01, 0x55, 0x00}, {0xff}, []byte("not protobuf")} {
		fuzzseed.Add(f, b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		want, err := decodeHeads(data)
		b := newInbox()
		_, addErr := b.add(data, "peer")
		if (err == nil) != (addErr == nil) {
			t.Fatalf("decodeHeads and inbox.add disagree: %v, %v", err, addErr)
		}
		if err != nil {
			return
		}
		// Heads are pending, so next answers at once; the deadline only
		// bounds a bug, and is long enough for a loaded fuzzing machine.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		a, err := b.next(ctx, context.Background())
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeHeads(a.data)
		if err != nil {
			t.Fatalf("the inbox's announcement does not decode: %v", err)
		}
		uniq := map[cid.Cid]bool{}
		for _, c := range want {
			uniq[c] = true
		}
		if len(got) != min(len(uniq), maxPendingHeads) {
			t.Fatalf("announced %d distinct heads, the inbox gave %d", len(uniq), len(got))
		}
		for _, c := range got {
			if !uniq[c] {
				t.Fatalf("the inbox gave head %s, which was not announced", c)
			}
		}
	})
}
