package policy_test

import (
	"bytes"
	"crypto/rand"
	"reflect"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/examnode/examnode/policy"
	"github.com/examnode/examnode/schema"
)

func TestSign(t *testing.T) {
	w := newWorld(t)
	rec := encode(t, execution(t, orgA, "e1", w.vm1.id, schema.ExecutionActive))
	secp, _, err := crypto.GenerateSecp256k1Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		priv   crypto.PrivKey
		m      policy.Membership
		record []byte
		seq    uint64
		want   []error
		says   string
	}{
		{name: "valid", priv: w.vm1.priv, m: w.mVM1, record: rec, seq: 1},
		{name: "another peer's membership", priv: w.vm2.priv, m: w.mVM1, record: rec, seq: 1, want: errs(policy.ErrMembershipMismatch), says: "this node is peer " + w.vm2.id},
		{name: "not Ed25519", priv: secp, m: w.mVM1, record: rec, seq: 1, want: errs(policy.ErrInvalid), says: "Ed25519"},
		{name: "no key", priv: nil, m: w.mVM1, record: rec, seq: 1, want: errs(policy.ErrInvalid)},
		{name: "sequence 0", priv: w.vm1.priv, m: w.mVM1, record: rec, seq: 0, want: errs(policy.ErrInvalid), says: "NextSeq"},
		{name: "not canonical", priv: w.vm1.priv, m: w.mVM1, record: append([]byte(" "), rec...), seq: 1, want: errs(policy.ErrInvalid), says: "canonical"},
		{name: "not a record", priv: w.vm1.priv, m: w.mVM1, record: []byte(`{}`), seq: 1, want: errs(policy.ErrInvalid, schema.ErrInvalid)},
		{name: "forbidden property", priv: w.vm1.priv, m: w.mVM1, seq: 1, want: errs(policy.ErrInvalid, schema.ErrForbiddenProperty),
			record: []byte(`{"schema":1,"kind":"test-takers","id":"a","org":"C1","body":{"login":"x","password":"p"}}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sr, err := policy.Sign(tt.priv, tt.m, tt.record, tt.seq, t0)
			wantErr(t, err, tt.want, tt.says)
			if err != nil {
				return
			}
			if sr.Writer != w.vm1.id || sr.Membership != w.mVM1.Serial || sr.Seq != 1 || !sr.At.Equal(t0) || !bytes.Equal(sr.Record, rec) {
				t.Errorf("signed record = %+v", sr)
			}
			if err := policy.VerifySigned(sr); err != nil {
				t.Fatal(err)
			}
			enc := policy.EncodeSigned(sr)
			back, err := policy.DecodeSigned(enc)
			if err != nil || !reflect.DeepEqual(back, sr) {
				t.Fatalf("DecodeSigned(EncodeSigned()) = %+v, %v", back, err)
			}
		})
	}
}

func TestCheckSigned(t *testing.T) {
	w := newWorld(t)
	at := t0.Add(time.Hour)
	sign := func(n node, m policy.Membership, rec schema.Record, at time.Time) policy.SignedRecord {
		sr, err := policy.Sign(n.priv, m, encode(t, rec), 7, at)
		if err != nil {
			t.Fatal(err)
		}
		return sr
	}
	exec := execution(t, orgA, "e1", w.vm1.id, schema.ExecutionActive)
	good := sign(w.vm1, w.mVM1, exec, at)
	revs, err := policy.NewRevocationSet(w.trust, w.revoke(t, w.mVM1, w.mVM1.Serial, t0.Add(2*time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	otherNet := func() policy.Membership {
		m, err := w.auth.Grant(policy.GrantRequest{Network: "test", Peer: w.vm1.id, Role: schema.RoleVM, Orgs: []string{orgA}, Expires: t0.Add(year)}, t0)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}()
	forgedBy := func() policy.SignedRecord {
		// vm2 signs, then claims to be vm1.
		sr := sign(w.vm2, w.mVM2, exec, at)
		sr.Writer, sr.Membership = w.vm1.id, w.mVM1.Serial
		return sr
	}()
	tests := []struct {
		name  string
		sr    policy.SignedRecord
		m     policy.Membership
		now   time.Time
		trust func(policy.Trust) policy.Trust
		want  []error
		says  string
	}{
		{name: "valid", sr: good, m: w.mVM1, now: at},
		{name: "valid long after, membership since expired", sr: good, m: w.mVM1, now: t0.Add(5 * year)},
		{name: "signed before its revocation", sr: good, m: w.mVM1, now: t0.Add(3 * time.Hour)},
		{name: "signed after its revocation", sr: sign(w.vm1, w.mVM1, exec, t0.Add(2*time.Hour)), m: w.mVM1, now: t0.Add(3 * time.Hour), want: errs(policy.ErrRevoked)},
		{name: "signed after the membership expired", sr: sign(w.vm1, w.mVM1, exec, t0.Add(year)), m: w.mVM1, now: t0.Add(year + time.Hour), want: errs(policy.ErrExpired)},
		{name: "signed before the membership started", sr: sign(w.vm1, w.mVM1, exec, t0.Add(-time.Hour)), m: w.mVM1, now: at, want: errs(policy.ErrNotYetValid)},
		{name: "signed in the future", sr: good, m: w.mVM1, now: at.Add(-time.Second), want: errs(policy.ErrFuture), says: "clocks"},
		{name: "signed in the future within skew", sr: good, m: w.mVM1, now: at.Add(-time.Second),
			trust: func(tr policy.Trust) policy.Trust { tr.ClockSkew = time.Minute; return tr }},
		{name: "forged writer", sr: forgedBy, m: w.mVM1, now: at, want: errs(policy.ErrBadSignature), says: "forged"},
		{name: "tampered record", sr: func() policy.SignedRecord {
			sr := good
			sr.Record = encode(t, execution(t, orgA, "e1", w.vm1.id, schema.ExecutionPaused))
			return sr
		}(), m: w.mVM1, now: at, want: errs(policy.ErrBadSignature)},
		{name: "tampered sequence", sr: func() policy.SignedRecord { sr := good; sr.Seq++; return sr }(), m: w.mVM1, now: at, want: errs(policy.ErrBadSignature)},
		{name: "tampered time", sr: func() policy.SignedRecord { sr := good; sr.At = sr.At.Add(-time.Minute); return sr }(), m: w.mVM1, now: at, want: errs(policy.ErrBadSignature)},
		{name: "tampered serial", sr: func() policy.SignedRecord { sr := good; sr.Membership = w.mVM2.Serial; return sr }(), m: w.mVM2, now: at, want: errs(policy.ErrBadSignature)},
		{name: "checked against another membership", sr: good, m: w.mVM2, now: at, want: errs(policy.ErrMembershipMismatch)},
		{name: "checked against another membership of the writer", sr: good, m: otherNet, now: at, want: errs(policy.ErrMembershipMismatch)},
		{name: "membership of another network", sr: sign(w.vm1, otherNet, exec, at), m: otherNet, now: at, want: errs(policy.ErrWrongNetwork)},
		{name: "unknown version", sr: func() policy.SignedRecord { sr := good; sr.Version = 2; return sr }(), m: w.mVM1, now: at, want: errs(policy.ErrUnsupportedVersion)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			trust := w.trust
			if tt.trust != nil {
				trust = tt.trust(trust)
			}
			wantErr(t, policy.CheckSigned(tt.sr, tt.m, revs, trust, tt.now), tt.want, tt.says)
			// For a membership verified already, CheckSignedVerified
			// decides the same.
			wantErr(t, policy.CheckSignedVerified(tt.sr, tt.m, revs, trust, tt.now), tt.want, tt.says)
		})
	}
}

func TestDecodeSignedRefuses(t *testing.T) {
	w := newWorld(t)
	sr, err := policy.Sign(w.vm1.priv, w.mVM1, encode(t, execution(t, orgA, "e1", w.vm1.id, schema.ExecutionActive)), 1, t0)
	if err != nil {
		t.Fatal(err)
	}
	enc := policy.EncodeSigned(sr)
	v2 := bytes.Clone(enc)
	v2[5] = 2
	zeroSeq := sr
	zeroSeq.Seq = 0
	noRecord := sr
	noRecord.Record = nil
	tests := []struct {
		name string
		data []byte
		want []error
		says string
	}{
		{name: "empty", want: errs(policy.ErrMalformed)},
		{name: "trailing", data: append(bytes.Clone(enc), 0), want: errs(policy.ErrMalformed)},
		{name: "membership", data: w.mVM1.Encode(), want: errs(policy.ErrMalformed), says: "this is a membership, not a signed record"},
		{name: "newer version", data: v2, want: errs(policy.ErrUnsupportedVersion), says: "signed record format version 2"},
		{name: "sequence 0", data: policy.EncodeSigned(zeroSeq), want: errs(policy.ErrMalformed)},
		{name: "no record", data: policy.EncodeSigned(noRecord), want: errs(policy.ErrMalformed)},
		{name: "too large", data: make([]byte, policy.MaxSignedSize+1), want: errs(policy.ErrMalformed)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := policy.DecodeSigned(tt.data)
			wantErr(t, err, tt.want, tt.says)
		})
	}
	for i := range enc {
		if _, err := policy.DecodeSigned(enc[:i]); err == nil {
			t.Fatalf("DecodeSigned accepted the first %d of %d bytes", i, len(enc))
		}
	}
}

func TestCheckReplay(t *testing.T) {
	sr := policy.SignedRecord{Writer: "12D3KooW", Seq: 10}
	tests := []struct {
		name     string
		lastSeen uint64
		want     []error
	}{
		{name: "nothing seen", lastSeen: 0},
		{name: "newer", lastSeen: 9},
		{name: "same sequence again", lastSeen: 10, want: errs(policy.ErrReplay)},
		{name: "older record replayed", lastSeen: 11, want: errs(policy.ErrReplay)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantErr(t, policy.CheckReplay(sr, tt.lastSeen), tt.want)
		})
	}
}

func TestNextSeq(t *testing.T) {
	ns := uint64(t0.UnixNano())
	tests := []struct {
		name string
		last uint64
		now  time.Time
		want uint64
	}{
		{name: "first write takes the clock", last: 0, now: t0, want: ns},
		{name: "counter ahead of the clock", last: ns + 5, now: t0, want: ns + 6},
		{name: "clock ahead of the counter", last: 3, now: t0, want: ns},
		{name: "clock before 1970", last: 0, now: time.Unix(-5, 0), want: 1},
		{name: "same nanosecond twice", last: ns, now: t0, want: ns + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := policy.NextSeq(tt.last, tt.now); got != tt.want {
				t.Errorf("NextSeq = %d; want %d", got, tt.want)
			}
		})
	}
}
