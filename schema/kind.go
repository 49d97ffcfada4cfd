package schema

import "fmt"

// Kind names a kind of record; it is the first component of a key.
type Kind string

// The kinds, grouped by the role that writes them.
const (
	// Written by central: authoritative, replicated to the VMs.
	KindTestCenters    Kind = "test-centers"
	KindAdministrators Kind = "administrators"
	KindProctors       Kind = "proctors"
	KindTestTakers     Kind = "test-takers"
	KindEligibilities  Kind = "eligibilities"
	KindDeliveries     Kind = "deliveries"
	KindLTIConsumers   Kind = "lti-consumers"

	// Written by a VM: what happens during an exam.
	KindExecutions Kind = "executions"
	KindResults    Kind = "results"
	KindResultLogs Kind = "result-logs"
	KindLTIUsers   Kind = "lti-users"
	KindBundles    Kind = "bundles" // result bundle metadata
	KindCustody    Kind = "custody" // "this VM holds bundle X"

	// Written by an archive.
	KindBundleReceipts   Kind = "bundle-receipts"
	KindRetentionRecords Kind = "retention-records"
)

type kindInfo struct {
	writer     Role
	appendOnly bool
	deletable  bool
	newBody    func() any // pointer to a zero body
}

var kindOrder = []Kind{
	KindTestCenters, KindAdministrators, KindProctors, KindTestTakers,
	KindEligibilities, KindDeliveries, KindLTIConsumers,
	KindExecutions, KindResults, KindResultLogs, KindLTIUsers, KindBundles, KindCustody,
	KindBundleReceipts, KindRetentionRecords,
}

var kinds = map[Kind]kindInfo{
	KindTestCenters:    {RoleCentral, false, true, func() any { return new(TestCenter) }},
	KindAdministrators: {RoleCentral, false, true, func() any { return new(Administrator) }},
	KindProctors:       {RoleCentral, false, true, func() any { return new(Proctor) }},
	KindTestTakers:     {RoleCentral, false, true, func() any { return new(TestTaker) }},
	KindEligibilities:  {RoleCentral, false, true, func() any { return new(Eligibility) }},
	KindDeliveries:     {RoleCentral, false, true, func() any { return new(Delivery) }},
	KindLTIConsumers:   {RoleCentral, false, true, func() any { return new(LTIConsumer) }},

	KindExecutions: {RoleVM, false, false, func() any { return new(Execution) }},
	KindResults:    {RoleVM, true, false, func() any { return new(Result) }},
	KindResultLogs: {RoleVM, true, false, func() any { return new(ResultLog) }},
	KindLTIUsers:   {RoleVM, false, false, func() any { return new(LTIUser) }},
	KindBundles:    {RoleVM, true, false, func() any { return new(BundleMeta) }},
	KindCustody:    {RoleVM, true, false, func() any { return new(Custody) }},

	KindBundleReceipts:   {RoleArchive, true, false, func() any { return new(BundleReceipt) }},
	KindRetentionRecords: {RoleArchive, false, false, func() any { return new(RetentionRecord) }},
}

// Kinds lists every kind in a stable order: central kinds, then VM kinds,
// then archive kinds.
func Kinds() []Kind { return append([]Kind(nil), kindOrder...) }

func kindNames() string {
	names := make([]string, len(kindOrder))
	for i, k := range kindOrder {
		names[i] = string(k)
	}
	return quoteList(names)
}

// ParseKind turns a kind's name ("test-takers") into a Kind. Anything else
// is an error wrapping ErrUnknownKind that lists the valid kinds.
func ParseKind(s string) (Kind, error) {
	k := Kind(s)
	if k.Valid() {
		return k, nil
	}
	return "", fmt.Errorf("%w %q: use one of %s", ErrUnknownKind, s, kindNames())
}

// Valid reports whether k is one of Kinds().
func (k Kind) Valid() bool {
	_, ok := kinds[k]
	return ok
}

// Writer is the role that writes k; "" for an unknown kind.
func (k Kind) Writer() Role { return kinds[k].writer }

// AppendOnly reports whether a record of kind k, once written, is never
// replaced by a different one: results, result-logs, bundles, custody and
// bundle-receipts. Writing the identical record again is a no-op (see
// CheckWrite).
func (k Kind) AppendOnly() bool { return kinds[k].appendOnly }

// Deletable reports whether records of kind k may be deleted, by their
// writer. Only the central kinds are: they are directory data the central
// operator curates. Everything a VM or an archive writes is exam evidence
// and is never deleted (retention removes a bundle's payload and records
// that it did, in a retention-record; it deletes no record).
func (k Kind) Deletable() bool { return kinds[k].deletable }

var writerReason = map[Role]string{
	RoleCentral: "central data is authoritative; change it on the central host",
	RoleVM:      "it is written by the exam VM that runs the session",
	RoleArchive: "it is written by the archive that holds the bundle",
}

// CanWrite returns nil if role writes kind, else an error wrapping
// ErrRoleMayNotWrite (or ErrUnknownRole, ErrUnknownKind) that says why, e.g.
// "role vm may not write test-takers: central data is authoritative; ...".
// A receiving node applies it to every record that arrives, not only the
// writer to its own.
func CanWrite(role Role, kind Kind) error {
	if _, err := ParseRole(string(role)); err != nil {
		return err
	}
	if _, err := ParseKind(string(kind)); err != nil {
		return err
	}
	w := kind.Writer()
	if w == role {
		return nil
	}
	return fmt.Errorf("%w: role %s may not write %s: %s", ErrRoleMayNotWrite, role, kind, writerReason[w])
}

// CanDelete returns nil if role may delete records of kind: role must be
// kind's writer (ErrRoleMayNotWrite) and kind must be Deletable
// (ErrNotDeletable).
func CanDelete(role Role, kind Kind) error {
	if err := CanWrite(role, kind); err != nil {
		return err
	}
	if kind.Deletable() {
		return nil
	}
	why := "they are exam evidence"
	if kind.AppendOnly() {
		why = "they are append-only exam evidence"
	}
	if kind == KindRetentionRecords {
		why = "they are the proof that a payload was deleted"
	}
	return fmt.Errorf("%w: %s records are never deleted: %s", ErrNotDeletable, kind, why)
}
