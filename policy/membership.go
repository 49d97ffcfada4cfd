package policy

import (
	"crypto/rand"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/examnode/examnode/schema"
)

// MembershipVersion is the membership format version this node writes and
// reads.
const MembershipVersion = 1

// MaxMembershipOrgs is how many organisations one membership may list; a
// host serving more holds AllOrgs.
const MaxMembershipOrgs = 1024

// MaxMembershipSize bounds an encoded membership.
const MaxMembershipSize = 4 + 2 + (2 + maxName) + (2 + maxPeerID) + (2 + 16) + 1 + 2 +
	MaxMembershipOrgs*(2+schema.MaxOrgIDLength) + 8 + 8 + 16 + 8 + sigSize

const membershipPrefix = "examnode-membership:"

// Membership is the authority's signed statement "peer Peer has role Role
// in organisations Orgs (or, with AllOrgs, in every organisation) of
// network Network from NotBefore until Expires". Serial names it for
// revocation and for the records written under it. Memberships are made by
// Authority.Grant or DecodeMembership and checked by Verify or Check.
//
// A host with several roles (a central host that is also the archive)
// holds one membership per role.
type Membership struct {
	Version   int         // MembershipVersion
	Network   string      // the mesh network's name
	Peer      string      // libp2p peer ID (Ed25519), canonical text form
	Role      schema.Role // central, vm or archive
	Orgs      []string    // sorted, unique; empty exactly when AllOrgs
	AllOrgs   bool        // every organisation (central or archive only)
	NotBefore time.Time   // valid from (inclusive)
	Expires   time.Time   // valid until (exclusive)
	Serial    Serial      // random, unique, never zero
	IssuedAt  time.Time
	Sig       []byte // the authority's Ed25519 signature over the statement
}

// GrantRequest is what the central operator asks the authority to sign.
type GrantRequest struct {
	Network string
	Peer    string
	Role    schema.Role
	// Orgs lists the organisations; a VM has exactly one. Order and
	// duplicates do not matter.
	Orgs []string
	// AllOrgs grants every organisation, present and future (central or
	// archive only; Orgs must then be empty).
	AllOrgs bool
	// NotBefore defaults to now.
	NotBefore time.Time
	// Expires is required and must be after NotBefore.
	Expires time.Time
}

// Grant signs a membership for req, with a fresh random serial, issued at
// now. Times are kept to the second. It refuses (ErrInvalid) an invalid
// network, peer ID, role or organisation ID, a VM with other than one
// organisation, AllOrgs together with Orgs, and an empty or inverted
// validity window.
func (a *Authority) Grant(req GrantRequest, now time.Time) (Membership, error) {
	orgs := slices.Clone(req.Orgs)
	slices.Sort(orgs)
	orgs = slices.Compact(orgs)
	if orgs == nil {
		orgs = []string{}
	}
	nb := req.NotBefore
	if nb.IsZero() {
		nb = now
	}
	m := Membership{
		Version:   MembershipVersion,
		Network:   req.Network,
		Peer:      req.Peer,
		Role:      req.Role,
		Orgs:      orgs,
		AllOrgs:   req.AllOrgs,
		NotBefore: utc(nb).Truncate(time.Second),
		Expires:   utc(req.Expires).Truncate(time.Second),
		IssuedAt:  utc(now).Truncate(time.Second),
	}
	if req.Expires.IsZero() {
		return Membership{}, fmt.Errorf("%w grant: set an expiry (e.g. one year from now)", ErrInvalid)
	}
	if _, err := rand.Read(m.Serial[:]); err != nil {
		return Membership{}, fmt.Errorf("policy: grant: serial: %w", err)
	}
	if err := m.validate(); err != nil {
		return Membership{}, fmt.Errorf("grant: %w", err)
	}
	m.Sig = a.sign(m.statement())
	return m, nil
}

// validate checks every rule that needs neither a key nor a clock.
func (m Membership) validate() error {
	if m.Version != MembershipVersion {
		return versionErr("membership format", m.Version, MembershipVersion)
	}
	if err := checkName("network", m.Network); err != nil {
		return err
	}
	if err := checkPeer("peer", m.Peer); err != nil {
		return err
	}
	if _, err := schema.ParseRole(string(m.Role)); err != nil {
		return fmt.Errorf("%w role: %w", ErrInvalid, err)
	}
	switch {
	case m.AllOrgs && len(m.Orgs) > 0:
		return fmt.Errorf("%w orgs: a membership lists organisations or holds all of them, not both", ErrInvalid)
	case m.AllOrgs && m.Role == schema.RoleVM:
		return fmt.Errorf("%w orgs: a VM holds only its own organisation; grant it exactly one", ErrInvalid)
	case !m.AllOrgs && len(m.Orgs) == 0:
		return fmt.Errorf("%w orgs: name at least one organisation, or grant all organisations (central or archive)", ErrInvalid)
	case m.Role == schema.RoleVM && len(m.Orgs) != 1:
		return fmt.Errorf("%w orgs: a VM holds only its own organisation; grant it exactly one, not %d", ErrInvalid, len(m.Orgs))
	case len(m.Orgs) > MaxMembershipOrgs:
		return fmt.Errorf("%w orgs: %d organisations; the limit is %d: grant all organisations instead", ErrInvalid, len(m.Orgs), MaxMembershipOrgs)
	}
	for i, o := range m.Orgs {
		if err := schema.ValidateOrgID(o); err != nil {
			return fmt.Errorf("%w orgs: %w", ErrInvalid, err)
		}
		if i > 0 && m.Orgs[i-1] >= o {
			return fmt.Errorf("%w orgs: not sorted and unique at %q", ErrInvalid, o)
		}
	}
	if err := checkTime("not_before", m.NotBefore); err != nil {
		return err
	}
	if err := checkTime("expires", m.Expires); err != nil {
		return err
	}
	if err := checkTime("issued_at", m.IssuedAt); err != nil {
		return err
	}
	if !m.NotBefore.Before(m.Expires) {
		return fmt.Errorf("%w: the membership expires (%s) before it starts (%s)", ErrInvalid,
			m.Expires.Format(time.RFC3339), m.NotBefore.Format(time.RFC3339))
	}
	if m.Serial.IsZero() {
		return fmt.Errorf("%w serial: zero", ErrInvalid)
	}
	return nil
}

// statement is the signed part of the encoding.
func (m Membership) statement() []byte {
	var e encoder
	e.raw([]byte(magicMembership))
	e.u16(uint16(m.Version))
	e.str(m.Network)
	e.str(m.Peer)
	e.str(string(m.Role))
	e.bool(m.AllOrgs)
	e.u16(uint16(min(len(m.Orgs), 0xffff)))
	for _, o := range m.Orgs {
		e.str(o)
	}
	e.time(m.NotBefore)
	e.time(m.Expires)
	e.raw(m.Serial[:])
	e.time(m.IssuedAt)
	return e.b
}

// Encode returns the canonical encoding: the statement (magic "EXMB",
// uint16 version, network, peer, role, all-orgs flag, organisations,
// not-before, expires, serial, issued-at) followed by the 64-byte
// signature over exactly the statement's bytes.
func (m Membership) Encode() []byte {
	return append(m.statement(), m.Sig...)
}

// DecodeMembership reads what Encode wrote. It refuses (ErrMalformed)
// anything but exactly one well-formed, valid membership, and
// (ErrUnsupportedVersion, naming both versions) other format versions. It
// does not check the signature: Verify does.
func DecodeMembership(b []byte) (Membership, error) {
	if len(b) > MaxMembershipSize {
		return Membership{}, fmt.Errorf("%w membership: %d bytes; the limit is %d", ErrMalformed, len(b), MaxMembershipSize)
	}
	stmt, sig := splitSig(b)
	if sig == nil {
		return Membership{}, fmt.Errorf("%w membership: %d bytes is too short to be one", ErrMalformed, len(b))
	}
	d := decoder{b: stmt, what: "membership"}
	var m Membership
	m.Version = d.header(magicMembership, MembershipVersion)
	m.Network = d.str("network", maxName)
	m.Peer = d.str("peer", maxPeerID)
	m.Role = schema.Role(d.str("role", 16))
	m.AllOrgs = d.bool("all-orgs flag")
	n := int(d.u16("organisation count"))
	if d.err == nil && n > MaxMembershipOrgs {
		d.fail("%d organisations; the limit is %d", n, MaxMembershipOrgs)
	}
	m.Orgs = []string{}
	for i := 0; i < n && d.err == nil; i++ {
		m.Orgs = append(m.Orgs, d.str("organisation", schema.MaxOrgIDLength))
	}
	m.NotBefore = d.time("not-before")
	m.Expires = d.time("expires")
	m.Serial = d.serial("serial")
	m.IssuedAt = d.time("issued-at")
	if err := d.finish(); err != nil {
		return Membership{}, err
	}
	if err := m.validate(); err != nil {
		return Membership{}, fmt.Errorf("%w membership: %w", ErrMalformed, err)
	}
	m.Sig = sig
	return m, nil
}

// String returns the printable form for configs and command lines:
// "examnode-membership:" and the encoding in unpadded base64url.
func (m Membership) String() string { return printable(membershipPrefix, m.Encode()) }

// ParseMembership reads the printable form String writes (strictly: no
// whitespace or padding) and decodes it with DecodeMembership.
func ParseMembership(text string) (Membership, error) {
	b, err := parsePrintable(text, membershipPrefix, "membership")
	if err != nil {
		return Membership{}, err
	}
	return DecodeMembership(b)
}

// Covers reports whether m names org, or holds every organisation.
func (m Membership) Covers(org string) bool {
	return m.AllOrgs || slices.Contains(m.Orgs, org)
}

// Describe is a one-line summary for people: "peer 12D3… is vm in C1 of
// network examnode from … until … (serial …)".
func (m Membership) Describe() string {
	orgs := "every organisation"
	if !m.AllOrgs {
		orgs = strings.Join(m.Orgs, ", ")
	}
	return fmt.Sprintf("peer %s is %s in %s of network %s from %s until %s (serial %s)",
		m.Peer, m.Role, orgs, m.Network, m.NotBefore.Format(time.RFC3339), m.Expires.Format(time.RFC3339), m.Serial)
}

// Verify checks that m is a membership of this node's network signed by
// its authority and valid at now: the format version
// (ErrUnsupportedVersion), the rules Grant enforces (ErrInvalid), the
// signature over exactly the statement (ErrBadSignature: forged, or a field
// altered after signing), the network (ErrWrongNetwork) and the validity
// window NotBefore ≤ now < Expires (ErrNotYetValid, ErrExpired). It does not consult revocations: Check
// does.
func Verify(m Membership, trust Trust, now time.Time) error {
	if err := trust.check(); err != nil {
		return err
	}
	if err := m.validate(); err != nil {
		return fmt.Errorf("membership %s of peer %s: %w", m.Serial, m.Peer, err)
	}
	if !trust.Authority.verify(m.statement(), m.Sig) {
		return fmt.Errorf("%w: membership %s of peer %s is not signed by this network's authority (%s); check the authority key in this node's config, or grant the peer again",
			ErrBadSignature, m.Serial, m.Peer, trust.Authority)
	}
	if m.Network != trust.Network {
		return fmt.Errorf("%w: membership %s of peer %s is for network %q, but this node is in network %q; grant it with --network %s",
			ErrWrongNetwork, m.Serial, m.Peer, m.Network, trust.Network, trust.Network)
	}
	return m.window(now)
}

func (m Membership) window(now time.Time) error {
	if now.Before(m.NotBefore) {
		return fmt.Errorf("%w: membership %s of peer %s is valid from %s, and it is %s; wait, or check this node's clock",
			ErrNotYetValid, m.Serial, m.Peer, m.NotBefore.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if !now.Before(m.Expires) {
		return fmt.Errorf("%w: membership %s of peer %s expired at %s; renew it: run `%s` on the central host",
			ErrExpired, m.Serial, m.Peer, m.Expires.Format(time.RFC3339), m.grantCommand(""))
	}
	return nil
}

// grantCommand is the command that grants m's peer its role again, in org
// (or in m's organisations if org is "").
func (m Membership) grantCommand(org string) string {
	return grantCommand(m.Peer, m.Role, m.AllOrgs && org == "", orgOr(org, m.Orgs))
}

func orgOr(org string, orgs []string) []string {
	if org != "" {
		return []string{org}
	}
	return orgs
}

func grantCommand(peer string, role schema.Role, all bool, orgs []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "examnode grant --peer %s", peer)
	if all {
		b.WriteString(" --all-orgs")
	}
	for _, o := range orgs {
		fmt.Fprintf(&b, " --org %s", o)
	}
	if role == "" {
		role = schema.RoleVM
	}
	fmt.Fprintf(&b, " --role %s", role)
	return b.String()
}
