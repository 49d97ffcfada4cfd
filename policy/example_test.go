package policy_test

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/examnode/examnode/policy"
	"github.com/examnode/examnode/schema"
)

// exampleNode is a fixed Ed25519 node identity, so the output is stable.
func exampleNode(seed byte) (crypto.PrivKey, string) {
	priv, _, _ := crypto.GenerateEd25519Key(bytes.NewReader(bytes.Repeat([]byte{seed}, 32)))
	id, _ := peer.IDFromPrivateKey(priv)
	return priv, id.String()
}

// The central operator grants a VM a membership; the VM's config carries
// it in printable form; every peer parses and checks it.
func Example() {
	auth, err := policy.GenerateAuthority()
	if err != nil {
		fmt.Println(err)
		return
	}
	// Nodes are configured with the network name and the authority's
	// public key, as printed by auth.Public().String().
	key, err := policy.ParseAuthorityKey(auth.Public().String())
	if err != nil {
		fmt.Println(err)
		return
	}
	trust := policy.Trust{Network: "examnode", Authority: key}

	_, vm := exampleNode(1)
	now := time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC)
	m, err := auth.Grant(policy.GrantRequest{
		Network: "examnode", Peer: vm, Role: schema.RoleVM, Orgs: []string{"centre-paris"},
		Expires: now.AddDate(1, 0, 0),
	}, now)
	if err != nil {
		fmt.Println(err)
		return
	}
	text := m.String() // "examnode-membership:…", what `examnode grant` prints

	parsed, err := policy.ParseMembership(text)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(parsed.Role, parsed.Orgs)
	fmt.Println("check:", policy.Check(parsed, policy.RevocationSet{}, trust, now.Add(time.Hour)))
	fmt.Println("announce in centre-paris:", policy.MayAnnounce(parsed, "centre-paris"))
	fmt.Println("announce in centre-lyon refused:", errors.Is(policy.MayAnnounce(parsed, "centre-lyon"), policy.ErrNotMember))
	fmt.Println("expired next year:", errors.Is(policy.Check(parsed, policy.RevocationSet{}, trust, now.AddDate(1, 0, 0)), policy.ErrExpired))
	// Output:
	// vm [centre-paris]
	// check: <nil>
	// announce in centre-paris: <nil>
	// announce in centre-lyon refused: true
	// expired next year: true
}

// A record arrives signed by a VM that tries to write central data: the
// receiving node refuses it and says why.
func ExampleMayWrite() {
	auth, _ := policy.GenerateAuthority()
	trust := policy.Trust{Network: "examnode", Authority: auth.Public()}
	now := time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC)
	priv, vm := exampleNode(1)
	m, _ := auth.Grant(policy.GrantRequest{Network: "examnode", Peer: vm, Role: schema.RoleVM,
		Orgs: []string{"centre-paris"}, Expires: now.AddDate(1, 0, 0)}, now)

	// On the VM.
	rec, _ := schema.NewRecord("centre-paris", "tt1", schema.TestTaker{Login: "jdoe"})
	enc, _ := schema.Encode(rec)
	sr, _ := policy.Sign(priv, m, enc, policy.NextSeq(0, now), now)
	value := policy.EncodeSigned(sr)

	// On the node where it arrives.
	got, _ := policy.DecodeSigned(value)
	fmt.Println("signature and membership:", policy.CheckSigned(got, m, policy.RevocationSet{}, trust, now))
	decoded, _ := schema.Decode(got.Record)
	err := policy.MayWrite(policy.WriteContext{Writer: m, Org: "centre-paris", Key: decoded.Key(), Record: decoded})
	fmt.Println(errors.Is(err, policy.ErrRoleMayNotWrite))
	fmt.Println(err)
	// Output:
	// signature and membership: <nil>
	// true
	// policy: role may not write: peer 12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5 may not write /test-takers/tt1 in centre-paris: schema: write refused: role vm may not write test-takers: central data is authoritative; change it on the central host
}
