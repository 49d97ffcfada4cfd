package policy_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/pem"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/examnode/examnode/policy"
	"github.com/examnode/examnode/schema"
)

func TestGrant(t *testing.T) {
	w := newWorld(t)
	good := func() policy.GrantRequest {
		return policy.GrantRequest{Network: network, Peer: w.vm1.id, Role: schema.RoleVM, Orgs: []string{orgA}, Expires: t0.Add(year)}
	}
	pid, _ := peer.Decode(w.vm1.id)
	cidForm := peer.ToCid(pid).String()
	tests := []struct {
		name  string
		edit  func(*policy.GrantRequest)
		want  []error
		says  string
		check func(*testing.T, policy.Membership)
	}{
		{name: "vm of one organisation", check: func(t *testing.T, m policy.Membership) {
			if m.Role != schema.RoleVM || !slices.Equal(m.Orgs, []string{orgA}) || m.AllOrgs || m.Version != policy.MembershipVersion {
				t.Errorf("membership = %+v", m)
			}
			if !m.NotBefore.Equal(t0) || !m.IssuedAt.Equal(t0) || !m.Expires.Equal(t0.Add(year)) || m.Serial.IsZero() {
				t.Errorf("times or serial wrong: %+v", m)
			}
		}},
		{name: "central of all organisations", edit: func(r *policy.GrantRequest) {
			r.Peer, r.Role, r.Orgs, r.AllOrgs = w.central.id, schema.RoleCentral, nil, true
		}, check: func(t *testing.T, m policy.Membership) {
			if !m.AllOrgs || len(m.Orgs) != 0 || !m.Covers("anything") {
				t.Errorf("membership = %+v", m)
			}
		}},
		{name: "archive orgs sorted and deduplicated", edit: func(r *policy.GrantRequest) {
			r.Role, r.Orgs = schema.RoleArchive, []string{orgC, orgA, orgC}
		}, check: func(t *testing.T, m policy.Membership) {
			if !slices.Equal(m.Orgs, []string{orgA, orgC}) {
				t.Errorf("orgs = %v", m.Orgs)
			}
		}},
		{name: "times truncated to the second, in UTC", edit: func(r *policy.GrantRequest) {
			r.NotBefore = t0.Add(1500 * time.Millisecond).In(time.FixedZone("X", 3600))
		}, check: func(t *testing.T, m policy.Membership) {
			if !m.NotBefore.Equal(t0.Add(time.Second)) || m.NotBefore.Location() != time.UTC {
				t.Errorf("not before = %v", m.NotBefore)
			}
		}},
		{name: "bad network", edit: func(r *policy.GrantRequest) { r.Network = "exam node" }, want: errs(policy.ErrInvalid), says: "network"},
		{name: "no network", edit: func(r *policy.GrantRequest) { r.Network = "" }, want: errs(policy.ErrInvalid)},
		{name: "garbage peer", edit: func(r *policy.GrantRequest) { r.Peer = "not-a-peer" }, want: errs(policy.ErrInvalid), says: "peer"},
		{name: "peer in CID form", edit: func(r *policy.GrantRequest) { r.Peer = cidForm }, want: errs(policy.ErrInvalid), says: "write it as " + w.vm1.id},
		{name: "peer without embedded key", edit: func(r *policy.GrantRequest) {
			r.Peer = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"
		}, want: errs(policy.ErrInvalid), says: "Ed25519"},
		{name: "unknown role", edit: func(r *policy.GrantRequest) { r.Role = "proctor" }, want: errs(policy.ErrInvalid, schema.ErrUnknownRole)},
		{name: "vm in two organisations", edit: func(r *policy.GrantRequest) { r.Orgs = []string{orgA, orgB} }, want: errs(policy.ErrInvalid), says: "exactly one"},
		{name: "vm of all organisations", edit: func(r *policy.GrantRequest) { r.Orgs, r.AllOrgs = nil, true }, want: errs(policy.ErrInvalid), says: "own organisation"},
		{name: "all organisations and a list", edit: func(r *policy.GrantRequest) {
			r.Role, r.AllOrgs = schema.RoleCentral, true
		}, want: errs(policy.ErrInvalid), says: "not both"},
		{name: "no organisation", edit: func(r *policy.GrantRequest) { r.Role, r.Orgs = schema.RoleArchive, nil }, want: errs(policy.ErrInvalid)},
		{name: "bad organisation ID", edit: func(r *policy.GrantRequest) { r.Orgs = []string{"C 1"} }, want: errs(policy.ErrInvalid, schema.ErrInvalid)},
		{name: "no expiry", edit: func(r *policy.GrantRequest) { r.Expires = time.Time{} }, want: errs(policy.ErrInvalid), says: "expiry"},
		{name: "expires before it starts", edit: func(r *policy.GrantRequest) { r.Expires = t0.Add(-time.Hour) }, want: errs(policy.ErrInvalid), says: "before it starts"},
		{name: "empty window", edit: func(r *policy.GrantRequest) { r.Expires = t0 }, want: errs(policy.ErrInvalid)},
		{name: "expiry beyond the encoding", edit: func(r *policy.GrantRequest) { r.Expires = time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC) }, want: errs(policy.ErrInvalid), says: "2262"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := good()
			if tt.edit != nil {
				tt.edit(&req)
			}
			m, err := w.auth.Grant(req, t0)
			wantErr(t, err, tt.want, tt.says)
			if err != nil {
				return
			}
			if err := policy.Verify(m, w.trust, m.NotBefore); err != nil {
				t.Errorf("Verify of a fresh grant: %v", err)
			}
			if tt.check != nil {
				tt.check(t, m)
			}
		})
	}
}

func TestGrantSerialsAreUnique(t *testing.T) {
	w := newWorld(t)
	seen := map[policy.Serial]bool{}
	for range 100 {
		m := w.grant(t, w.vm1.id, schema.RoleVM, false, orgA)
		if seen[m.Serial] {
			t.Fatalf("serial %s issued twice", m.Serial)
		}
		seen[m.Serial] = true
	}
}

func TestVerify(t *testing.T) {
	w := newWorld(t)
	other, err := policy.GenerateAuthority()
	if err != nil {
		t.Fatal(err)
	}
	forged, _ := other.Grant(policy.GrantRequest{Network: network, Peer: w.vm1.id, Role: schema.RoleCentral, AllOrgs: true, Expires: t0.Add(year)}, t0)
	tests := []struct {
		name  string
		m     func() policy.Membership
		trust func(policy.Trust) policy.Trust
		now   time.Time
		want  []error
		says  []string
	}{
		{name: "valid at its start", now: t0},
		{name: "valid just before expiry", now: t0.Add(year - time.Nanosecond)},
		{name: "expired at its expiry", now: t0.Add(year), want: errs(policy.ErrExpired),
			says: []string{"expired at 2027-06-01T08:00:00Z", "examnode grant --peer " + w.vm1.id + " --org C1 --role vm"}},
		{name: "not yet valid", now: t0.Add(-time.Second), want: errs(policy.ErrNotYetValid), says: []string{"valid from 2026-06-01T08:00:00Z", "clock"}},
		{name: "wrong network", now: t0, trust: func(tr policy.Trust) policy.Trust { tr.Network = "other"; return tr },
			want: errs(policy.ErrWrongNetwork), says: []string{`network "examnode"`, `network "other"`}},
		{name: "signed by another authority", now: t0, m: func() policy.Membership { return forged },
			want: errs(policy.ErrBadSignature), says: []string{w.trust.Authority.String()}},
		{name: "trusting another authority", now: t0, trust: func(tr policy.Trust) policy.Trust { tr.Authority = other.Public(); return tr },
			want: errs(policy.ErrBadSignature)},
		{name: "no authority configured", now: t0, trust: func(tr policy.Trust) policy.Trust { tr.Authority = policy.AuthorityKey{}; return tr },
			want: errs(policy.ErrBadAuthorityKey)},
		{name: "negative clock skew", now: t0, trust: func(tr policy.Trust) policy.Trust { tr.ClockSkew = -time.Second; return tr },
			want: errs(policy.ErrInvalid)},
		{name: "tampered role", now: t0, m: func() policy.Membership { m := w.mVM1; m.Role = schema.RoleCentral; return m }, want: errs(policy.ErrBadSignature)},
		{name: "tampered organisation", now: t0, m: func() policy.Membership { m := w.mVM1; m.Orgs = []string{orgB}; return m }, want: errs(policy.ErrBadSignature)},
		{name: "tampered to all organisations", now: t0, m: func() policy.Membership {
			m := w.mArch
			m.Orgs, m.AllOrgs = []string{}, true
			return m
		}, want: errs(policy.ErrBadSignature)},
		{name: "tampered expiry", now: t0.Add(2 * year), m: func() policy.Membership { m := w.mVM1; m.Expires = t0.Add(3 * year); return m }, want: errs(policy.ErrBadSignature)},
		{name: "tampered peer", now: t0, m: func() policy.Membership { m := w.mVM1; m.Peer = w.vm2.id; return m }, want: errs(policy.ErrBadSignature)},
		{name: "tampered serial", now: t0, m: func() policy.Membership { m := w.mVM1; m.Serial[0] ^= 1; return m }, want: errs(policy.ErrBadSignature)},
		{name: "flipped signature bit", now: t0, m: func() policy.Membership {
			m := w.mVM1
			m.Sig = bytes.Clone(m.Sig)
			m.Sig[10] ^= 1
			return m
		}, want: errs(policy.ErrBadSignature)},
		{name: "no signature", now: t0, m: func() policy.Membership { m := w.mVM1; m.Sig = nil; return m }, want: errs(policy.ErrBadSignature)},
		{name: "unknown version", now: t0, m: func() policy.Membership { m := w.mVM1; m.Version = 2; return m },
			want: errs(policy.ErrUnsupportedVersion), says: []string{"version 2", "version 1", "upgrade"}},
		{name: "broken rule", now: t0, m: func() policy.Membership { m := w.mVM1; m.Orgs = []string{orgA, orgB}; return m }, want: errs(policy.ErrInvalid)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := w.mVM1
			if tt.m != nil {
				m = tt.m()
			}
			trust := w.trust
			if tt.trust != nil {
				trust = tt.trust(trust)
			}
			wantErr(t, policy.Verify(m, trust, tt.now), tt.want, tt.says...)
		})
	}
}

func TestMembershipEncoding(t *testing.T) {
	w := newWorld(t)
	for _, m := range []policy.Membership{w.mVM1, w.mCentral, w.mArch} {
		enc := m.Encode()
		got, err := policy.DecodeMembership(enc)
		if err != nil {
			t.Fatalf("DecodeMembership(Encode()): %v", err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("round trip changed the membership:\n%+v\n%+v", got, m)
		}
		if !bytes.Equal(got.Encode(), enc) {
			t.Error("re-encoding differs")
		}
		s := m.String()
		if !strings.HasPrefix(s, "examnode-membership:") {
			t.Errorf("String() = %q", s)
		}
		p, err := policy.ParseMembership(s)
		if err != nil || !reflect.DeepEqual(p, m) {
			t.Errorf("ParseMembership(String()) = %+v, %v", p, err)
		}
		if err := policy.Verify(p, w.trust, t0); err != nil {
			t.Errorf("Verify after parse: %v", err)
		}
	}
}

func TestDecodeMembershipRefuses(t *testing.T) {
	w := newWorld(t)
	enc := w.mArch.Encode()
	rev := w.revoke(t, w.mVM1, w.mVM1.Serial, t0).Encode()
	reencode := func(edit func(*policy.Membership)) []byte {
		m := w.mArch
		m.Orgs = slices.Clone(m.Orgs)
		edit(&m)
		return m.Encode()
	}
	setByte := func(i int, v byte) []byte { b := bytes.Clone(enc); b[i] = v; return b }
	tests := []struct {
		name string
		data []byte
		want []error
		says []string
	}{
		{name: "empty", data: nil, want: errs(policy.ErrMalformed), says: []string{"too short"}},
		{name: "signature only", data: enc[len(enc)-64:], want: errs(policy.ErrMalformed)},
		{name: "truncated", data: enc[:len(enc)-1], want: errs(policy.ErrMalformed)},
		{name: "trailing byte", data: append(bytes.Clone(enc), 0), want: errs(policy.ErrMalformed)},
		{name: "a revocation", data: rev, want: errs(policy.ErrMalformed), says: []string{"this is a revocation, not a membership"}},
		{name: "bad magic", data: setByte(0, 'X'), want: errs(policy.ErrMalformed), says: []string{`"EXMB"`}},
		{name: "newer version", data: setByte(5, 2), want: errs(policy.ErrUnsupportedVersion), says: []string{"version 2", "version 1", "upgrade examnode on this node"}},
		{name: "older version", data: setByte(5, 0), want: errs(policy.ErrUnsupportedVersion), says: []string{"version 0", "version 1"}},
		{name: "unsorted organisations", data: reencode(func(m *policy.Membership) { m.Orgs = []string{orgC, orgA} }), want: errs(policy.ErrMalformed, policy.ErrInvalid), says: []string{"sorted"}},
		{name: "duplicate organisations", data: reencode(func(m *policy.Membership) { m.Orgs = []string{orgA, orgA} }), want: errs(policy.ErrMalformed)},
		{name: "flag and list", data: reencode(func(m *policy.Membership) { m.AllOrgs = true }), want: errs(policy.ErrMalformed)},
		{name: "unknown role", data: reencode(func(m *policy.Membership) { m.Role = "root" }), want: errs(policy.ErrMalformed)},
		{name: "zero serial", data: reencode(func(m *policy.Membership) { m.Serial = policy.Serial{} }), want: errs(policy.ErrMalformed)},
		{name: "inverted window", data: reencode(func(m *policy.Membership) { m.Expires = m.NotBefore }), want: errs(policy.ErrMalformed)},
		{name: "bad flag byte", data: func() []byte {
			// magic 4, version 2, network 2+8, peer 2+len, role 2+7: the flag.
			i := 4 + 2 + 2 + len(network) + 2 + len(w.arch.id) + 2 + len("archive")
			return setByte(i, 2)
		}(), want: errs(policy.ErrMalformed), says: []string{"neither 0 nor 1"}},
		{name: "too large", data: make([]byte, policy.MaxMembershipSize+1), want: errs(policy.ErrMalformed), says: []string{"limit"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := policy.DecodeMembership(tt.data)
			wantErr(t, err, tt.want, tt.says...)
		})
	}
	for i := range enc {
		if _, err := policy.DecodeMembership(enc[:i]); err == nil {
			t.Fatalf("DecodeMembership accepted the first %d of %d bytes", i, len(enc))
		}
	}
}

func TestParseMembershipRefuses(t *testing.T) {
	w := newWorld(t)
	s := w.mVM1.String()
	for name, text := range map[string]string{
		"no prefix":         strings.TrimPrefix(s, "examnode-membership:"),
		"other prefix":      "examnode-revocation:" + strings.TrimPrefix(s, "examnode-membership:"),
		"trailing newline":  s + "\n",
		"leading space":     " " + s,
		"line break inside": s[:40] + "\n" + s[40:],
		"padding":           s + "=",
		"standard base64":   strings.ReplaceAll(strings.ReplaceAll(s, "-", "+"), "_", "/") + "+",
		"truncated":         s[:len(s)-5],
	} {
		t.Run(name, func(t *testing.T) {
			_, err := policy.ParseMembership(text)
			wantErr(t, err, errs(policy.ErrMalformed))
		})
	}
}

func TestMembershipDescribe(t *testing.T) {
	w := newWorld(t)
	for m, want := range map[*policy.Membership]string{
		&w.mVM1:     "peer " + w.vm1.id + " is vm in C1 of network examnode from 2026-06-01T08:00:00Z until 2027-06-01T08:00:00Z (serial " + w.mVM1.Serial.String() + ")",
		&w.mCentral: "is central in every organisation",
		&w.mArch:    "is archive in C1, C3 of",
	} {
		if got := m.Describe(); !strings.Contains(got, want) {
			t.Errorf("Describe() = %q; want it to contain %q", got, want)
		}
	}
}

func TestSerial(t *testing.T) {
	s := policy.Serial{0xde, 0xad, 0xbe, 0xef, 15: 1}
	tests := []struct {
		text string
		want []error
	}{
		{text: s.String()},
		{text: "deadbeef00000000000000000000000", want: errs(policy.ErrMalformed)},
		{text: "DEADBEEF000000000000000000000001", want: errs(policy.ErrMalformed)},
		{text: "deadbeef00000000000000000000000g", want: errs(policy.ErrMalformed)},
		{text: "", want: errs(policy.ErrMalformed)},
	}
	for _, tt := range tests {
		got, err := policy.ParseSerial(tt.text)
		wantErr(t, err, tt.want)
		if err == nil && (got != s || got.String() != tt.text) {
			t.Errorf("ParseSerial(%q) = %s", tt.text, got)
		}
	}
	if s.String() != "deadbeef000000000000000000000001" || s.IsZero() || !(policy.Serial{}).IsZero() {
		t.Errorf("String() = %s", s)
	}
}

func TestAuthorityKey(t *testing.T) {
	a, err := policy.GenerateAuthority()
	if err != nil {
		t.Fatal(err)
	}
	k := a.Public()
	s := k.String()
	if !strings.HasPrefix(s, "examnode-authority:") || len(s) != len("examnode-authority:")+43 {
		t.Fatalf("String() = %q", s)
	}
	body := strings.TrimPrefix(s, "examnode-authority:")
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, body[len(body)-1])
	stray := body[:len(body)-1] + string(alphabet[last^1]) // sets an unused low bit
	zero := policy.AuthorityKey{}.String()
	tests := []struct {
		name string
		text string
		want []error
	}{
		{name: "valid", text: s},
		{name: "no prefix", text: body, want: errs(policy.ErrBadAuthorityKey, policy.ErrMalformed)},
		{name: "wrong prefix", text: "examnode-membership:" + body, want: errs(policy.ErrBadAuthorityKey, policy.ErrMalformed)},
		{name: "padding", text: s + "=", want: errs(policy.ErrBadAuthorityKey, policy.ErrMalformed)},
		{name: "trailing newline", text: s + "\n", want: errs(policy.ErrBadAuthorityKey, policy.ErrMalformed)},
		{name: "space inside", text: s[:30] + " " + s[30:], want: errs(policy.ErrBadAuthorityKey, policy.ErrMalformed)},
		{name: "short", text: s[:len(s)-1], want: errs(policy.ErrBadAuthorityKey, policy.ErrMalformed)},
		{name: "long", text: s + "AAAA", want: errs(policy.ErrBadAuthorityKey, policy.ErrMalformed)},
		{name: "stray bits", text: stray, want: errs(policy.ErrBadAuthorityKey, policy.ErrMalformed)},
		{name: "all zero", text: zero, want: errs(policy.ErrBadAuthorityKey, policy.ErrMalformed)},
		{name: "empty", text: "", want: errs(policy.ErrBadAuthorityKey, policy.ErrMalformed)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := policy.ParseAuthorityKey(tt.text)
			wantErr(t, err, tt.want)
			if err == nil && (got != k || got.String() != tt.text) {
				t.Errorf("ParseAuthorityKey(%q) = %s", tt.text, got)
			}
		})
	}
}

func TestAuthorityMarshal(t *testing.T) {
	a, err := policy.GenerateAuthority()
	if err != nil {
		t.Fatal(err)
	}
	pemData := a.MarshalPrivate()
	if !bytes.HasPrefix(pemData, []byte("-----BEGIN EXAMNODE AUTHORITY PRIVATE KEY-----\n")) {
		t.Fatalf("MarshalPrivate() = %s", pemData)
	}
	back, err := policy.UnmarshalAuthority(pemData)
	if err != nil {
		t.Fatal(err)
	}
	if back.Public() != a.Public() {
		t.Fatal("the unmarshalled authority has another public key")
	}
	n := newNode(t, 9)
	m, err := back.Grant(policy.GrantRequest{Network: network, Peer: n.id, Role: schema.RoleVM, Orgs: []string{orgA}, Expires: t0.Add(year)}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := policy.Verify(m, policy.Trust{Network: network, Authority: a.Public()}, t0); err != nil {
		t.Fatalf("a grant by the unmarshalled authority does not verify: %v", err)
	}

	seed := bytes.Repeat([]byte{7}, ed25519.SeedSize)
	block := func(typ string, h map[string]string, b []byte) []byte {
		return pem.EncodeToMemory(&pem.Block{Type: typ, Headers: h, Bytes: b})
	}
	const typ = "EXAMNODE AUTHORITY PRIVATE KEY"
	tests := []struct {
		name string
		data []byte
		want []error
		says string
	}{
		{name: "valid with surrounding whitespace", data: append(append([]byte("\n"), block(typ, nil, seed)...), "\n\n"...)},
		{name: "empty", data: nil, want: errs(policy.ErrBadAuthorityKey), says: "no PEM block"},
		{name: "public key", data: []byte(a.Public().String()), want: errs(policy.ErrBadAuthorityKey)},
		{name: "other PEM type", data: block("PRIVATE KEY", nil, seed), want: errs(policy.ErrBadAuthorityKey), says: `"PRIVATE KEY"`},
		{name: "headers", data: block(typ, map[string]string{"Proc-Type": "4,ENCRYPTED"}, seed), want: errs(policy.ErrBadAuthorityKey), says: "headers"},
		{name: "short seed", data: block(typ, nil, seed[:31]), want: errs(policy.ErrBadAuthorityKey), says: "31 bytes"},
		{name: "full private key", data: block(typ, nil, ed25519.NewKeyFromSeed(seed)), want: errs(policy.ErrBadAuthorityKey)},
		{name: "two keys", data: append(block(typ, nil, seed), block(typ, nil, seed)...), want: errs(policy.ErrBadAuthorityKey), says: "one key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := policy.UnmarshalAuthority(tt.data)
			wantErr(t, err, tt.want, tt.says)
		})
	}
}
