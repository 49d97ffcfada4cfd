package crdt

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/examnode/examnode/policy"
	"github.com/examnode/examnode/schema"
)

// TestSenderRefusesWhatReceiversRefuse is issue 15's rule: for every rule
// receivers apply, the sender's check of an element (Replica.Check, what
// a gated node runs on the value it is about to send) and a receiver's
// decision on that element once it arrives (the verified view of another
// replica holding the same state) agree: both refuse it with the same
// reason, or both accept it.
func TestSenderRefusesWhatReceiversRefuse(t *testing.T) {
	ctx := context.Background()
	w := newTrustWorld(t)
	c, v1, v2, v3 := w.Central, w.VM1, w.VM2, w.VM3
	// vm4 of C1: a membership that expired an hour after tw0.
	v4 := &testPeer{Priv: v2.Priv, ID: v2.ID}
	m4, err := w.Auth.Grant(policy.GrantRequest{Network: "test", Peer: v2.ID, Role: schema.RoleVM, Orgs: []string{testOrg},
		NotBefore: tw0.Add(-time.Hour), Expires: tw0.Add(time.Hour)}, tw0.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	v4.M = m4
	// vm5 of C1: a membership this replica has never seen.
	v5 := &testPeer{Priv: v1.Priv, ID: v1.ID}
	if v5.M, err = w.Auth.Grant(policy.GrantRequest{Network: "test", Peer: v1.ID, Role: schema.RoleVM, Orgs: []string{testOrg},
		NotBefore: tw0.Add(-time.Hour), Expires: tw0.Add(time.Hour * 24)}, tw0.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	// vm6 of C1: revoked from tw0+30m.
	v6 := &testPeer{Priv: v3.Priv, ID: v3.ID}
	if v6.M, err = w.Auth.Grant(policy.GrantRequest{Network: "test", Peer: v3.ID, Role: schema.RoleVM, Orgs: []string{testOrg},
		NotBefore: tw0.Add(-time.Hour), Expires: tw0.Add(time.Hour * 24)}, tw0.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	rev, err := w.Auth.Revoke(revokeRequest(v6, tw0.Add(30*time.Minute)), tw0)
	if err != nil {
		t.Fatal(err)
	}

	// The state both the sender and the receiver hold.
	logRec := mustRecord(t, schema.LogID("e1", 1), schema.ResultLog{Execution: "e1", Seq: 1, At: tw0, Event: "item-response"})
	base := []struct {
		key   string
		value []byte
	}{
		{MembershipKey(c.M.Serial), c.M.Encode()},
		{MembershipKey(v1.M.Serial), v1.M.Encode()},
		{MembershipKey(v2.M.Serial), v2.M.Encode()},
		{MembershipKey(v4.M.Serial), v4.M.Encode()},
		{MembershipKey(v6.M.Serial), v6.M.Encode()},
		{RevocationKey(rev), rev.Encode()},
		{"/deliveries/d1", c.Sign(t, delivery(t, "Maths"), 0)},
		{"/executions/e1", v1.Sign(t, execution(t, "e1", v1.ID, "active"), 0)},
		{"/executions/e1", v1.Sign(t, execution(t, "e1", v1.ID, "finished"), time.Hour)},
		{"/executions/e3", v1.Sign(t, execution(t, "e3", v1.ID, "active"), 0)},
		{"/results/e1", v1.Sign(t, result(t, "e1", "7.5"), time.Hour)},
		{logRec.Key(), v1.Sign(t, logRec, time.Minute)},
	}
	ss, rs := openStore(t, t.TempDir()), openStore(t, t.TempDir())
	sender, receiver := verifiedReplica(t, ss, w, nil), verifiedReplica(t, rs, w, nil)
	defer func() {
		if err := errors.Join(sender.Close(), receiver.Close(), ss.Close(), rs.Close()); err != nil {
			t.Error(err)
		}
	}()
	for _, b := range base {
		mustPut(t, sender, b.key, b.value)
		mustPut(t, receiver, b.key, b.value)
	}
	for _, r := range []*Replica{sender, receiver} {
		if st := r.Stats(ctx); len(st.RecordsRefused) != 0 || st.RecordsParked != 0 {
			t.Fatalf("the base state is refused: %v, %d parked", st.RecordsRefused, st.RecordsParked)
		}
	}

	forged := c.Sign(t, delivery(t, "Physics"), 2*time.Hour)
	forged[len(forged)-70] ^= 1
	replayed := func() []byte { // vm1 signs e1 again with an old sequence number
		seq := v1.Seq
		v1.Seq = 1
		defer func() { v1.Seq = seq }()
		return v1.Sign(t, execution(t, "e1", v1.ID, "finished"), 2*time.Hour)
	}
	e1Moved := execution(t, "e1", v1.ID, "finished")
	e1Moved.Body = bytes.Replace(e1Moved.Body, []byte(`"d1"`), []byte(`"d2"`), 1)
	cases := []struct {
		rule, key string
		value     []byte
		want      string // "" accepted
	}{
		{"valid delivery by central", "/deliveries/d2", c.Sign(t, mustRecord(t, "d2", deliveryBody(t, "Chemistry")), time.Hour), ""},
		{"valid execution by its vm", "/executions/e4", v1.Sign(t, execution(t, "e4", v1.ID, "active"), time.Hour), ""},
		{"valid deletion by central", DeletionKey("/deliveries/d1"), c.Sign(t, delivery(t, "Maths"), 2*time.Hour), ""},
		{"valid result log", schema.Key(schema.KindResultLogs, schema.LogID("e1", 2)),
			v1.Sign(t, mustRecord(t, schema.LogID("e1", 2), schema.ResultLog{Execution: "e1", Seq: 2, At: tw0, Event: "item-response"}), time.Hour), ""},
		{"bad signature", "/deliveries/d1", forged, ReasonBadSignature},
		{"not a signed record", "/deliveries/d1", []byte("hello"), ReasonMalformed},
		{"no membership here", "/executions/e5", v5.Sign(t, execution(t, "e5", v1.ID, "active"), 0), ReasonUnknownMembership},
		{"membership revoked", "/executions/e6", v6.Sign(t, execution(t, "e6", v3.ID, "active"), time.Hour), ReasonRevoked},
		{"membership expired", "/executions/e7", v4.Sign(t, execution(t, "e7", v2.ID, "active"), 2*time.Hour), ReasonExpired},
		{"signed in the future", "/executions/e8", v1.Sign(t, execution(t, "e8", v1.ID, "active"), 5*time.Hour), ReasonFuture},
		// Its membership is never stored here (see the last cases), so
		// what it signs waits for it.
		{"vm of another organisation", "/executions/e9", v3.Sign(t, execution(t, "e9", v3.ID, "active"), 0), ReasonUnknownMembership},
		{"vm writes a central kind", "/deliveries/d1", v1.Sign(t, delivery(t, "VM's"), time.Hour), ReasonRoleMayNotWrite},
		{"vm writes another vm's result", "/results/e1", v2.Sign(t, result(t, "e1", "10"), time.Hour), ReasonNotOwner},
		{"vm takes over another vm's execution", "/executions/e1", v2.Sign(t, execution(t, "e1", v2.ID, "finished"), 2*time.Hour), ReasonNotOwner},
		{"record at another key", "/deliveries/d9", c.Sign(t, delivery(t, "Maths"), time.Hour), ReasonMisplaced},
		{"replay", "/executions/e1", replayed(), ReasonReplay},
		{"append-only", "/results/e1", v1.Sign(t, result(t, "e1", "9.5"), 2*time.Hour), ReasonAppendOnly},
		{"result of an unfinished execution", "/results/e3", v1.Sign(t, result(t, "e3", "5"), time.Hour), ReasonNotFinished},
		{"result log before its execution", schema.Key(schema.KindResultLogs, schema.LogID("e9", 1)),
			v1.Sign(t, mustRecord(t, schema.LogID("e9", 1), schema.ResultLog{Execution: "e9", Seq: 1, At: tw0, Event: "item-response"}), time.Hour), ReasonUnknownExecution},
		{"reactivation in place", "/executions/e1", v1.Sign(t, execution(t, "e1", v1.ID, "active"), 2*time.Hour), ReasonReactivateInPlace},
		{"immutable field", "/executions/e1", v1.Sign(t, e1Moved, 2*time.Hour), ReasonInvalid},
		{"deletion by a vm", DeletionKey("/executions/e3"), v1.Sign(t, execution(t, "e3", v1.ID, "active"), 2*time.Hour), ReasonRoleMayNotWrite},
		{"deletion of exam evidence", DeletionKey("/results/e1"), c.Sign(t, result(t, "e1", "7.5"), 2*time.Hour), ReasonRoleMayNotWrite},
		{"deletion stored for another record", DeletionKey("/deliveries/d2"), c.Sign(t, delivery(t, "Maths"), 2*time.Hour), ReasonMisplaced},
		{"reserved key", "/_other/x", c.M.Encode(), ReasonReservedKey},
		{"membership at another serial's key", MembershipKey(v2.M.Serial), c.M.Encode(), ReasonMisplaced},
		{"membership of another organisation", MembershipKey(v3.M.Serial), v3.M.Encode(), ReasonNotMember},
		{"valid membership", MembershipKey(v5.M.Serial), v5.M.Encode(), ""},
	}
	seen := map[string]bool{} // refusals of earlier cases, by key and block
	for _, tc := range cases {
		t.Run(tc.rule, func(t *testing.T) {
			sent := sender.Check(ctx, tc.key, tc.value)
			var v *policy.Verdict
			switch {
			case tc.want == "" && sent != nil:
				t.Fatalf("sender refuses a valid element: %v", sent)
			case tc.want != "" && !errors.As(sent, &v):
				t.Fatalf("sender: %v; want a verdict %s", sent, tc.want)
			case tc.want != "" && v.Reason != tc.want:
				t.Fatalf("sender: reason %s (%v); want %s", v.Reason, sent, tc.want)
			}
			mustPut(t, receiver, tc.key, tc.value)
			refs, err := receiver.Refusals(ctx, 0)
			if err != nil {
				t.Fatal(err)
			}
			var got []Refusal
			for _, r := range refs {
				if r.Key == tc.key && !seen[r.Key+" "+r.Block] {
					got = append(got, r)
					seen[r.Key+" "+r.Block] = true
				}
			}
			accepted := bytes.Equal(mustGetOrNil(t, receiver, tc.key), tc.value)
			switch {
			case tc.want == "" && (len(got) != 0 || !accepted):
				t.Fatalf("receiver refuses a valid element: %+v", got)
			case tc.want != "" && (len(got) != 1 || accepted):
				t.Fatalf("receiver: %+v, accepted %v; want one refusal %s", got, accepted, tc.want)
			case tc.want != "" && got[0].Reason != tc.want:
				t.Fatalf("receiver: reason %s (%s); want %s", got[0].Reason, got[0].Error, tc.want)
			}
			if tc.want != "" && got[0].Parked != v.Parked {
				t.Fatalf("parked: receiver %v, sender %v", got[0].Parked, v.Parked)
			}
			if tc.want == "" {
				// What the receiver accepted, the sender holds too.
				mustPut(t, sender, tc.key, tc.value)
			}
		})
	}
	// A reserved key is refused with a sentinel, not by its text.
	if err := sender.Check(ctx, "/_other/x", c.M.Encode()); !errors.Is(err, policy.ErrReservedKey) {
		t.Fatalf("reserved key: %v", err)
	}
}

func deliveryBody(t testing.TB, label string) schema.Body {
	b, err := delivery(t, label).DecodeBody()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustGetOrNil(t *testing.T, r *Replica, key string) []byte {
	t.Helper()
	v, err := r.Get(context.Background(), key)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return v
}
