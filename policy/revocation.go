package policy

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"time"
)

// RevocationVersion is the revocation format version this node writes and
// reads.
const RevocationVersion = 1

// MaxRevocationSize bounds an encoded revocation.
const MaxRevocationSize = 4 + 2 + (2 + maxName) + 16 + (2 + maxPeerID) + 8 + (2 + maxReason) + sigSize

const revocationPrefix = "examnode-revocation:"

// Revocation is the authority's signed statement "membership Serial of
// Peer is no longer trusted from RevokedAt on". A zero Serial revokes every
// membership Peer holds (a stolen machine). Records the peer signed before
// RevokedAt stay valid (see CheckSigned): to distrust a compromised key's
// past too, revoke from the time the compromise may have started.
type Revocation struct {
	Version   int    // RevocationVersion
	Network   string // the mesh network's name
	Serial    Serial // the membership revoked; zero: all of Peer's
	Peer      string // the peer whose membership is revoked
	RevokedAt time.Time
	Reason    string // for people, at most 512 bytes of printable text
	Sig       []byte // the authority's Ed25519 signature over the statement
}

// RevokeRequest is what the central operator asks the authority to sign.
type RevokeRequest struct {
	Network string
	Peer    string
	// Serial is the membership to revoke; zero revokes every membership
	// of Peer.
	Serial Serial
	// From is when the revocation takes effect; it defaults to now and
	// may be in the past.
	From   time.Time
	Reason string
}

// Revoke signs a revocation for req. It refuses (ErrInvalid) an invalid
// network, peer ID or reason.
func (a *Authority) Revoke(req RevokeRequest, now time.Time) (Revocation, error) {
	from := req.From
	if from.IsZero() {
		from = now
	}
	r := Revocation{
		Version:   RevocationVersion,
		Network:   req.Network,
		Serial:    req.Serial,
		Peer:      req.Peer,
		RevokedAt: utc(from),
		Reason:    req.Reason,
	}
	if err := r.validate(); err != nil {
		return Revocation{}, fmt.Errorf("revoke: %w", err)
	}
	r.Sig = a.sign(r.statement())
	return r, nil
}

func (r Revocation) validate() error {
	if r.Version != RevocationVersion {
		return versionErr("revocation format", r.Version, RevocationVersion)
	}
	if err := checkName("network", r.Network); err != nil {
		return err
	}
	if err := checkPeer("peer", r.Peer); err != nil {
		return err
	}
	if err := checkTime("revoked_at", r.RevokedAt); err != nil {
		return err
	}
	return checkText("reason", r.Reason, maxReason)
}

func (r Revocation) statement() []byte {
	var e encoder
	e.raw([]byte(magicRevocation))
	e.u16(uint16(r.Version))
	e.str(r.Network)
	e.raw(r.Serial[:])
	e.str(r.Peer)
	e.time(r.RevokedAt)
	e.str(r.Reason)
	return e.b
}

// Encode returns the canonical encoding: the statement (magic "EXRV",
// uint16 version, network, serial, peer, revoked-at, reason) followed by
// the 64-byte signature over exactly the statement's bytes.
func (r Revocation) Encode() []byte { return append(r.statement(), r.Sig...) }

// DecodeRevocation reads what Encode wrote, refusing anything else
// (ErrMalformed) and other format versions (ErrUnsupportedVersion). It
// does not check the signature: VerifyRevocation does.
func DecodeRevocation(b []byte) (Revocation, error) {
	if len(b) > MaxRevocationSize {
		return Revocation{}, fmt.Errorf("%w revocation: %d bytes; the limit is %d", ErrMalformed, len(b), MaxRevocationSize)
	}
	stmt, sig := splitSig(b)
	if sig == nil {
		return Revocation{}, fmt.Errorf("%w revocation: %d bytes is too short to be one", ErrMalformed, len(b))
	}
	d := decoder{b: stmt, what: "revocation"}
	var r Revocation
	r.Version = d.header(magicRevocation, RevocationVersion)
	r.Network = d.str("network", maxName)
	r.Serial = d.serial("serial")
	r.Peer = d.str("peer", maxPeerID)
	r.RevokedAt = d.time("revoked-at")
	r.Reason = d.str("reason", maxReason)
	if err := d.finish(); err != nil {
		return Revocation{}, err
	}
	if err := r.validate(); err != nil {
		return Revocation{}, fmt.Errorf("%w revocation: %w", ErrMalformed, err)
	}
	r.Sig = sig
	return r, nil
}

// String returns the printable form: "examnode-revocation:" and the
// encoding in unpadded base64url.
func (r Revocation) String() string { return printable(revocationPrefix, r.Encode()) }

// ParseRevocation reads the printable form String writes.
func ParseRevocation(text string) (Revocation, error) {
	b, err := parsePrintable(text, revocationPrefix, "revocation")
	if err != nil {
		return Revocation{}, err
	}
	return DecodeRevocation(b)
}

// VerifyRevocation checks r's format version, rules, signature by this
// network's authority (ErrBadSignature) and network (ErrWrongNetwork).
// Revocations do not expire.
func VerifyRevocation(r Revocation, trust Trust) error {
	if err := trust.check(); err != nil {
		return err
	}
	if err := r.validate(); err != nil {
		return fmt.Errorf("revocation of peer %s: %w", r.Peer, err)
	}
	if !trust.Authority.verify(r.statement(), r.Sig) {
		return fmt.Errorf("%w: the revocation of peer %s (serial %s) is not signed by this network's authority (%s); ignore it, and check where it came from",
			ErrBadSignature, r.Peer, r.Serial, trust.Authority)
	}
	if r.Network != trust.Network {
		return fmt.Errorf("%w: the revocation of peer %s (serial %s) is for network %q, but this node is in network %q",
			ErrWrongNetwork, r.Peer, r.Serial, r.Network, trust.Network)
	}
	return nil
}

// RevocationSet is a set of verified revocations. It is a value: With and
// NewRevocationSet return new sets and never change the one they are
// called on, so a set may be shared between goroutines. The zero value is
// the empty set.
type RevocationSet struct {
	bySerial map[Serial]Revocation // revocations of one membership
	byPeer   map[string]Revocation // revocations of every membership of a peer
}

// NewRevocationSet verifies every revocation and returns the set of them,
// or the first verification error.
func NewRevocationSet(trust Trust, revs ...Revocation) (RevocationSet, error) {
	s := RevocationSet{bySerial: map[Serial]Revocation{}, byPeer: map[string]Revocation{}}
	for _, r := range revs {
		if err := VerifyRevocation(r, trust); err != nil {
			return RevocationSet{}, err
		}
		s.add(r)
	}
	return s, nil
}

// With verifies r and returns a new set holding s's revocations and r.
// Of two revocations of one membership (or of all of one peer's), the set
// keeps the earlier.
func (s RevocationSet) With(r Revocation, trust Trust) (RevocationSet, error) {
	if err := VerifyRevocation(r, trust); err != nil {
		return s, err
	}
	n := RevocationSet{bySerial: maps.Clone(s.bySerial), byPeer: maps.Clone(s.byPeer)}
	if n.bySerial == nil {
		n.bySerial = map[Serial]Revocation{}
	}
	if n.byPeer == nil {
		n.byPeer = map[string]Revocation{}
	}
	n.add(r)
	return n, nil
}

func (s *RevocationSet) add(r Revocation) {
	if r.Serial.IsZero() {
		if old, ok := s.byPeer[r.Peer]; !ok || r.RevokedAt.Before(old.RevokedAt) {
			s.byPeer[r.Peer] = r
		}
		return
	}
	if old, ok := s.bySerial[r.Serial]; !ok || r.RevokedAt.Before(old.RevokedAt) {
		s.bySerial[r.Serial] = r
	}
}

// Len is the number of revocations in the set.
func (s RevocationSet) Len() int { return len(s.bySerial) + len(s.byPeer) }

// Revocations lists the set, by RevokedAt, then peer, then serial.
func (s RevocationSet) Revocations() []Revocation {
	out := slices.Collect(maps.Values(s.bySerial))
	out = slices.AppendSeq(out, maps.Values(s.byPeer))
	slices.SortFunc(out, func(a, b Revocation) int {
		return cmp.Or(a.RevokedAt.Compare(b.RevokedAt), cmp.Compare(a.Peer, b.Peer), cmp.Compare(a.Serial.String(), b.Serial.String()))
	})
	return out
}

// Lookup returns the earliest revocation in the set that applies to m
// (by serial, or by peer for a zero-serial revocation), whatever its
// RevokedAt.
func (s RevocationSet) Lookup(m Membership) (Revocation, bool) {
	r1, ok1 := s.bySerial[m.Serial]
	r2, ok2 := s.byPeer[m.Peer]
	switch {
	case ok1 && ok2:
		if r2.RevokedAt.Before(r1.RevokedAt) {
			return r2, true
		}
		return r1, true
	case ok1:
		return r1, true
	case ok2:
		return r2, true
	}
	return Revocation{}, false
}

// Check is the full validity decision for a membership at time now:
// Verify (signature, version, network, validity window), then revocation:
// a membership with a revocation in revs whose RevokedAt is not after now
// is refused with ErrRevoked. revs holds
// only verified revocations, so Check does not verify them again.
func Check(m Membership, revs RevocationSet, trust Trust, now time.Time) error {
	if err := Verify(m, trust, now); err != nil {
		return err
	}
	return notRevoked(m, revs, now)
}

// notRevoked refuses (ErrRevoked) m if revs revokes it at or before now.
func notRevoked(m Membership, revs RevocationSet, now time.Time) error {
	if r, ok := revs.Lookup(m); ok && !r.RevokedAt.After(now) {
		reason := ""
		if r.Reason != "" {
			reason = fmt.Sprintf(" (%s)", r.Reason)
		}
		return fmt.Errorf("%w: membership %s of peer %s was revoked from %s%s; if it should still be a member, grant it again: run `%s` on the central host",
			ErrRevoked, m.Serial, m.Peer, r.RevokedAt.Format(time.RFC3339), reason, m.grantCommand(""))
	}
	return nil
}
