package crdt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
)

type hookLog struct {
	mu   sync.Mutex
	puts map[string][]byte
}

func (h *hookLog) put(k string, v []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.puts[k] = bytes.Clone(v)
}

func (h *hookLog) get(k string) []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.puts[k]
}

func verifiedReplica(t *testing.T, s *Store, w *trustWorld, h *hookLog) *Replica {
	t.Helper()
	opts := DefaultOptions(testOrg)
	opts.Verify = &VerifyOptions{Trust: w.Trust, Now: func() time.Time { return tw0.Add(3 * time.Hour) }}
	if h != nil {
		opts.OnPut = h.put
	}
	r, err := NewReplica(opts, Deps{Store: s, DAG: offlineDAG(s)})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustPut(t *testing.T, r *Replica, key string, v []byte) {
	t.Helper()
	if err := r.Put(context.Background(), key, v); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

func mustGet(t *testing.T, r *Replica, key string) []byte {
	t.Helper()
	v, err := r.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	return v
}

// TestVerifiedViewKeepsLegitimateValue writes, through go-ds-crdt
// directly, what a modified peer would: a forged value that wins in
// go-ds-crdt's order. The view still serves the legitimate one, counts the
// refusal, and keeps all of it across a reopen and a lost view.
func TestVerifiedViewKeepsLegitimateValue(t *testing.T) {
	ctx := context.Background()
	w := newTrustWorld(t)
	dir := t.TempDir()
	s := openStore(t, dir)
	h := &hookLog{puts: map[string][]byte{}}
	r := verifiedReplica(t, s, w, h)
	d1 := w.Central.Sign(t, delivery(t, "Maths"), 0)
	vmD := w.VM1.Sign(t, delivery(t, "Forged by a VM"), 0)
	r1 := w.VM1.Sign(t, result(t, "e1", "7.5"), time.Hour)
	e1 := w.VM1.Sign(t, execution(t, "e1", w.VM1.ID, "finished"), time.Hour)

	mustPut(t, r, MembershipKey(w.Central.M.Serial), w.Central.M.Encode())
	mustPut(t, r, "/deliveries/d1", d1)
	mustPut(t, r, "/results/e1", r1) // before its execution: parked
	if _, err := r.Get(ctx, "/results/e1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a result without its execution is served: %v", err)
	}
	if st := r.Stats(ctx); st.RecordsParked != 0 {
		// vm1's membership is not here yet either: parked on that first.
		t.Logf("parked: %d", st.RecordsParked)
	}
	mustPut(t, r, MembershipKey(w.VM1.M.Serial), w.VM1.M.Encode())
	mustPut(t, r, "/executions/e1", e1)
	if got := mustGet(t, r, "/results/e1"); !bytes.Equal(got, r1) {
		t.Fatal("the parked result was not accepted once its execution arrived")
	}
	mustPut(t, r, "/deliveries/d1", vmD)
	raw, err := r.GetRaw(ctx, "/deliveries/d1")
	if err != nil || !bytes.Equal(raw, vmD) {
		t.Fatalf("go-ds-crdt should hold the forged value (it merges anything): %v", err)
	}
	if got := mustGet(t, r, "/deliveries/d1"); !bytes.Equal(got, d1) {
		t.Fatal("the view serves the VM's delivery")
	}
	if !bytes.Equal(h.get("/deliveries/d1"), d1) || !bytes.Equal(h.get("/results/e1"), r1) {
		t.Fatal("the hooks did not follow the view")
	}
	st := r.Stats(ctx)
	if st.RecordsRefused[ReasonRoleMayNotWrite] != 1 || st.RecordsParked != 0 {
		t.Fatalf("stats: refused %v, parked %d", st.RecordsRefused, st.RecordsParked)
	}
	refs, err := r.Refusals(ctx, 0)
	if err != nil || len(refs) != 1 || refs[0].Key != "/deliveries/d1" || refs[0].Writer != w.VM1.ID {
		t.Fatalf("refusals: %+v, %v", refs, err)
	}
	list, err := r.List(ctx, "/deliveries", false, 0, 0)
	if err != nil || len(list) != 1 || list[0].Key != "/deliveries/d1" || !bytes.Equal(list[0].Value, d1) {
		t.Fatalf("list: %+v, %v", list, err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopen: the view persisted.
	r = verifiedReplica(t, s, w, nil)
	if got := mustGet(t, r, "/deliveries/d1"); !bytes.Equal(got, d1) {
		t.Fatal("after reopen the view serves the VM's delivery")
	}
	if st := r.Stats(ctx); st.RecordsRefused[ReasonRoleMayNotWrite] != 1 {
		t.Fatalf("after reopen: refused %v", st.RecordsRefused)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}

	// Lose the whole view (a crash before it was written): it is rebuilt
	// from go-ds-crdt's element index and the delta blocks.
	res, err := s.Datastore().Query(ctx, query.Query{Prefix: "/view", KeysOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	all, _ := res.Rest()
	for _, e := range all {
		if err := s.Datastore().Delete(ctx, ds.RawKey(e.Key)); err != nil {
			t.Fatal(err)
		}
	}
	r = verifiedReplica(t, s, w, nil)
	if err := r.view.wait(ctx); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, r, "/deliveries/d1"); !bytes.Equal(got, d1) {
		t.Fatal("the rebuilt view serves the wrong delivery")
	}
	if got := mustGet(t, r, "/results/e1"); !bytes.Equal(got, r1) {
		t.Fatal("the rebuilt view lost the result")
	}
	if st := r.Stats(ctx); st.RecordsRefused[ReasonRoleMayNotWrite] != 1 {
		t.Fatalf("rebuilt view: refused %v", st.RecordsRefused)
	}
	if err := errors.Join(r.Close(), s.Close()); err != nil {
		t.Fatal(err)
	}
}

// TestRevocationArrivingLaterRefusesWhatWasSignedAfter: records signed
// under a membership after its revocation time are refused when the
// revocation arrives; those signed before stay.
func TestRevocationArrivingLaterRefusesWhatWasSignedAfter(t *testing.T) {
	ctx := context.Background()
	w := newTrustWorld(t)
	s := openStore(t, t.TempDir())
	defer s.Close()
	var revoked []string
	var mu sync.Mutex
	opts := DefaultOptions(testOrg)
	opts.Verify = &VerifyOptions{Trust: w.Trust, Now: func() time.Time { return tw0.Add(3 * time.Hour) },
		OnRevocation: func(r policyRevocation) { mu.Lock(); revoked = append(revoked, r.Peer); mu.Unlock() }}
	r, err := NewReplica(opts, Deps{Store: s, DAG: offlineDAG(s)})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	v2 := w.VM2
	early := v2.Sign(t, execution(t, "e2", v2.ID, "active"), 0)
	late := v2.Sign(t, execution(t, "e3", v2.ID, "active"), time.Hour)
	mustPut(t, r, MembershipKey(v2.M.Serial), v2.M.Encode())
	mustPut(t, r, "/executions/e2", early)
	mustPut(t, r, "/executions/e3", late)
	mustGet(t, r, "/executions/e3")
	rev, err := w.Auth.Revoke(revokeRequest(v2, tw0.Add(30*time.Minute)), tw0)
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, r, RevocationKey(rev), rev.Encode())
	if _, err := r.Get(ctx, "/executions/e3"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a record signed after its membership's revocation is still served: %v", err)
	}
	mustGet(t, r, "/executions/e2")
	if st := r.Stats(ctx); st.RecordsRefused[ReasonRevoked] != 1 {
		t.Fatalf("refused: %v", st.RecordsRefused)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(revoked) != 1 || revoked[0] != v2.ID {
		t.Fatalf("OnRevocation: %v", revoked)
	}
}

// TestVerifiedReplicaCatchesUp: a fresh verified replica merges a history
// of more elements than the verifier's queue holds (go-ds-crdt waits for
// it; the bound is lowered for the test), and its view ends with every record, none refused.
func TestVerifiedReplicaCatchesUp(t *testing.T) {
	defer func(old int) { maxQueuedElems = old }(maxQueuedElems)
	maxQueuedElems = 500
	n := 3 * maxQueuedElems
	w := newTrustWorld(t)
	sa, sb := openStore(t, t.TempDir()), openStore(t, t.TempDir())
	defer sa.Close()
	defer sb.Close()
	dag := offlineDAG(sa) // blocks travel through a shared DAG service
	ba, bb := newChanBroadcaster(), newChanBroadcaster()
	ba.peers, bb.peers = []*chanBroadcaster{bb}, []*chanBroadcaster{ba}
	mk := func(s *Store, bc Broadcaster) *Replica {
		opts := DefaultOptions(testOrg)
		opts.Verify = &VerifyOptions{Trust: w.Trust, Now: func() time.Time { return tw0.Add(time.Hour) }}
		r, err := NewReplica(opts, Deps{Store: s, DAG: dag, Broadcaster: bc})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	a := mk(sa, ba)
	ctx := context.Background()
	ops := []Op{{Key: MembershipKey(w.Central.M.Serial), Value: w.Central.M.Encode()}}
	base := delivery(t, "Maths")
	for i := range n {
		rec := base
		rec.ID = fmt.Sprintf("d%06d", i)
		ops = append(ops, Op{Key: rec.Key(), Value: w.Central.Sign(t, rec, 0)})
		if len(ops) == 500 || i == n-1 {
			if err := a.Apply(ctx, ops); err != nil {
				t.Fatal(err)
			}
			ops = nil
		}
	}
	b := mk(sb, bb)
	defer func() {
		ba.stop()
		bb.stop()
		_ = errors.Join(a.Close(), b.Close())
	}()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		// a announces its heads to b (as a periodic exchange would).
		if heads, err := a.HeadsAnnouncement(ctx); err == nil {
			select {
			case bb.in <- heads:
			default:
			}
		}
		cb, _ := b.Count(ctx, "/deliveries")
		if cb == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b's view holds %d of %d records", cb, n)
		}
		<-time.After(200 * time.Millisecond)
	}
	if st := b.Stats(ctx); len(st.RecordsRefused) != 0 || st.RecordsParked != 0 {
		t.Fatalf("refused %v, parked %d", st.RecordsRefused, st.RecordsParked)
	}
}
