package integration

// The hostile-peer kit's gossipsub: the attacker runs gossipsub on its own
// host, joins an organisation's topic by name and keeps every RPC the
// node's gossipsub sends it (subscriptions, messages, gossip), so a test
// can assert what it heard.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"google.golang.org/protobuf/proto"

	"github.com/examnode/examnode/internal/cluster"
	"github.com/examnode/examnode/mesh"
	"github.com/examnode/examnode/node"
	"github.com/examnode/examnode/schema"
)

// gossip is the attacker's gossipsub, subscribed to one topic.
type gossip struct {
	messages atomic.Int64 // messages of the topic delivered to it

	mu   sync.Mutex
	rpcs bytes.Buffer // every RPC its gossipsub received, marshalled
}

// rpcsContain reports whether any RPC the attacker's gossipsub received
// contains b.
func (g *gossip) rpcsContain(b []byte) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return bytes.Contains(g.rpcs.Bytes(), b)
}

// joinGossip starts gossipsub on h's host, subscribes to topic and
// counts its messages; every RPC received is kept (h.keep).
func (h *hostile) joinGossip(topic string) *gossip {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	g := &gossip{}
	ps, err := pubsub.NewGossipSub(ctx, h.host, pubsub.WithRawTracer(rpcKeeper{h, g}))
	if err != nil {
		cancel()
		h.t.Fatal(err)
	}
	tp, err := ps.Join(topic)
	if err != nil {
		cancel()
		h.t.Fatal(err)
	}
	sub, err := tp.Subscribe()
	if err != nil {
		cancel()
		h.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			msg, err := sub.Next(ctx)
			if err != nil {
				return
			}
			if msg.ReceivedFrom != h.host.ID() {
				g.messages.Add(1)
				h.keep(msg.Data)
			}
		}
	}()
	h.t.Cleanup(func() {
		cancel()
		<-done
	})
	return g
}

// rpcKeeper keeps every RPC the attacker's gossipsub receives.
type rpcKeeper struct {
	h *hostile
	g *gossip
}

func (k rpcKeeper) RecvRPC(rpc *pubsub.RPC) {
	if b, err := proto.Marshal(&rpc.RPC); err == nil {
		k.h.keep(b)
		k.g.mu.Lock()
		k.g.rpcs.Write(b)
		k.g.mu.Unlock()
	}
}
func (rpcKeeper) OnNewOutboundStream(peer.ID, protocol.ID)             {}
func (rpcKeeper) OnClosedOutboundStream(peer.ID)                       {}
func (rpcKeeper) AddPeer(peer.ID, protocol.ID)                         {}
func (rpcKeeper) RemovePeer(peer.ID)                                   {}
func (rpcKeeper) Join(string)                                          {}
func (rpcKeeper) Leave(string)                                         {}
func (rpcKeeper) Graft(peer.ID, string)                                {}
func (rpcKeeper) Prune(peer.ID, string)                                {}
func (rpcKeeper) ValidateMessage(*pubsub.Message)                      {}
func (rpcKeeper) DeliverMessage(*pubsub.Message)                       {}
func (rpcKeeper) RejectMessage(*pubsub.Message, string)                {}
func (rpcKeeper) DuplicateMessage(*pubsub.Message)                     {}
func (rpcKeeper) ThrottlePeer(peer.ID)                                 {}
func (rpcKeeper) SendRPC(*pubsub.RPC, peer.ID)                         {}
func (rpcKeeper) SendRPCCompleted(*pubsub.RPC, peer.ID, time.Duration) {}
func (rpcKeeper) DropRPC(*pubsub.RPC, peer.ID)                         {}
func (rpcKeeper) UndeliverableMessage(*pubsub.Message)                 {}

// listenSync makes the attacker accept the node's sync streams: it keeps
// the hello it is sent and never answers.
func (h *hostile) listenSync() {
	h.host.SetStreamHandler(hostileSyncProto, func(s network.Stream) {
		_ = s.SetDeadline(time.Now().Add(30 * time.Second))
		r := &recording{Stream: s, h: h}
		var hello hostileHello
		_ = readUvarintJSON(bufio.NewReader(r), 8<<20, &hello)
	})
}

// writeMarkers writes a marker into org on n until cond holds.
func writeMarkers(t *testing.T, n *node.Node, org string, what string, cond func() bool) {
	t.Helper()
	i := 0
	err := cluster.WaitFor(context.Background(), 30*time.Second, func() (bool, error) {
		i++
		putIn(t, n, org, fmt.Sprintf("/notes/marker-%d", i), "marker")
		return cond(), nil
	})
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// A VM member of B subscribes to A's topic on central (which holds A and
// B) while a VM of A writes: it hears nothing of A, the subscription is
// counted as refused, and a legitimate peer of A hears the announcements.
func TestMemberOfAnotherOrganisationCannotSubscribe(t *testing.T) {
	c := gatedCluster(t,
		cluster.Spec{Name: "central", Role: schema.RoleCentral, Orgs: []string{orgA, orgB}},
		cluster.Spec{Name: "vm-a", Role: schema.RoleVM, Orgs: []string{orgA}},
		cluster.Spec{Name: "vm-b", Role: schema.RoleVM, Orgs: []string{orgB}},
	)
	central, vmA := c.Node(0), c.Node(1)
	ctx := context.Background()
	topicA := mesh.TopicName(c.Options().Network, orgA)

	attacker := newHostile(t, c, hostileSpec{Role: schema.RoleVM, Orgs: []string{orgB}})
	legit := newHostile(t, c, hostileSpec{Role: schema.RoleVM, Orgs: []string{orgA}})
	heard := map[*hostile]*gossip{}
	for h, orgs := range map[*hostile][]string{attacker: {orgB}, legit: {orgA}} {
		heard[h] = h.joinGossip(topicA)
		h.connect(ctx, central)
		if reply, err := h.hello(ctx, central.ID(), []string{string(schema.RoleVM)}, orgs); err != nil || reply.Error != "" {
			t.Fatalf("hello of a member of %v: %v %q", orgs, err, reply.Error)
		}
	}
	before := central.Mesh().Refused(orgA)[mesh.RefuseSubscription]
	writeMarkers(t, vmA, orgA, "the member of A heard no announcement of A through central", func() bool {
		return heard[legit].messages.Load() > 0
	})
	// More announcements, now that the mesh has formed.
	from := heard[legit].messages.Load()
	writeMarkers(t, vmA, orgA, "the member of A stopped hearing A", func() bool {
		return heard[legit].messages.Load() > from+2
	})
	if n := heard[attacker].messages.Load(); n != 0 {
		t.Fatalf("the member of B heard %d announcements of A", n)
	}
	// Gossipsub sent the member of B no message of A's topic at all (it
	// may know central subscribes to it: see README, Trust, residual).
	if !heard[legit].rpcsContain([]byte(topicA)) {
		t.Fatalf("the member of A's gossipsub recorded nothing of %s's topic: the recorder is broken", orgA)
	}
	got := central.Mesh().Refused(orgA)[mesh.RefuseSubscription]
	if got == 0 {
		t.Fatalf("central counted no refused subscription to %s (before %d): %v", orgA, before, central.Mesh().Refused(orgA))
	}
	t.Logf("member of A heard %d announcements, member of B %d; central refused %d subscription(s) to %s",
		heard[legit].messages.Load(), heard[attacker].messages.Load(), got, orgA)
}

// A stranger that connects and says nothing, and one that sends garbage,
// receive nothing about any organisation, are disconnected within about
// HelloTimeout, and cannot reconnect at once.
func TestStrangerLearnsNothingAndIsDroppedQuickly(t *testing.T) {
	c := gatedCluster(t,
		cluster.Spec{Name: "central", Role: schema.RoleCentral, Orgs: []string{orgA, orgB}},
		cluster.Spec{Name: "vm-a", Role: schema.RoleVM, Orgs: []string{orgA}},
	)
	central, vmA := c.Node(0), c.Node(1)
	putIn(t, vmA, orgA, "/notes/n1", "marker of A")
	ctx := context.Background()

	for _, garbage := range []bool{false, true} {
		for _, target := range []*node.Node{central, vmA} {
			name := fmt.Sprintf("garbage=%v target=%s", garbage, target.ID())
			s := newHostile(t, c, hostileSpec{Stranger: true})
			s.listenSync()
			s.joinGossip(mesh.TopicName(c.Options().Network, orgA))
			before := target.Mesh().Refused(mesh.NodeWide)[mesh.RefuseStranger]
			start := time.Now()
			s.connect(ctx, target)
			if garbage {
				st, err := s.stream(ctx, target.ID(), hostileSyncProto)
				if err == nil {
					_, _ = st.Write([]byte{0x05, 'h', 'e', 'l', 'l', 'o', 'x', 'y'})
					_, _ = st.Read(make([]byte, 1024))
					_ = st.Close()
				}
			}
			err := cluster.WaitFor(ctx, 10*time.Second, func() (bool, error) {
				return s.host.Network().Connectedness(target.ID()) != network.Connected, nil
			})
			took := time.Since(start)
			if err != nil {
				t.Fatalf("%s: the stranger is still connected: %v", name, err)
			}
			if took > 3*time.Second {
				t.Fatalf("%s: the stranger was disconnected after %s", name, took)
			}
			for _, secret := range []string{orgA, orgB, string(schema.RoleCentral), "membership", "heads"} {
				if s.receivedContains([]byte(secret)) {
					t.Fatalf("%s: the stranger received %q (%d bytes in all)", name, secret, s.receivedBytes())
				}
			}
			// Reconnecting at once is refused.
			ai, _ := cluster.AddrInfo(target.Addrs())
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err = s.host.Connect(rctx, ai)
			cancel()
			if err == nil {
				// The dial may complete before the node's gater closes it:
				// what counts is that it does not stay.
				err = cluster.WaitFor(ctx, 5*time.Second, func() (bool, error) {
					return s.host.Network().Connectedness(target.ID()) != network.Connected, nil
				})
				if err != nil {
					t.Fatalf("%s: the stranger reconnected at once", name)
				}
			}
			if got := target.Mesh().Refused(mesh.NodeWide)[mesh.RefuseStranger]; got < before+2 {
				t.Fatalf("%s: %d stranger refusals counted (before %d), want the refusal and the denied reconnection", name, got, before)
			}
			t.Logf("%s: disconnected after %s; received %d bytes, none about an organisation", name, took.Round(time.Millisecond), s.receivedBytes())
		}
	}
}

// A hello from a member of B to a VM of A: the reply carries nothing of A
// (neither the organisation, nor the VM's role or membership, nor heads).
func TestHelloToAVMOfAnotherOrganisationTellsNothing(t *testing.T) {
	c := gatedCluster(t, cluster.Spec{Name: "vm-a", Role: schema.RoleVM, Orgs: []string{orgA}})
	vmA := c.Node(0)
	putIn(t, vmA, orgA, "/notes/n1", "marker of A")
	ctx := context.Background()
	h := newHostile(t, c, hostileSpec{Role: schema.RoleVM, Orgs: []string{orgB}})
	h.connect(ctx, vmA)
	reply, err := h.hello(ctx, vmA.ID(), []string{string(schema.RoleVM)}, []string{orgA, orgB})
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("hello: %v", err)
	}
	if len(reply.Orgs) != 0 || len(reply.Roles) != 0 || len(reply.Membership) != 0 || len(reply.Heads) != 0 {
		t.Fatalf("the reply tells a member of %s about %s: %+v", orgB, orgA, reply)
	}
	if h.receivedContains([]byte(orgA)) || h.receivedContains([]byte(`"roles"`)) {
		t.Fatalf("the reply's bytes name %s or the VM's role", orgA)
	}
	t.Logf("reply: version %d, error %q", reply.Version, reply.Error)
}
