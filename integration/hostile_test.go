package integration

// The hostile-peer kit: a libp2p peer written to attack a node. It holds a
// real membership granted by the cluster's authority (of another
// organisation, of any role) or none at all, and speaks examnode's
// protocols wrongly on purpose. Every byte it receives on a stream it
// opened or accepted is kept, so a test can assert that a marker written
// in one organisation is in nothing the peer received.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"

	"github.com/examnode/examnode/internal/cluster"
	"github.com/examnode/examnode/node"
	"github.com/examnode/examnode/policy"
	"github.com/examnode/examnode/schema"
)

// The protocols the kit speaks, as the node registers them.
const (
	hostileSyncProto = protocol.ID("/examnode/sync/1.0.0")
	hostilePullProto = protocol.ID("/examnode/dag-pull/1.0.0")
)

// hostile is an attacking peer. Close it with t.Cleanup (newHostile does).
type hostile struct {
	t          *testing.T
	host       host.Host
	network    string
	membership []byte // encoded; nil: a stranger

	mu       sync.Mutex
	received bytes.Buffer // every byte read from any stream
}

// hostileSpec says what the attacker holds.
type hostileSpec struct {
	// Role and Orgs of the membership the authority grants it; with
	// Stranger set it holds none.
	Role     schema.Role
	Orgs     []string
	AllOrgs  bool
	Stranger bool
}

// newHostile starts an attacking peer on 127.0.0.1 for cluster c (which
// must be gated unless spec.Stranger is set).
func newHostile(t *testing.T, c *cluster.Cluster, spec hostileSpec) *hostile {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := libp2p.New(
		libp2p.Identity(key),
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.DisableRelay(),
	)
	if err != nil {
		t.Fatal(err)
	}
	hp := &hostile{t: t, host: h, network: c.Options().Network}
	t.Cleanup(func() { _ = h.Close() })
	if !spec.Stranger {
		a := c.Options().Authority
		if a == nil {
			t.Fatal("hostile: a membership needs a gated cluster")
		}
		now := time.Now()
		req := policy.GrantRequest{Network: c.Options().Network, Peer: h.ID().String(), Role: spec.Role,
			Orgs: spec.Orgs, AllOrgs: spec.AllOrgs, NotBefore: now.Add(-time.Minute), Expires: now.Add(24 * time.Hour)}
		mb, err := a.Grant(req, now)
		if err != nil {
			t.Fatal(err)
		}
		hp.membership = mb.Encode()
	}
	return hp
}

// ID is the attacker's peer ID.
func (h *hostile) ID() peer.ID { return h.host.ID() }

// connect dials n.
func (h *hostile) connect(ctx context.Context, n *node.Node) {
	h.t.Helper()
	ai, err := cluster.AddrInfo(n.Addrs())
	if err != nil {
		h.t.Fatal(err)
	}
	if err := h.host.Connect(ctx, ai); err != nil {
		h.t.Fatalf("hostile: connect to %s: %v", n.ID(), err)
	}
}

// stream opens a stream of protocol p to target; what it reads is kept.
func (h *hostile) stream(ctx context.Context, target peer.ID, p protocol.ID) (io.ReadWriteCloser, error) {
	s, err := h.host.NewStream(ctx, target, p)
	if err != nil {
		return nil, err
	}
	_ = s.SetDeadline(time.Now().Add(30 * time.Second))
	return &recording{Stream: s, h: h}, nil
}

// recording keeps every byte read from a stream in its hostile's buffer.
type recording struct {
	network.Stream
	h *hostile
}

func (r *recording) Read(b []byte) (int, error) {
	n, err := r.Stream.Read(b)
	if n > 0 {
		r.h.keep(b[:n])
	}
	return n, err
}

func (h *hostile) keep(b []byte) {
	h.mu.Lock()
	h.received.Write(b)
	h.mu.Unlock()
}

// receivedContains reports whether any byte string the attacker received
// so far contains marker.
func (h *hostile) receivedContains(marker []byte) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return bytes.Contains(h.received.Bytes(), marker)
}

// receivedBytes is how many bytes the attacker received so far.
func (h *hostile) receivedBytes() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.received.Len()
}

// hostileHello is the sync protocol's hello as the node's mesh encodes it
// (mesh/exchange.go); the kit sends whatever it likes in it.
type hostileHello struct {
	Version    int               `json:"version"`
	Schema     int               `json:"schema"`
	Schemas    []int             `json:"schemas,omitempty"`
	Network    string            `json:"network"`
	Roles      []string          `json:"roles,omitempty"`
	Orgs       []string          `json:"orgs,omitempty"`
	Heads      map[string][]byte `json:"heads,omitempty"`
	Error      string            `json:"error,omitempty"`
	Membership []byte            `json:"membership,omitempty"`
	HeadsAt    int64             `json:"heads_at,omitempty"`
}

// hello sends a hello claiming roles and orgs (with the attacker's
// membership, if any) and returns the node's reply.
func (h *hostile) hello(ctx context.Context, target peer.ID, roles, orgs []string) (hostileHello, error) {
	req := hostileHello{Version: 1, Schema: schema.CurrentVersion, Schemas: schema.SupportedVersions(),
		Network: h.network, Roles: roles, Orgs: orgs, Membership: h.membership, HeadsAt: time.Now().UnixNano()}
	s, err := h.stream(ctx, target, hostileSyncProto)
	if err != nil {
		return hostileHello{}, err
	}
	defer s.Close()
	if err := writeUvarintJSON(s, req); err != nil {
		return hostileHello{}, err
	}
	var reply hostileHello
	err = readUvarintJSON(bufio.NewReader(s), 8<<20, &reply)
	return reply, err
}

// writeUvarintJSON and readUvarintJSON are the framing of examnode's
// stream protocols: a uvarint length, then JSON.
func writeUvarintJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(binary.AppendUvarint(nil, uint64(len(b))), b...))
	return err
}

func readUvarintJSON(r *bufio.Reader, limit uint64, v any) error {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return err
	}
	if n > limit {
		return fmt.Errorf("hostile: frame of %d bytes", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// errNotServed is what pullFrom returns when the node refuses the pull.
var errNotServed = errors.New("hostile: pull refused")

// pullFrom asks target's dag-pull for CIDs, naming org (which need not be
// the organisation the CIDs belong to), and returns how many blocks came.
// Every byte of the answer is kept.
func (h *hostile) pullFrom(ctx context.Context, target peer.ID, org string, want []string) (int, error) {
	s, err := h.stream(ctx, target, hostilePullProto)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	if err := writeUvarintJSON(s, map[string]any{"org": org, "want": want}); err != nil {
		return 0, err
	}
	br := bufio.NewReader(s)
	var status struct {
		Error string `json:"error"`
	}
	if err := readUvarintJSON(br, 1<<20, &status); err != nil {
		return 0, err
	}
	if status.Error != "" {
		return 0, fmt.Errorf("%w: %s", errNotServed, status.Error)
	}
	blocks := 0
	for {
		cl, err := binary.ReadUvarint(br)
		if err != nil {
			return blocks, err
		}
		if cl == 0 {
			return blocks, nil
		}
		if _, err := io.CopyN(io.Discard, br, int64(cl)); err != nil {
			return blocks, err
		}
		dl, err := binary.ReadUvarint(br)
		if err != nil {
			return blocks, err
		}
		if _, err := io.CopyN(io.Discard, br, int64(dl)); err != nil {
			return blocks, err
		}
		blocks++
	}
}

// TestHostileKitSpeaksTheProtocols checks the kit itself: a peer with a
// real membership of the organisation completes a hello and a pull of
// its own organisation's heads, so a refusal in an attack test is the
// node's doing, not the kit's.
func TestHostileKitSpeaksTheProtocols(t *testing.T) {
	c := gatedCluster(t, cluster.Spec{Name: "vm1", Role: schema.RoleVM, Orgs: []string{orgA}})
	vm := c.Node(0)
	putIn(t, vm, orgA, "/notes/kit", "kit")
	ctx := context.Background()
	h := newHostile(t, c, hostileSpec{Role: schema.RoleVM, Orgs: []string{orgA}})
	h.connect(ctx, vm)
	reply, err := h.hello(ctx, vm.ID(), []string{string(schema.RoleVM)}, []string{orgA})
	if err != nil || reply.Error != "" {
		t.Fatalf("hello: %v %q", err, reply.Error)
	}
	rep, err := vm.Replica(orgA)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, c := range rep.Heads(ctx) {
		want = append(want, c.String())
	}
	n, err := h.pullFrom(ctx, vm.ID(), orgA, want)
	if err != nil || n == 0 {
		t.Fatalf("pull of its own organisation: %d blocks, %v", n, err)
	}
	if !h.receivedContains([]byte("kit")) {
		t.Fatal("the kit kept none of the bytes it received")
	}
}
