package policy

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"time"
)

// pemType is the PEM block type of a marshalled authority private key.
const pemType = "EXAMNODE AUTHORITY PRIVATE KEY"

// authorityPrefix starts the printable form of an AuthorityKey.
const authorityPrefix = "examnode-authority:"

// Authority is the network authority: the Ed25519 key pair that signs
// memberships and revocations. Its private half is kept outside every
// replicated store (on the central operator's machine or in a secret
// store); nodes are configured with its public half, the AuthorityKey.
type Authority struct {
	priv ed25519.PrivateKey
}

// GenerateAuthority makes a new authority key pair from crypto/rand.
func GenerateAuthority() (*Authority, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("policy: generate authority key: %w", err)
	}
	return &Authority{priv: priv}, nil
}

// MarshalPrivate returns the private key as one PEM block of type
// "EXAMNODE AUTHORITY PRIVATE KEY" whose content is the 32-byte Ed25519
// seed (RFC 8032's private key). The type header keeps a node key or a TLS
// key from being loaded as the authority by mistake, and PEM survives
// copying into a secret store. Write it with mode 0600.
func (a *Authority) MarshalPrivate() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: pemType, Bytes: a.priv.Seed()})
}

// UnmarshalAuthority reads what MarshalPrivate wrote. It refuses other PEM
// types, PEM headers, a seed that is not 32 bytes and anything but
// whitespace around the block, with an error wrapping ErrBadAuthorityKey.
func UnmarshalAuthority(data []byte) (*Authority, error) {
	block, rest := pem.Decode(data)
	switch {
	case block == nil:
		return nil, fmt.Errorf("%w: no PEM block; expected an examnode authority key file (PEM, 'EXAMNODE AUTHORITY PRIVATE KEY')", ErrBadAuthorityKey)
	case block.Type != pemType:
		return nil, fmt.Errorf("%w: PEM block is %q, not %q; this is not an examnode authority key", ErrBadAuthorityKey, block.Type, pemType)
	case len(block.Headers) != 0:
		return nil, fmt.Errorf("%w: the PEM block has headers; an authority key has none (an encrypted key must be decrypted first)", ErrBadAuthorityKey)
	case len(block.Bytes) != ed25519.SeedSize:
		return nil, fmt.Errorf("%w: the key is %d bytes; an Ed25519 seed is %d", ErrBadAuthorityKey, len(block.Bytes), ed25519.SeedSize)
	case len(bytes.TrimSpace(rest)) != 0:
		return nil, fmt.Errorf("%w: data after the PEM block; the file holds one key", ErrBadAuthorityKey)
	}
	return &Authority{priv: ed25519.NewKeyFromSeed(block.Bytes)}, nil
}

// Public returns the authority's public key, which nodes are configured
// with.
func (a *Authority) Public() AuthorityKey {
	var k AuthorityKey
	copy(k[:], a.priv.Public().(ed25519.PublicKey))
	return k
}

func (a *Authority) sign(stmt []byte) []byte { return ed25519.Sign(a.priv, stmt) }

// AuthorityKey is the public key of a network authority. Its printable
// form, for configs and command lines, is "examnode-authority:" followed
// by the 32 key bytes in unpadded base64url (43 characters).
type AuthorityKey [ed25519.PublicKeySize]byte

// String returns the printable form.
func (k AuthorityKey) String() string { return printable(authorityPrefix, k[:]) }

// IsZero reports whether k is unset.
func (k AuthorityKey) IsZero() bool { return k == AuthorityKey{} }

// ParseAuthorityKey reads the printable form String writes, and nothing
// else: no whitespace, no padding, exactly 32 bytes, not all zero.
func ParseAuthorityKey(text string) (AuthorityKey, error) {
	var k AuthorityKey
	b, err := parsePrintable(text, authorityPrefix, "authority key")
	if err != nil {
		return k, fmt.Errorf("%w: %w", ErrBadAuthorityKey, err)
	}
	if len(b) != len(k) {
		return k, fmt.Errorf("%w: %w authority key: it is %d bytes; an Ed25519 public key is %d: copy the whole value",
			ErrBadAuthorityKey, ErrMalformed, len(b), len(k))
	}
	copy(k[:], b)
	if k.IsZero() {
		return AuthorityKey{}, fmt.Errorf("%w: %w authority key: it is all zeros", ErrBadAuthorityKey, ErrMalformed)
	}
	return k, nil
}

func (k AuthorityKey) verify(stmt, sig []byte) bool {
	return len(sig) == sigSize && ed25519.Verify(k[:], stmt, sig)
}

// Trust is what a node trusts: its network's name and authority key, and
// how far its clock may disagree with the authority's and the writers'.
// Every verification takes one.
type Trust struct {
	// Network is the mesh's network name (mesh.Options.Network).
	Network string
	// Authority is the public key of the network authority.
	Authority AuthorityKey
	// ClockSkew is how far in this node's future a record may be signed
	// (writers' clocks run ahead); CheckSigned refuses records signed
	// later. Validity windows and revocations are applied exactly, by
	// every function, so that Check and MayConnect always agree.
	ClockSkew time.Duration
}

func (t Trust) check() error {
	if t.Authority.IsZero() {
		return fmt.Errorf("%w: this node has no authority key configured; set it to the `examnode-authority:…` value the central operator publishes", ErrBadAuthorityKey)
	}
	if t.ClockSkew < 0 {
		return fmt.Errorf("%w: clock skew %s is negative", ErrInvalid, t.ClockSkew)
	}
	return nil
}
