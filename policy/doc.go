// Package policy makes examnode's trust decisions: the network authority,
// membership certificates (peer, role, organisations, validity), their
// revocation, signed records, and who may connect, announce, read and
// write what, sealing recipients, retention and excluded properties. It
// does no I/O and keeps no state: every decision is a pure function of its
// arguments, and every function that depends on time takes now.
//
// # Why
//
// go-ds-crdt merges any delta a connected peer announces: it has no write
// authorisation. So every record travels in a SignedRecord signed by its
// writer's node key, naming the membership it was written under, and every
// node checks it on arrival, not only where it was made. Memberships are
// statements signed by the network authority, an Ed25519 key pair whose
// private half never enters a replicated store; nodes are configured with
// its public half (AuthorityKey) and their network's name (Trust).
//
// # Encodings
//
// Memberships, revocations and signed records are binary statements
// followed by a 64-byte Ed25519 signature over exactly the statement's
// bytes. A statement starts with a 4-byte magic ("EXMB", "EXRV", "EXSR"),
// so a signature over one kind is never valid for another, then a uint16
// format version, read before anything else so a newer peer's statement is
// refused as "version N is not supported (reads M)" rather than as
// garbage. Integers are big-endian of fixed width, strings have a uint16
// length, times are int64 Unix nanoseconds, organisation lists are sorted
// and unique, and decoders refuse trailing bytes, unknown flag values and
// anything the constructors would not produce: every value has exactly one
// encoding, which is what makes "sign the bytes, compare the bytes" sound
// (JSON has many spellings of one value; a canonicalising JSON decoder is
// more code to trust than this). Decoders never check signatures; Verify,
// VerifyRevocation and VerifySigned do.
//
// Printable forms, for configs and command lines, are a prefix and the
// bytes in unpadded base64url: "examnode-authority:…" (the 32-byte public
// key), "examnode-membership:…", "examnode-revocation:…". Parsers accept
// exactly what String writes (no whitespace, no padding). The authority's
// private key is a PEM block of type "EXAMNODE AUTHORITY PRIVATE KEY"
// holding the 32-byte Ed25519 seed.
//
// # Where each layer calls what
//
// The connection gater and the hello exchange (mesh): a peer presents its
// memberships (Membership.Encode) in the hello; the receiver decodes them,
// keeps those that pass Check (signature, network, validity window,
// revocations) and refuses the connection unless MayConnect passes for one
// of them. CheckPeerVersion runs on the hello's protocol and schema
// versions. Re-run MayConnect when a membership expires or a revocation
// arrives, and close connections that fail.
//
// Gossipsub validators (mesh): for organisation O's topic, accept a
// message only if the sender's checked membership passes MayAnnounce(m, O);
// serve O's blocks and heads (bitswap, heads exchange, bulk pull) only to
// peers passing MayRead(m, O).
//
// The write rules (crdt and node): Decide is the one rule engine. The
// value stored at a key is EncodeSigned(sr); for one key, Decide takes the
// elements go-ds-crdt merged there and Lookups (the memberships and
// revocations the view holds, its executions and deletions) and, per
// element: DecodeSigned; the membership whose Serial is sr.Membership
// (else parked); CheckSignedVerified; schema.Decode(sr.Record); MayWrite
// with where it arrived and one lookup (ExecutionOf); CheckRecordRules;
// CheckReplay per writer over earlier deltas; schema.CheckWrite over the
// key's versions; signed deletions at DeletionKey. ErrUnknownExecution and
// schema.ErrNotFinished mean "not yet": the element is parked until its
// execution changes. Every receiver's verified view runs Decide on what
// arrives; every sender runs it on the element it is about to send, beside
// its own view's elements (crdt.Replica.Check), so the sender refuses
// exactly what receivers refuse. Writers sign with Sign and a sequence
// from NextSeq. Deletes carry no value in go-ds-crdt, so they cannot be
// signed: a delete is also a signed record at DeletionKey.
//
// Sealing (node, with package bundle): a bundle is sealed to
// SealRecipients, a result's variables to ResultRecipients (the same peers
// plus the VM that writes it); an empty ResultRecipients means no one else
// could read the result, and the writer stores it in clear and says so.
//
// Keep refusals deterministic (a function of the record and the stored
// state the DAG itself determines), or replicas that saw deltas in
// different orders will diverge.
package policy
