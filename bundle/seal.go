package bundle

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"

	"filippo.io/age"
	"filippo.io/age/agessh"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/crypto/ssh"

	"github.com/examnode/examnode/schema"
)

// ErrNotRecipient is returned by Unseal (and OpenResult) when the payload
// was not sealed to the key given.
var ErrNotRecipient = errors.New("bundle: not a recipient of this sealed bundle or result")

// Sealing: a bundle travels and rests sealed with age (filippo.io/age, the
// format of age-encryption.org/v1) to the archive and central peers of its
// organisation (policy.SealRecipients). Each recipient is addressed by its
// libp2p peer ID: the Ed25519 key the ID embeds is used as an
// "ssh-ed25519" age recipient (agessh converts it to X25519), and the
// recipient opens the payload with its node key. VMs hold sealed copies
// for redundancy without being able to read them.

// Seal encrypts plain to every peer in recipients (Ed25519 peer IDs).
func Seal(w io.Writer, plain []byte, recipients []string) error {
	if len(recipients) == 0 {
		return fmt.Errorf("%w: no recipients to seal to; the node has not yet seen an archive or central peer of the organisation", ErrInvalid)
	}
	rs := make([]age.Recipient, 0, len(recipients))
	for _, r := range recipients {
		rc, err := recipient(r)
		if err != nil {
			return err
		}
		rs = append(rs, rc)
	}
	ew, err := age.Encrypt(w, rs...)
	if err != nil {
		return fmt.Errorf("bundle: seal: %w", err)
	}
	if _, err := ew.Write(plain); err != nil {
		return fmt.Errorf("bundle: seal: %w", err)
	}
	return ew.Close()
}

func recipient(id string) (age.Recipient, error) {
	p, err := peer.Decode(id)
	if err != nil {
		return nil, fmt.Errorf("%w: recipient %q is not a peer ID: %w", ErrInvalid, id, err)
	}
	pub, err := p.ExtractPublicKey()
	if err != nil || pub.Type() != crypto.Ed25519 {
		return nil, fmt.Errorf("%w: recipient %s has no embedded Ed25519 key", ErrInvalid, id)
	}
	raw, err := pub.Raw()
	if err != nil {
		return nil, err
	}
	sk, err := ssh.NewPublicKey(ed25519.PublicKey(raw))
	if err != nil {
		return nil, err
	}
	return agessh.NewEd25519Recipient(sk)
}

// Unseal decrypts a sealed payload with a node key. It wraps
// ErrNotRecipient if the payload is not sealed to key.
func Unseal(sealed []byte, key crypto.PrivKey) ([]byte, error) {
	if key == nil || key.Type() != crypto.Ed25519 {
		return nil, fmt.Errorf("%w: unsealing needs the node's Ed25519 key", ErrInvalid)
	}
	raw, err := key.Raw()
	if err != nil {
		return nil, err
	}
	id, err := agessh.NewEd25519Identity(ed25519.PrivateKey(raw))
	if err != nil {
		return nil, err
	}
	r, err := age.Decrypt(bytes.NewReader(sealed), id)
	var noMatch *age.NoIdentityMatchError
	if errors.As(err, &noMatch) {
		return nil, fmt.Errorf("%w: %w", ErrNotRecipient, err)
	}
	if err != nil {
		return nil, fmt.Errorf("bundle: unseal: %w", err)
	}
	var plain bytes.Buffer
	plain.Grow(len(sealed))
	if _, err := plain.ReadFrom(r); err != nil {
		return nil, fmt.Errorf("bundle: unseal: the sealed payload is damaged: %w", err)
	}
	return plain.Bytes(), nil
}

// Sealed results: a result record's variables are sealed the same way
// (schema.Result's sealed form), so that every VM of the centre can hold a
// copy that only its recipients read. The result's execution and finish
// time stay in clear: the organisation's rules and policy decide on them.

// SealResult returns the sealed form of rec, a results record in clear:
// its variables' JSON sealed to recipients (Ed25519 peer IDs). A sealed
// form that does not fit a record (schema.MaxSealedResult) is refused with
// an error wrapping schema.ErrInvalid.
func SealResult(rec schema.Record, recipients []string) (schema.Record, error) {
	res, err := resultBody(rec)
	if err != nil {
		return schema.Record{}, err
	}
	if res.IsSealed() {
		return rec, nil
	}
	plain, err := res.VariablesJSON()
	if err != nil {
		return schema.Record{}, err
	}
	var sealed bytes.Buffer
	if err := Seal(&sealed, plain, recipients); err != nil {
		return schema.Record{}, err
	}
	return schema.NewRecord(rec.Org, rec.ID, res.WithSealed(sealed.Bytes()))
}

// OpenResult returns the clear form of rec, a sealed results record, with
// key (a recipient's node key); a result in clear is returned as it is. It
// wraps ErrNotRecipient when rec was not sealed to key, and schema's
// errors when what it holds are not valid variables.
func OpenResult(rec schema.Record, key crypto.PrivKey) (schema.Record, error) {
	res, err := resultBody(rec)
	if err != nil {
		return schema.Record{}, err
	}
	if !res.IsSealed() {
		return rec, nil
	}
	ct, err := res.SealedBytes()
	if err != nil {
		return schema.Record{}, err
	}
	plain, err := Unseal(ct, key)
	if err != nil {
		return schema.Record{}, err
	}
	clear, err := res.WithVariables(plain)
	if err != nil {
		return schema.Record{}, err
	}
	return schema.NewRecord(rec.Org, rec.ID, clear)
}

// IsSealedResult reports whether rec is a results record in sealed form.
func IsSealedResult(rec schema.Record) bool {
	res, err := resultBody(rec)
	return err == nil && res.IsSealed()
}

func resultBody(rec schema.Record) (schema.Result, error) {
	if rec.Kind != schema.KindResults {
		return schema.Result{}, fmt.Errorf("%w: %s is not a result", ErrInvalid, rec.Key())
	}
	b, err := rec.DecodeBody()
	if err != nil {
		return schema.Result{}, err
	}
	return b.(schema.Result), nil
}
