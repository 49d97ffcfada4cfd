package policy_test

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/examnode/examnode/policy"
	"github.com/examnode/examnode/schema"
)

// mutations returns enc and a few damaged copies of it, as fuzz seeds.
func mutations(enc []byte) [][]byte {
	out := [][]byte{enc, nil, enc[:len(enc)/2], enc[:len(enc)-1], append(bytes.Clone(enc), 0)}
	for _, i := range []int{0, 5, 7, len(enc) / 2, len(enc) - 65, len(enc) - 1} {
		if i >= 0 && i < len(enc) {
			b := bytes.Clone(enc)
			b[i] ^= 0x41
			out = append(out, b)
		}
	}
	return out
}

func FuzzDecodeMembership(f *testing.F) {
	w := newWorld(f)
	for _, m := range []policy.Membership{w.mVM1, w.mCentral, w.mArch} {
		for _, b := range mutations(m.Encode()) {
			f.Add(b)
		}
	}
	f.Add(w.revoke(f, w.mVM1, w.mVM1.Serial, t0).Encode())
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := policy.DecodeMembership(data)
		if err != nil {
			return
		}
		enc := m.Encode()
		if !bytes.Equal(enc, data) {
			t.Fatalf("DecodeMembership accepted %x, which re-encodes to %x", data, enc)
		}
		m2, err := policy.DecodeMembership(enc)
		if err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip changed the membership: %+v, %+v, %v", m, m2, err)
		}
		_ = policy.Verify(m, w.trust, t0)
		_ = m.Describe()
		if p, err := policy.ParseMembership(m.String()); err != nil || !reflect.DeepEqual(p, m) {
			t.Fatalf("ParseMembership(String()) = %+v, %v", p, err)
		}
	})
}

func FuzzDecodeRevocation(f *testing.F) {
	w := newWorld(f)
	for _, r := range []policy.Revocation{
		w.revoke(f, w.mVM1, w.mVM1.Serial, t0),
		w.revoke(f, w.mVM2, policy.Serial{}, t0.Add(-year)),
	} {
		for _, b := range mutations(r.Encode()) {
			f.Add(b)
		}
	}
	f.Add(w.mVM1.Encode())
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := policy.DecodeRevocation(data)
		if err != nil {
			return
		}
		enc := r.Encode()
		if !bytes.Equal(enc, data) {
			t.Fatalf("DecodeRevocation accepted %x, which re-encodes to %x", data, enc)
		}
		r2, err := policy.DecodeRevocation(enc)
		if err != nil || !reflect.DeepEqual(r, r2) {
			t.Fatalf("round trip changed the revocation: %+v, %+v, %v", r, r2, err)
		}
		_ = policy.VerifyRevocation(r, w.trust)
		_, _ = policy.NewRevocationSet(w.trust, r)
	})
}

func FuzzDecodeSigned(f *testing.F) {
	w := newWorld(f)
	for i, rec := range []schema.Record{
		execution(f, orgA, "e1", w.vm1.id, schema.ExecutionActive),
		resultLog(f, orgA, "e1", 1),
	} {
		b, err := schema.Encode(rec)
		if err != nil {
			f.Fatal(err)
		}
		sr, err := policy.Sign(w.vm1.priv, w.mVM1, b, uint64(i+1), t0)
		if err != nil {
			f.Fatal(err)
		}
		for _, b := range mutations(policy.EncodeSigned(sr)) {
			f.Add(b)
		}
	}
	f.Add(w.mVM1.Encode())
	f.Fuzz(func(t *testing.T, data []byte) {
		sr, err := policy.DecodeSigned(data)
		if err != nil {
			return
		}
		enc := policy.EncodeSigned(sr)
		if !bytes.Equal(enc, data) {
			t.Fatalf("DecodeSigned accepted %x, which re-encodes to %x", data, enc)
		}
		sr2, err := policy.DecodeSigned(enc)
		if err != nil || !reflect.DeepEqual(sr, sr2) {
			t.Fatalf("round trip changed the signed record: %+v, %+v, %v", sr, sr2, err)
		}
		_ = policy.VerifySigned(sr)
		_ = policy.CheckSigned(sr, w.mVM1, policy.RevocationSet{}, w.trust, t0)
		_ = policy.CheckReplay(sr, 5)
	})
}

func FuzzParseAuthorityKey(f *testing.F) {
	a, err := policy.GenerateAuthority()
	if err != nil {
		f.Fatal(err)
	}
	s := a.Public().String()
	for _, seed := range []string{
		s, s + "=", s + "\n", " " + s, s[:len(s)-1], s + "A", s[len("examnode-authority:"):],
		"examnode-authority:", "examnode-authority:" + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"examnode-authority:" + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB", "",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		k, err := policy.ParseAuthorityKey(text)
		if err != nil {
			if !k.IsZero() {
				t.Fatalf("ParseAuthorityKey(%q) failed but returned a key", text)
			}
			return
		}
		if k.String() != text {
			t.Fatalf("ParseAuthorityKey accepted %q, which prints as %q", text, k.String())
		}
	})
}

func FuzzParseMembership(f *testing.F) {
	w := newWorld(f)
	s := w.mVM1.String()
	for _, seed := range []string{s, s + "=", s[:len(s)-3], "examnode-membership:", w.mCentral.String()} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		m, err := policy.ParseMembership(text)
		if err != nil {
			return
		}
		if m.String() != text {
			t.Fatalf("ParseMembership accepted %q, which prints as %q", text, m.String())
		}
	})
}
