package crdt

import (
	"context"
	"fmt"
	"testing"

	"github.com/ipfs/go-cid"
)

func TestInspectOwnDeltasHeadsAndDAGSize(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	bc := newChanBroadcaster()
	r := newReplica(t, s, offlineDAG(s), bc, "c1")
	defer func() {
		bc.stop()
		_ = r.Close()
	}()
	ctx := context.Background()
	var after [][]byte // heads after each commit
	for i := range 3 {
		if err := r.Apply(ctx, []Op{{Key: fmt.Sprintf("/results/a%d", i), Value: []byte("x")}, {Key: fmt.Sprintf("/results/b%d", i), Value: []byte("y")}}); err != nil {
			t.Fatal(err)
		}
		h, err := r.HeadsAnnouncement(ctx)
		if err != nil {
			t.Fatal(err)
		}
		after = append(after, h)
	}
	if n, err := r.DAGSize(ctx); err != nil || n != 3 {
		t.Fatalf("DAG size %d, %v; want 3", n, err)
	}

	// Nobody holds anything yet: three deltas of two records.
	u, err := r.Unconfirmed(ctx, nil)
	if err != nil || u.Records != 6 || u.Deltas != 3 || u.Oldest.IsZero() {
		t.Fatalf("unconfirmed %+v, %v; want 6 records in 3 deltas", u, err)
	}

	empty, _ := EncodeHeads(nil)
	unknown, _ := EncodeHeads([]cid.Cid{cid.MustParse("bafkqaaa")})
	for _, tc := range []struct {
		name  string
		heads []byte
		want  HeadsComparison
	}{
		{"same heads", after[2], HeadsComparison{Same: true, PeerHeight: 3}},
		{"one commit behind", after[1], HeadsComparison{PeerHeight: 2, Behind: 1}},
		{"two commits behind", after[0], HeadsComparison{PeerHeight: 1, Behind: 2}},
		{"empty replica", empty, HeadsComparison{Behind: 3}},
		{"a head not held here", unknown, HeadsComparison{Missing: 1}},
	} {
		got, err := r.CompareHeads(ctx, tc.heads)
		if err != nil || got != tc.want {
			t.Errorf("%s: %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
	if _, err := r.CompareHeads(ctx, []byte{0xff, 0xff}); err == nil {
		t.Error("malformed heads compared without an error")
	}

	// A peer that sent the heads after the second commit holds the first two.
	u, err = r.Unconfirmed(ctx, [][]byte{after[1], unknown})
	if err != nil || u.Records != 2 || u.Deltas != 1 {
		t.Fatalf("unconfirmed after a peer holds two commits: %+v, %v; want 2 records in 1 delta", u, err)
	}
	u, err = r.Unconfirmed(ctx, [][]byte{after[2]})
	if err != nil || u.Records != 0 || u.Deltas != 0 || !u.Oldest.IsZero() {
		t.Fatalf("unconfirmed after a peer holds everything: %+v, %v", u, err)
	}
}
