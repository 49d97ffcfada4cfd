package policy_test

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/examnode/examnode/policy"
)

func TestRevoke(t *testing.T) {
	w := newWorld(t)
	tests := []struct {
		name string
		req  policy.RevokeRequest
		want []error
	}{
		{name: "one membership", req: policy.RevokeRequest{Network: network, Peer: w.vm1.id, Serial: w.mVM1.Serial, Reason: "decommissioned"}},
		{name: "every membership of a peer, from the past", req: policy.RevokeRequest{Network: network, Peer: w.vm1.id, From: t0.Add(-time.Hour)}},
		{name: "bad network", req: policy.RevokeRequest{Network: "", Peer: w.vm1.id}, want: errs(policy.ErrInvalid)},
		{name: "bad peer", req: policy.RevokeRequest{Network: network, Peer: "nobody"}, want: errs(policy.ErrInvalid)},
		{name: "control character in reason", req: policy.RevokeRequest{Network: network, Peer: w.vm1.id, Reason: "a\x00b"}, want: errs(policy.ErrInvalid)},
		{name: "reason too long", req: policy.RevokeRequest{Network: network, Peer: w.vm1.id, Reason: strings.Repeat("x", 513)}, want: errs(policy.ErrInvalid)},
		{name: "reason not UTF-8", req: policy.RevokeRequest{Network: network, Peer: w.vm1.id, Reason: "\xff"}, want: errs(policy.ErrInvalid)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := w.auth.Revoke(tt.req, t0)
			wantErr(t, err, tt.want)
			if err != nil {
				return
			}
			if want := tt.req.From; !want.IsZero() && !r.RevokedAt.Equal(want) || want.IsZero() && !r.RevokedAt.Equal(t0) {
				t.Errorf("RevokedAt = %v", r.RevokedAt)
			}
			if err := policy.VerifyRevocation(r, w.trust); err != nil {
				t.Fatal(err)
			}
			back, err := policy.DecodeRevocation(r.Encode())
			if err != nil || !reflect.DeepEqual(back, r) {
				t.Fatalf("DecodeRevocation(Encode()) = %+v, %v", back, err)
			}
			parsed, err := policy.ParseRevocation(r.String())
			if err != nil || !reflect.DeepEqual(parsed, r) || !strings.HasPrefix(r.String(), "examnode-revocation:") {
				t.Fatalf("ParseRevocation(String()) = %+v, %v", parsed, err)
			}
		})
	}
}

func TestVerifyRevocation(t *testing.T) {
	w := newWorld(t)
	other, _ := policy.GenerateAuthority()
	forged, _ := other.Revoke(policy.RevokeRequest{Network: network, Peer: w.central.id, Serial: w.mCentral.Serial}, t0)
	good := w.revoke(t, w.mVM1, w.mVM1.Serial, t0)
	tests := []struct {
		name  string
		r     func() policy.Revocation
		trust func(policy.Trust) policy.Trust
		want  []error
	}{
		{name: "valid"},
		{name: "by another authority", r: func() policy.Revocation { return forged }, want: errs(policy.ErrBadSignature)},
		{name: "tampered serial", r: func() policy.Revocation { r := good; r.Serial = w.mCentral.Serial; return r }, want: errs(policy.ErrBadSignature)},
		{name: "tampered time", r: func() policy.Revocation { r := good; r.RevokedAt = r.RevokedAt.Add(year); return r }, want: errs(policy.ErrBadSignature)},
		{name: "tampered reason", r: func() policy.Revocation { r := good; r.Reason = "nothing"; return r }, want: errs(policy.ErrBadSignature)},
		{name: "wrong network", trust: func(tr policy.Trust) policy.Trust { tr.Network = "test"; return tr }, want: errs(policy.ErrWrongNetwork)},
		{name: "unknown version", r: func() policy.Revocation { r := good; r.Version = 9; return r }, want: errs(policy.ErrUnsupportedVersion)},
		{name: "no authority", trust: func(tr policy.Trust) policy.Trust { tr.Authority = policy.AuthorityKey{}; return tr }, want: errs(policy.ErrBadAuthorityKey)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := good
			if tt.r != nil {
				r = tt.r()
			}
			trust := w.trust
			if tt.trust != nil {
				trust = tt.trust(trust)
			}
			wantErr(t, policy.VerifyRevocation(r, trust), tt.want)
		})
	}
}

func TestDecodeRevocationRefuses(t *testing.T) {
	w := newWorld(t)
	enc := w.revoke(t, w.mVM1, w.mVM1.Serial, t0).Encode()
	v2 := bytes.Clone(enc)
	v2[5] = 2
	tests := []struct {
		name string
		data []byte
		want []error
		says string
	}{
		{name: "empty", want: errs(policy.ErrMalformed)},
		{name: "trailing", data: append(bytes.Clone(enc), 1), want: errs(policy.ErrMalformed)},
		{name: "membership", data: w.mVM1.Encode(), want: errs(policy.ErrMalformed), says: "this is a membership, not a revocation"},
		{name: "newer version", data: v2, want: errs(policy.ErrUnsupportedVersion), says: "revocation format version 2 is not supported by this node (it reads version 1)"},
		{name: "too large", data: make([]byte, policy.MaxRevocationSize+1), want: errs(policy.ErrMalformed)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := policy.DecodeRevocation(tt.data)
			wantErr(t, err, tt.want, tt.says)
		})
	}
	for i := range enc {
		if _, err := policy.DecodeRevocation(enc[:i]); err == nil {
			t.Fatalf("DecodeRevocation accepted the first %d of %d bytes", i, len(enc))
		}
	}
}

func TestRevocationSet(t *testing.T) {
	w := newWorld(t)
	other, _ := policy.GenerateAuthority()
	forged, _ := other.Revoke(policy.RevokeRequest{Network: network, Peer: w.central.id, Serial: w.mCentral.Serial}, t0)
	late := w.revoke(t, w.mVM1, w.mVM1.Serial, t0.Add(2*time.Hour))
	early := w.revoke(t, w.mVM1, w.mVM1.Serial, t0.Add(time.Hour))
	allVM2 := w.revoke(t, w.mVM2, policy.Serial{}, t0.Add(3*time.Hour))

	var empty policy.RevocationSet
	if empty.Len() != 0 || len(empty.Revocations()) != 0 {
		t.Fatal("the zero set is not empty")
	}
	if _, ok := empty.Lookup(w.mVM1); ok {
		t.Fatal("the zero set revokes")
	}
	s1, err := empty.With(late, w.trust)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := s1.With(early, w.trust)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := s1.Lookup(w.mVM1); !r.RevokedAt.Equal(late.RevokedAt) {
		t.Error("With changed the set it was called on")
	}
	if r, _ := s2.Lookup(w.mVM1); !r.RevokedAt.Equal(early.RevokedAt) {
		t.Errorf("the set keeps %v; want the earlier revocation", r.RevokedAt)
	}
	s3, err := s2.With(late, w.trust)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := s3.Lookup(w.mVM1); !r.RevokedAt.Equal(early.RevokedAt) || s3.Len() != 1 {
		t.Errorf("adding the later revocation again replaced the earlier: %v, len %d", r.RevokedAt, s3.Len())
	}
	if s4, err := s3.With(forged, w.trust); err == nil || s4.Len() != s3.Len() {
		t.Errorf("With accepted a forged revocation: %v", err)
	}
	if _, err := policy.NewRevocationSet(w.trust, early, forged); err == nil {
		t.Error("NewRevocationSet accepted a forged revocation")
	}
	all, err := policy.NewRevocationSet(w.trust, allVM2, late, early)
	if err != nil {
		t.Fatal(err)
	}
	if all.Len() != 2 {
		t.Errorf("Len() = %d", all.Len())
	}
	list := all.Revocations()
	if len(list) != 2 || !list[0].RevokedAt.Equal(early.RevokedAt) || list[1].Peer != w.vm2.id {
		t.Errorf("Revocations() = %+v", list)
	}
	second := w.grant(t, w.vm2.id, "archive", false, orgA)
	for _, m := range []policy.Membership{w.mVM2, second} {
		if _, ok := all.Lookup(m); !ok {
			t.Errorf("a zero-serial revocation does not cover membership %s of the peer", m.Serial)
		}
	}
	if _, ok := all.Lookup(w.mVM3); ok {
		t.Error("revocations of others cover vm3")
	}
	// A membership revoked both by serial and with all of its peer's:
	// the earlier counts, whichever kind it is.
	bothEarlyPeer, _ := all.With(w.revoke(t, w.mVM1, policy.Serial{}, t0), w.trust)
	if r, ok := bothEarlyPeer.Lookup(w.mVM1); !ok || !r.Serial.IsZero() {
		t.Errorf("Lookup = %+v, %v; want the earlier all-memberships revocation", r, ok)
	}
	bothEarlySerial, _ := all.With(w.revoke(t, w.mVM1, policy.Serial{}, t0.Add(year)), w.trust)
	if r, ok := bothEarlySerial.Lookup(w.mVM1); !ok || r.Serial != w.mVM1.Serial {
		t.Errorf("Lookup = %+v, %v; want the earlier revocation of the serial", r, ok)
	}
}

func TestCheck(t *testing.T) {
	w := newWorld(t)
	revs, err := policy.NewRevocationSet(w.trust,
		w.revoke(t, w.mVM1, w.mVM1.Serial, t0.Add(time.Hour)),
		w.revoke(t, w.mVM2, policy.Serial{}, t0.Add(2*time.Hour)),
	)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		m    policy.Membership
		now  time.Time
		want []error
		says []string
	}{
		{name: "valid, not revoked", m: w.mVM3, now: t0},
		{name: "before its revocation", m: w.mVM1, now: t0.Add(time.Hour - 1)},
		{name: "revoked", m: w.mVM1, now: t0.Add(time.Hour), want: errs(policy.ErrRevoked),
			says: []string{"revoked from 2026-06-01T09:00:00Z (machine stolen)", "examnode grant --peer " + w.vm1.id}},
		{name: "every membership of the peer revoked", m: w.mVM2, now: t0.Add(3 * time.Hour), want: errs(policy.ErrRevoked)},
		{name: "expired", m: w.mVM3, now: t0.Add(year), want: errs(policy.ErrExpired)},
		{name: "expired and revoked says expired", m: w.mVM1, now: t0.Add(year), want: errs(policy.ErrExpired)},
		{name: "tampered", m: func() policy.Membership { m := w.mVM3; m.Orgs = []string{orgA}; return m }(), now: t0, want: errs(policy.ErrBadSignature)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantErr(t, policy.Check(tt.m, revs, w.trust, tt.now), tt.want, tt.says...)
		})
	}
}
