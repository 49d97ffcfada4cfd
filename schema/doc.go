// Package schema defines examnode's record kinds, their keys, their typed
// bodies and validation, the versioned encoding of records, which role
// writes which kind, the write rules of the exam systems examnode replaces,
// and the result bundle manifest format. It does no I/O and knows nothing
// of libp2p: every function is pure, and callers inject time.
//
// # Records and keys
//
// Every record belongs to one organisation (a test centre) and lives at
// /<kind>/<id> inside that organisation's namespace (Key, ParseKey). IDs
// are 1 to 128 characters of A-Z a-z 0-9 . _ - (not "." or ".."),
// organisation IDs 1 to 64 of the same (ValidateID, ValidateOrgID).
//
// A record is a versioned envelope, Record{Schema, Kind, ID, Org, Body},
// with the kind's typed body as JSON. JSON property names are lower_snake
// (test_taker, max_attempts, deleted_at); times are RFC 3339. Encode writes
// a canonical form (compact, fields in declaration order, map keys sorted,
// times in UTC, no HTML escaping), so equal records are equal bytes; Decode
// accepts any valid record and returns it canonical. Decode refuses, with a
// reason, records of a schema version this node does not read
// (ErrUnsupportedVersion: "upgrade examnode"), unknown kinds and
// properties, duplicate properties, trailing data and records over
// MaxRecordSize.
//
// Properties that must never be stored (passwords, secrets, application
// and private keys, API tokens; see IsExcludedProperty) are refused at any
// depth, including inside free-form JSON such as ResultLog.Data, with
// ErrForbiddenProperty.
//
// # Key conventions
//
// go-ds-crdt resolves concurrent writes to one key by DAG height, not by
// wall clock, so the keys are laid out so that concurrent writers rarely
// share one, and Validate enforces the layout:
//
//   - results/<executionID> and bundles/<executionID>: one per execution
//     version, written once by the VM that ran it;
//   - result-logs/<executionID>.<seq as 20 digits> (LogID), or
//     <executionID>.<unique suffix containing a non-digit> for a writer
//     without a sequence;
//   - executions/<executionID> is version 1; a proctor's reactivation of a
//     finished execution writes executions/<executionID>.v<N>
//     (ExecutionVersionID) with Version N and Previous naming version N-1,
//     instead of overwriting the finished record. Execution IDs therefore
//     never end in .v<digits> except as that suffix;
//   - custody/<bundle>.<holder peer ID> (CustodyID) and
//     bundle-receipts/<bundle>.<archive peer ID> (ReceiptID): one key per
//     holder, so VMs and archives never collide;
//   - retention-records/<bundle>;
//   - test-centers records carry org_id equal to their own organisation.
//
// # Roles and rules
//
// Each kind has one writer role (Kind.Writer, CanWrite): central writes the
// directory (test centres, users, eligibilities, deliveries, LTI
// consumers), a VM writes what happens in an exam, an archive writes
// receipts and retention records. Results, result logs, bundles, custody
// and receipts are append-only (Kind.AppendOnly); only central kinds are
// deletable (Kind.Deletable). CheckWrite, CheckResult and CheckEligible
// enforce the rules of the systems examnode replaces: append-only keys,
// reactivation as a new version, results only for finished executions,
// service only to eligible test-takers.
//
// # Bundle manifests
//
// Manifest is the list of a result bundle's files with their SHA-256, in
// exactly the text form `sha256sum -c` reads; ParseManifest accepts only
// that canonical form, because the producing VM signs it.
package schema
