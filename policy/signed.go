package policy

import (
	"bytes"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/examnode/examnode/schema"
)

// SignedVersion is the signed-record format version this node writes and
// reads.
const SignedVersion = 1

// MaxSignedSize bounds an encoded signed record: a record of
// schema.MaxRecordSize and the envelope.
const MaxSignedSize = 4 + 2 + (2 + maxPeerID) + 16 + 8 + 8 + 4 + schema.MaxRecordSize + sigSize

// SignedRecord is the envelope every record travels and is stored in: the
// schema-encoded record, signed by the node that wrote it, naming the
// membership it wrote under. go-ds-crdt merges whatever a connected peer
// announces; the envelope lets every receiver check who wrote what.
type SignedRecord struct {
	Version int // SignedVersion
	// Record is the record in canonical schema encoding (schema.Encode).
	Record []byte
	// Writer is the peer ID of the node that signed; its Ed25519 public
	// key is embedded in it.
	Writer string
	// Membership is the serial of the writer's membership the record is
	// written under.
	Membership Serial
	// Seq is the writer's sequence number, strictly increasing over all
	// its writes (see NextSeq), so a replayed older record can be told
	// from a newer one (CheckReplay). Never 0.
	Seq uint64
	// At is when the writer signed, by its clock. The membership must be
	// valid, and not revoked, at At (CheckSigned).
	At time.Time
	// Sig is the writer's Ed25519 signature over the statement.
	Sig []byte
}

// NextSeq returns the sequence number a writer uses after last: the larger
// of last+1 and now in Unix nanoseconds. A writer that lost its counter
// (reinstalled, restored from backup) thus continues above its old numbers
// as long as its clock has not gone back; persisting last is still best.
func NextSeq(last uint64, now time.Time) uint64 {
	next := last + 1
	if n := now.UnixNano(); n > 0 && uint64(n) > next {
		next = uint64(n)
	}
	return next
}

// Sign signs record (canonical schema encoding) as the node whose key is
// priv, under membership m, with sequence number seq, at now. It refuses
// (ErrInvalid) a key that is not Ed25519, seq 0, a record that is not a
// valid record in canonical encoding, and (ErrMembershipMismatch) a
// membership of another peer. It does not check m's validity or that m
// may write the record: the receiver does, and the writer should too
// (Check, MayWrite) before sending.
func Sign(priv crypto.PrivKey, m Membership, record []byte, seq uint64, now time.Time) (SignedRecord, error) {
	if priv == nil || priv.Type() != crypto.Ed25519 {
		return SignedRecord{}, fmt.Errorf("%w: sign: examnode node keys are Ed25519", ErrInvalid)
	}
	id, err := peer.IDFromPrivateKey(priv)
	if err != nil {
		return SignedRecord{}, fmt.Errorf("%w: sign: %v", ErrInvalid, err)
	}
	if id.String() != m.Peer {
		return SignedRecord{}, fmt.Errorf("%w: this node is peer %s, but membership %s is peer %s's; use this node's own membership",
			ErrMembershipMismatch, id, m.Serial, m.Peer)
	}
	if seq == 0 {
		return SignedRecord{}, fmt.Errorf("%w: sign: sequence number 0; use NextSeq", ErrInvalid)
	}
	rec, err := schema.Decode(record)
	if err != nil {
		return SignedRecord{}, fmt.Errorf("%w: sign: %w", ErrInvalid, err)
	}
	if enc, err := schema.Encode(rec); err != nil || !bytes.Equal(enc, record) {
		return SignedRecord{}, fmt.Errorf("%w: sign: %s in %s is not in canonical encoding; encode it with schema.Encode", ErrInvalid, rec.Key(), rec.Org)
	}
	sr := SignedRecord{
		Version:    SignedVersion,
		Record:     bytes.Clone(record),
		Writer:     m.Peer,
		Membership: m.Serial,
		Seq:        seq,
		At:         utc(now),
	}
	if err := checkTime("at", sr.At); err != nil {
		return SignedRecord{}, fmt.Errorf("sign: %w", err)
	}
	if sr.Sig, err = priv.Sign(sr.statement()); err != nil {
		return SignedRecord{}, fmt.Errorf("policy: sign: %w", err)
	}
	return sr, nil
}

func (sr SignedRecord) statement() []byte {
	var e encoder
	e.b = make([]byte, 0, 64+len(sr.Record)+len(sr.Writer))
	e.raw([]byte(magicSigned))
	e.u16(uint16(sr.Version))
	e.str(sr.Writer)
	e.raw(sr.Membership[:])
	e.u64(sr.Seq)
	e.time(sr.At)
	e.u32(uint32(len(sr.Record)))
	e.raw(sr.Record)
	return e.b
}

// EncodeSigned returns the canonical encoding: the statement (magic
// "EXSR", uint16 version, writer, membership serial, uint64 sequence,
// signed-at, uint32-length-prefixed record) followed by the 64-byte
// signature over exactly the statement's bytes. This is the value the crdt
// layer stores at the record's key.
func EncodeSigned(sr SignedRecord) []byte { return append(sr.statement(), sr.Sig...) }

// DecodeSigned reads what EncodeSigned wrote, refusing anything else
// (ErrMalformed) and other format versions (ErrUnsupportedVersion). It
// does not check the signature (VerifySigned) nor decode the record
// (schema.Decode).
func DecodeSigned(b []byte) (SignedRecord, error) {
	if len(b) > MaxSignedSize {
		return SignedRecord{}, fmt.Errorf("%w signed record: %d bytes; the limit is %d", ErrMalformed, len(b), MaxSignedSize)
	}
	stmt, sig := splitSig(b)
	if sig == nil {
		return SignedRecord{}, fmt.Errorf("%w signed record: %d bytes is too short to be one", ErrMalformed, len(b))
	}
	d := decoder{b: stmt, what: "signed record"}
	var sr SignedRecord
	sr.Version = d.header(magicSigned, SignedVersion)
	sr.Writer = d.str("writer", maxPeerID)
	sr.Membership = d.serial("membership serial")
	sr.Seq = d.u64("sequence")
	sr.At = d.time("signed-at")
	n := d.u32("record length")
	if d.err == nil && n > schema.MaxRecordSize {
		d.fail("the record is %d bytes; the limit is %d", n, schema.MaxRecordSize)
	}
	sr.Record = bytes.Clone(d.take(int(n), "record"))
	if err := d.finish(); err != nil {
		return SignedRecord{}, err
	}
	if err := sr.validate(); err != nil {
		return SignedRecord{}, fmt.Errorf("%w signed record: %w", ErrMalformed, err)
	}
	sr.Sig = sig
	return sr, nil
}

func (sr SignedRecord) validate() error {
	if sr.Version != SignedVersion {
		return versionErr("signed record format", sr.Version, SignedVersion)
	}
	if err := checkPeer("writer", sr.Writer); err != nil {
		return err
	}
	switch {
	case sr.Membership.IsZero():
		return fmt.Errorf("%w: the membership serial is zero", ErrInvalid)
	case sr.Seq == 0:
		return fmt.Errorf("%w: the sequence number is 0", ErrInvalid)
	case len(sr.Record) == 0:
		return fmt.Errorf("%w: the record is empty", ErrInvalid)
	case len(sr.Record) > schema.MaxRecordSize:
		return fmt.Errorf("%w: the record is %d bytes; the limit is %d", ErrInvalid, len(sr.Record), schema.MaxRecordSize)
	}
	return nil
}

// VerifySigned checks the format version and that sr is signed by its
// Writer, with the Ed25519 key embedded in the writer's peer ID
// (ErrBadSignature: forged, or altered after signing). It says nothing
// about the writer's membership: CheckSigned does.
func VerifySigned(sr SignedRecord) error {
	if err := sr.validate(); err != nil {
		return err
	}
	pk, err := peerKey(sr.Writer)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if ok, err := pk.Verify(sr.statement(), sr.Sig); err != nil || !ok {
		return fmt.Errorf("%w: a record (sequence %d) claims writer %s but is not signed by that peer; it was forged or altered in transit: refused",
			ErrBadSignature, sr.Seq, sr.Writer)
	}
	return nil
}

// CheckSigned is the whole trust decision for a signed record that
// arrives, short of MayWrite: VerifySigned; the record names membership m
// and m is its writer's (ErrMembershipMismatch); it was not signed after
// now + trust.ClockSkew (ErrFuture); and m is valid, and not revoked, at
// the time the record was signed (Check at sr.At). A record written while
// its membership was valid therefore stays valid after the membership
// expires or is revoked, and a new peer can still replicate the history.
func CheckSigned(sr SignedRecord, m Membership, revs RevocationSet, trust Trust, now time.Time) error {
	if err := checkSignedRecord(sr, m, trust, now); err != nil {
		return err
	}
	if err := Check(m, revs, trust, sr.At); err != nil {
		return fmt.Errorf("record signed by %s at %s: %w", sr.Writer, sr.At.Format(time.RFC3339), err)
	}
	return nil
}

// CheckSignedVerified is CheckSigned for a membership m that the caller
// verified already (Verify or Check with this trust, e.g. when it stored
// m): it makes every check CheckSigned makes except the authority's
// signature over m, which is the same for every record m signed. A
// verified view that decides many records of one writer thus verifies
// one signature per record instead of two. Passing an unverified m is a
// bug: it would trust a forged membership.
func CheckSignedVerified(sr SignedRecord, m Membership, revs RevocationSet, trust Trust, now time.Time) error {
	if err := checkSignedRecord(sr, m, trust, now); err != nil {
		return err
	}
	if m.Network != trust.Network {
		return fmt.Errorf("%w: membership %s of peer %s is for network %q, but this node is in network %q",
			ErrWrongNetwork, m.Serial, m.Peer, m.Network, trust.Network)
	}
	if err := m.window(sr.At); err != nil {
		return fmt.Errorf("record signed by %s at %s: %w", sr.Writer, sr.At.Format(time.RFC3339), err)
	}
	if err := notRevoked(m, revs, sr.At); err != nil {
		return fmt.Errorf("record signed by %s at %s: %w", sr.Writer, sr.At.Format(time.RFC3339), err)
	}
	return nil
}

// checkSignedRecord makes the checks CheckSigned and CheckSignedVerified
// share: a usable trust, the writer's signature, the membership named, and
// no signing time in the future.
func checkSignedRecord(sr SignedRecord, m Membership, trust Trust, now time.Time) error {
	if err := trust.check(); err != nil {
		return err
	}
	if err := VerifySigned(sr); err != nil {
		return err
	}
	if sr.Membership != m.Serial || sr.Writer != m.Peer {
		return fmt.Errorf("%w: the record by %s names membership %s, but was checked against membership %s of peer %s; look the membership up by the record's serial",
			ErrMembershipMismatch, sr.Writer, sr.Membership, m.Serial, m.Peer)
	}
	if sr.At.After(now.Add(trust.ClockSkew)) {
		return fmt.Errorf("%w: peer %s signed a record at %s, after this node's time %s (allowed skew %s); check the clocks of both machines",
			ErrFuture, sr.Writer, sr.At.Format(time.RFC3339Nano), now.UTC().Format(time.RFC3339Nano), trust.ClockSkew)
	}
	return nil
}

// CheckReplay refuses (ErrReplay) sr unless its sequence number is above
// lastSeen: the Seq of the newest record from the same writer the caller
// has accepted at the same key (0 if none). Call it after checking that
// sr is not byte-for-byte the record already stored (a duplicate is a
// no-op, not a replay).
//
// Keep lastSeen per (writer, key), not per writer: go-ds-crdt delivers
// deltas out of order (a new peer walks the DAG from the heads down), so
// a per-writer high-water mark would refuse honest history.
func CheckReplay(sr SignedRecord, lastSeen uint64) error {
	if sr.Seq > lastSeen {
		return nil
	}
	return fmt.Errorf("%w: peer %s's record has sequence %d, but a record of sequence %d from it is already accepted at this key; an old record was sent again: refused",
		ErrReplay, sr.Writer, sr.Seq, lastSeen)
}
