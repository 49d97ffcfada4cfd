package schema

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Field limits.
const (
	maxText   = 256 // labels, names, logins, keys, rules
	maxEvent  = 128 // result-log event names
	maxEmail  = 254
	maxPeerID = 128
)

// The range of every time in a record.
var (
	minTime = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)
)

// TestCenter is a test centre: one organisation. Kind test-centers, written
// by central; the record lives in the centre's own organisation, so OrgID
// equals the record's Org.
type TestCenter struct {
	Label string `json:"label"`
	OrgID string `json:"org_id"`
}

// Administrator is a centre administrator. Kind administrators, by central.
type Administrator struct {
	Login string `json:"login"`
	Name  string `json:"name"`
	Email string `json:"email"`
}

// Proctor supervises exams in the listed test centres (test-centers IDs).
// Kind proctors, by central.
type Proctor struct {
	Login       string   `json:"login"`
	Name        string   `json:"name"`
	TestCenters []string `json:"test_centers"`
}

// TestTaker is a candidate. Name and Email are optional (anonymous exams
// identify candidates by login only). Kind test-takers, by central.
type TestTaker struct {
	Login string `json:"login"`
	Name  string `json:"name,omitempty"`
	Email string `json:"email,omitempty"`
}

// Eligibility lets the listed test-takers sit Delivery at TestCenter; with
// ByProctor, a proctor must authorise each start. Kind eligibilities, by
// central.
type Eligibility struct {
	TestCenter string   `json:"test_center"`
	Delivery   string   `json:"delivery"`
	TestTakers []string `json:"test_takers"`
	ByProctor  bool     `json:"by_proctor"`
}

// Delivery is a published test: its package and the window in which it may
// be taken. MaxAttempts 0 means unlimited. Kind deliveries, by central.
type Delivery struct {
	Label       string    `json:"label"`
	Opens       time.Time `json:"opens"`
	Closes      time.Time `json:"closes"`
	Package     BlobRef   `json:"package"`
	MaxAttempts int       `json:"max_attempts"`
}

// BlobRef points at content-addressed bulk data (a test package): its CID,
// SHA-256 (64 lowercase hex digits), size in bytes and media type.
type BlobRef struct {
	CID       string `json:"cid"`
	SHA256    string `json:"sha256"`
	Size      int64  `json:"size"`
	MediaType string `json:"media_type"`
}

// LTIConsumer is an LTI tool consumer. Key is the public consumer key; the
// consumer secret is never stored (a "secret" or "consumer_secret" property
// is refused). Kind lti-consumers, by central.
type LTIConsumer struct {
	Label string `json:"label"`
	Key   string `json:"key"`
}

// ExecutionState is the state of a delivery execution (a test session).
type ExecutionState string

// Execution states. Finished and terminated are final: reactivation writes
// a new version (see ExecutionVersionID).
const (
	ExecutionActive     ExecutionState = "active"
	ExecutionPaused     ExecutionState = "paused"
	ExecutionFinished   ExecutionState = "finished"
	ExecutionTerminated ExecutionState = "terminated"
)

var executionStates = []string{"active", "paused", "finished", "terminated"}

// Final reports whether s is finished or terminated.
func (s ExecutionState) Final() bool { return s == ExecutionFinished || s == ExecutionTerminated }

// Execution is a test session: TestTaker sitting Delivery on the VM with
// peer ID VM. The first version is stored at the execution's ID with
// Version 1 and no Previous; a proctor's reactivation writes version N at
// ExecutionVersionID(id, N) with Previous naming version N-1. Finished is
// set exactly when State is final. Kind executions, by a VM.
type Execution struct {
	Delivery  string         `json:"delivery"`
	TestTaker string         `json:"test_taker"`
	State     ExecutionState `json:"state"`
	Started   time.Time      `json:"started"`
	Finished  *time.Time     `json:"finished,omitempty"`
	VM        string         `json:"vm"`
	Version   int            `json:"version"`
	Previous  string         `json:"previous,omitempty"`
}

// Result is the outcome of a finished execution, stored at the execution's
// ID (one result per execution version). Kind results, by a VM,
// append-only.
//
// A result has one of two forms. In clear, Variables holds the variables
// (an empty object for none) and Sealed is absent. Sealed, Variables is
// absent and Sealed holds the variables' JSON encrypted to the result's
// recipients (the organisation's central and archive peers and the VM that
// wrote it): the standard base64 of an age file (SealedResultFormat), at
// most MaxSealedResult characters. Execution and Finished stay in clear in
// both forms: the organisation's rules and policy decide on them. Only the
// variables are secret. This package checks the form; package bundle seals
// and opens (SealResult, OpenResult).
type Result struct {
	Execution string                    `json:"execution"`
	Variables map[string]ResultVariable `json:"variables,omitzero"`
	Sealed    string                    `json:"sealed,omitempty"`
	Finished  time.Time                 `json:"finished"`
}

// Sealed results.
const (
	// SealedResultFormat is the first line of every sealed result's
	// ciphertext: the age file format (age-encryption.org/v1).
	SealedResultFormat = "age-encryption.org/v1"
	// MaxSealedResult bounds Result.Sealed, in base64 characters: the
	// largest that fits a record with room for the envelope. Variables
	// whose sealed form is larger are refused at the writer.
	MaxSealedResult = MaxRecordSize - 16<<10
)

// IsSealed reports whether the result is in sealed form.
func (b Result) IsSealed() bool { return b.Sealed != "" }

// SealedBytes returns the ciphertext of a sealed result (the decoded
// Sealed), or ErrInvalid.
func (b Result) SealedBytes() ([]byte, error) {
	if b.Sealed == "" {
		return nil, invalid("body.sealed", "required", "is absent: the result is in clear")
	}
	raw, err := base64.StdEncoding.DecodeString(b.Sealed)
	if err != nil || base64.StdEncoding.EncodeToString(raw) != b.Sealed {
		// One spelling only: no line breaks, no stray padding bits.
		return nil, invalid("body.sealed", "format", "is not standard base64 (RFC 4648, with padding, on one line)")
	}
	if !bytes.HasPrefix(raw, []byte(SealedResultFormat+"\n")) {
		return nil, invalid("body.sealed", "format", "is not an age file ("+SealedResultFormat+")")
	}
	return raw, nil
}

// VariablesJSON is the canonical JSON of the variables of a result in
// clear: what is sealed.
func (b Result) VariablesJSON() ([]byte, error) {
	if b.IsSealed() {
		return nil, invalid("body.variables", "required", "is absent: the result is sealed")
	}
	return marshal(b.normalized().(Result).Variables)
}

// WithSealed returns the sealed form of the result, with ciphertext (an
// age file of VariablesJSON) as Sealed.
func (b Result) WithSealed(ciphertext []byte) Result {
	b.Variables, b.Sealed = nil, base64.StdEncoding.EncodeToString(ciphertext)
	return b
}

// WithVariables returns the clear form of the result, with the variables
// read from plain (VariablesJSON of the result that was sealed). The
// variables are checked when the result goes into a record (NewRecord).
func (b Result) WithVariables(plain []byte) (Result, error) {
	dec := json.NewDecoder(bytes.NewReader(plain))
	dec.DisallowUnknownFields()
	var vars map[string]ResultVariable
	if err := dec.Decode(&vars); err != nil {
		return Result{}, invalid("body.sealed", "format", "does not hold result variables as JSON: "+jsonErrText(err))
	}
	if vars == nil {
		vars = map[string]ResultVariable{}
	}
	b.Variables, b.Sealed = vars, ""
	return b, nil
}

// ResultVariable is one QTI outcome or response variable. Value is the
// variable's value as JSON (null for a NULL value); BaseType is empty for
// record cardinality.
type ResultVariable struct {
	BaseType    string          `json:"base_type"`
	Cardinality string          `json:"cardinality"`
	Value       json.RawMessage `json:"value"`
}

// QTI base types and cardinalities accepted in a ResultVariable.
var (
	qtiBaseTypes = []string{"identifier", "boolean", "integer", "float", "string", "point", "pair",
		"directedPair", "duration", "file", "uri", "intOrIdentifier"}
	qtiCardinalities = []string{"single", "multiple", "ordered", "record"}
)

// ResultLog is one event of an execution's log. It is stored at
// LogID(Execution, Seq), or at "<execution>.<unique suffix>" for a writer
// without a sequence, so concurrent writers never share a key. Kind
// result-logs, by a VM, append-only.
type ResultLog struct {
	Execution string          `json:"execution"`
	Seq       uint64          `json:"seq"`
	At        time.Time       `json:"at"`
	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data,omitempty"`
}

// LTIUser is a user launched from an LTI consumer. Kind lti-users, by a VM.
type LTIUser struct {
	ConsumerKey string   `json:"consumer_key"`
	UserID      string   `json:"user_id"`
	Roles       []string `json:"roles"`
}

// BundleMeta describes the result bundle of a finished execution, stored at
// the execution's ID: its SHA-256, size, the peer ID of the VM that signed
// its manifest, and the CID of its root block. Kind bundles, by a VM,
// append-only (the same bundle again is a no-op).
type BundleMeta struct {
	Execution string    `json:"execution"`
	SHA256    string    `json:"sha256"`
	Size      int64     `json:"size"`
	Signer    string    `json:"signer"`
	Created   time.Time `json:"created"`
	Root      string    `json:"root"`
}

// Custody says peer Holder holds a copy of Bundle since At. Stored at
// CustodyID(Bundle, Holder). Kind custody, by a VM, append-only.
type Custody struct {
	Bundle string    `json:"bundle"`
	Holder string    `json:"holder"`
	At     time.Time `json:"at"`
}

// BundleReceipt says archive peer Archive holds Bundle with this SHA-256.
// Stored at ReceiptID(Bundle, Archive). Kind bundle-receipts, by an
// archive, append-only.
type BundleReceipt struct {
	Bundle  string    `json:"bundle"`
	SHA256  string    `json:"sha256"`
	Archive string    `json:"archive"`
	At      time.Time `json:"at"`
}

// RetentionRecord says Bundle's payload was deleted at DeletedAt under
// Rule; the metadata stays. Stored at the bundle's ID. Kind
// retention-records, by an archive.
type RetentionRecord struct {
	Bundle    string    `json:"bundle"`
	Rule      string    `json:"rule"`
	DeletedAt time.Time `json:"deleted_at"`
}

// Kind methods.
func (TestCenter) Kind() Kind      { return KindTestCenters }
func (Administrator) Kind() Kind   { return KindAdministrators }
func (Proctor) Kind() Kind         { return KindProctors }
func (TestTaker) Kind() Kind       { return KindTestTakers }
func (Eligibility) Kind() Kind     { return KindEligibilities }
func (Delivery) Kind() Kind        { return KindDeliveries }
func (LTIConsumer) Kind() Kind     { return KindLTIConsumers }
func (Execution) Kind() Kind       { return KindExecutions }
func (Result) Kind() Kind          { return KindResults }
func (ResultLog) Kind() Kind       { return KindResultLogs }
func (LTIUser) Kind() Kind         { return KindLTIUsers }
func (BundleMeta) Kind() Kind      { return KindBundles }
func (Custody) Kind() Kind         { return KindCustody }
func (BundleReceipt) Kind() Kind   { return KindBundleReceipts }
func (RetentionRecord) Kind() Kind { return KindRetentionRecords }

// Normalisation.
func (b TestCenter) normalized() Body    { return b }
func (b Administrator) normalized() Body { return b }
func (b Proctor) normalized() Body       { b.TestCenters = nonNil(b.TestCenters); return b }
func (b TestTaker) normalized() Body     { return b }
func (b Eligibility) normalized() Body   { b.TestTakers = nonNil(b.TestTakers); return b }
func (b Delivery) normalized() Body      { b.Opens, b.Closes = b.Opens.UTC(), b.Closes.UTC(); return b }
func (b LTIConsumer) normalized() Body   { return b }
func (b Execution) normalized() Body {
	b.Started = b.Started.UTC()
	if b.Finished != nil {
		f := b.Finished.UTC()
		b.Finished = &f
	}
	return b
}
func (b Result) normalized() Body {
	b.Finished = b.Finished.UTC()
	if b.Sealed != "" && b.Variables == nil {
		return b // sealed: no variables
	}
	vars := make(map[string]ResultVariable, len(b.Variables))
	for k, v := range b.Variables {
		vars[k] = v
	}
	b.Variables = vars
	return b
}
func (b ResultLog) normalized() Body {
	b.At = b.At.UTC()
	if string(b.Data) == "null" {
		b.Data = nil
	}
	return b
}
func (b LTIUser) normalized() Body         { b.Roles = nonNil(b.Roles); return b }
func (b BundleMeta) normalized() Body      { b.Created = b.Created.UTC(); return b }
func (b Custody) normalized() Body         { b.At = b.At.UTC(); return b }
func (b BundleReceipt) normalized() Body   { b.At = b.At.UTC(); return b }
func (b RetentionRecord) normalized() Body { b.DeletedAt = b.DeletedAt.UTC(); return b }

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Validation.

func (b TestCenter) validate(r *Record) error {
	return firstErr(
		checkText("body.label", b.Label, true),
		checkID("body.org_id", b.OrgID, MaxOrgIDLength),
		match("body.org_id", b.OrgID, r.Org, "the record's org: a test centre is stored in its own organisation"),
	)
}

func (b Administrator) validate(*Record) error {
	return firstErr(
		checkToken("body.login", b.Login),
		checkText("body.name", b.Name, true),
		checkEmail("body.email", b.Email, true),
	)
}

func (b Proctor) validate(*Record) error {
	return firstErr(
		checkToken("body.login", b.Login),
		checkText("body.name", b.Name, true),
		checkIDList("body.test_centers", b.TestCenters, false),
	)
}

func (b TestTaker) validate(*Record) error {
	return firstErr(
		checkToken("body.login", b.Login),
		checkText("body.name", b.Name, false),
		checkEmail("body.email", b.Email, false),
	)
}

func (b Eligibility) validate(*Record) error {
	return firstErr(
		checkID("body.test_center", b.TestCenter, MaxIDLength),
		checkID("body.delivery", b.Delivery, MaxIDLength),
		checkIDList("body.test_takers", b.TestTakers, true),
	)
}

func (b Delivery) validate(*Record) error {
	err := firstErr(
		checkText("body.label", b.Label, true),
		checkTime("body.opens", b.Opens),
		checkTime("body.closes", b.Closes),
		checkPeerID("body.package.cid", b.Package.CID),
		checkSHA256("body.package.sha256", b.Package.SHA256),
		checkMediaType("body.package.media_type", b.Package.MediaType),
	)
	switch {
	case err != nil:
		return err
	case !b.Closes.After(b.Opens):
		return invalid("body.closes", "order", "must be after body.opens")
	case b.Package.Size < 0:
		return invalid("body.package.size", "range", "must be 0 or more (bytes)")
	case b.MaxAttempts < 0:
		return invalid("body.max_attempts", "range", "must be 0 (unlimited) or more")
	}
	return nil
}

func (b LTIConsumer) validate(*Record) error {
	return firstErr(checkText("body.label", b.Label, true), checkToken("body.key", b.Key))
}

func (b Execution) validate(r *Record) error {
	err := firstErr(
		checkID("body.delivery", b.Delivery, MaxIDLength),
		checkID("body.test_taker", b.TestTaker, MaxIDLength),
		checkOneOf("body.state", string(b.State), executionStates),
		checkTime("body.started", b.Started),
		checkPeerID("body.vm", b.VM),
	)
	switch {
	case err != nil:
		return err
	case b.State.Final() && b.Finished == nil:
		return invalid("body.finished", "required", fmt.Sprintf("is required when body.state is %s", b.State))
	case !b.State.Final() && b.Finished != nil:
		return invalid("body.finished", "absent", fmt.Sprintf("must be absent while body.state is %s; set it when the execution finishes or is terminated", b.State))
	case b.Finished != nil:
		if err := checkTime("body.finished", *b.Finished); err != nil {
			return err
		}
		if b.Finished.Before(b.Started) {
			return invalid("body.finished", "order", "must not be before body.started")
		}
	}
	if b.Version < 1 {
		return invalid("body.version", "range", "must be 1 or more (1 for the first version)")
	}
	base, n := SplitExecutionVersionID(r.ID)
	switch {
	case hasVersionSuffix(base):
		return invalid("id", "convention", fmt.Sprintf("%q has more than one version suffix; a reactivated execution is <executionID>.v<N>", r.ID))
	case n == 1 && hasVersionSuffix(r.ID):
		return invalid("id", "convention", fmt.Sprintf("%q ends in a malformed version suffix; versions are .v2, .v3, … without leading zeros, and the first version has none", r.ID))
	case b.Version != n:
		return invalid("body.version", "convention", fmt.Sprintf("must be %d for an execution stored at %s", n, Key(KindExecutions, r.ID)))
	}
	want := ""
	if n > 1 {
		want = ExecutionVersionID(base, n-1)
	}
	if b.Previous != want {
		if want == "" {
			return invalid("body.previous", "convention", "must be empty for the first version of an execution")
		}
		return invalid("body.previous", "convention", fmt.Sprintf("must be %q, the version that %s reactivates", want, r.ID))
	}
	return nil
}

func (b Result) validate(r *Record) error {
	if err := firstErr(
		checkID("body.execution", b.Execution, MaxIDLength),
		match("id", r.ID, b.Execution, "body.execution: a result is stored at /results/<executionID>"),
		checkTime("body.finished", b.Finished),
	); err != nil {
		return err
	}
	if b.Sealed != "" {
		return checkSealed(b)
	}
	names := make([]string, 0, len(b.Variables))
	for name := range b.Variables {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		v, f := b.Variables[name], "body.variables."+name
		if err := checkToken(f, name); err != nil {
			return err
		}
		if err := checkOneOf(f+".cardinality", v.Cardinality, qtiCardinalities); err != nil {
			return err
		}
		if v.Cardinality == "record" && v.BaseType != "" {
			return invalid(f+".base_type", "absent", "must be empty when cardinality is record (record fields carry their own types)")
		}
		if v.Cardinality != "record" {
			if err := checkOneOf(f+".base_type", v.BaseType, qtiBaseTypes); err != nil {
				return err
			}
		}
		if v.Value == nil {
			return invalid(f+".value", "required", "is required; write null for a NULL value")
		}
	}
	return nil
}

// checkSealed: a sealed result has no variables, and Sealed is an age file
// in base64 within MaxSealedResult.
func checkSealed(b Result) error {
	switch {
	case b.Variables != nil:
		return invalid("body.variables", "absent", "must be absent when body.sealed is set: a result is either in clear (variables) or sealed, not both")
	case len(b.Sealed) > MaxSealedResult:
		return invalid("body.sealed", "length", fmt.Sprintf("is %d characters long; the limit is %d: put large responses in attachments", len(b.Sealed), MaxSealedResult))
	}
	_, err := b.SealedBytes()
	return err
}

func (b ResultLog) validate(r *Record) error {
	if err := firstErr(
		checkID("body.execution", b.Execution, MaxIDLength),
		checkTime("body.at", b.At),
		checkEventName("body.event", b.Event),
	); err != nil {
		return err
	}
	suffix, ok := strings.CutPrefix(r.ID, b.Execution+".")
	if !ok || suffix == "" {
		return invalid("id", "convention", fmt.Sprintf("must be <execution>.<seq> (here %q, see LogID) or <execution>.<unique suffix>", LogID(b.Execution, b.Seq)))
	}
	if allDigits(suffix) && r.ID != LogID(b.Execution, b.Seq) {
		return invalid("id", "convention", fmt.Sprintf("a numeric suffix must be body.seq in %d digits: %q (see LogID)", logSeqDigits, LogID(b.Execution, b.Seq)))
	}
	return nil
}

func (b LTIUser) validate(*Record) error {
	if err := firstErr(checkToken("body.consumer_key", b.ConsumerKey), checkToken("body.user_id", b.UserID)); err != nil {
		return err
	}
	for i, role := range b.Roles {
		if err := checkToken(fmt.Sprintf("body.roles[%d]", i), role); err != nil {
			return err
		}
	}
	return nil
}

func (b BundleMeta) validate(r *Record) error {
	err := firstErr(
		checkID("body.execution", b.Execution, MaxIDLength),
		match("id", r.ID, b.Execution, "body.execution: a bundle is stored at /bundles/<executionID>"),
		checkSHA256("body.sha256", b.SHA256),
		checkPeerID("body.signer", b.Signer),
		checkTime("body.created", b.Created),
		checkPeerID("body.root", b.Root),
	)
	if err == nil && b.Size <= 0 {
		return invalid("body.size", "range", "must be more than 0 (bytes)")
	}
	return err
}

func (b Custody) validate(r *Record) error {
	return firstErr(
		checkID("body.bundle", b.Bundle, MaxIDLength),
		checkPeerID("body.holder", b.Holder),
		checkTime("body.at", b.At),
		match("id", r.ID, CustodyID(b.Bundle, b.Holder), "<bundle>.<holder> (see CustodyID)"),
	)
}

func (b BundleReceipt) validate(r *Record) error {
	return firstErr(
		checkID("body.bundle", b.Bundle, MaxIDLength),
		checkSHA256("body.sha256", b.SHA256),
		checkPeerID("body.archive", b.Archive),
		checkTime("body.at", b.At),
		match("id", r.ID, ReceiptID(b.Bundle, b.Archive), "<bundle>.<archive> (see ReceiptID)"),
	)
}

func (b RetentionRecord) validate(r *Record) error {
	return firstErr(
		checkID("body.bundle", b.Bundle, MaxIDLength),
		match("id", r.ID, b.Bundle, "body.bundle: a retention record is stored at the bundle's ID"),
		checkText("body.rule", b.Rule, true),
		checkTime("body.deleted_at", b.DeletedAt),
	)
}

// Field rules.

func match(field, got, want, what string) error {
	if got == want {
		return nil
	}
	return invalid(field, "match", fmt.Sprintf("is %q but must equal %s (%q)", got, what, want))
}

// checkText: printable text of at most maxText characters, no control
// characters; required or not.
func checkText(field, v string, required bool) error {
	switch {
	case v == "" && required:
		return invalid(field, "required", "is required")
	case utf8.RuneCountInString(v) > maxText:
		return invalid(field, "length", fmt.Sprintf("is %d characters long; the limit is %d", utf8.RuneCountInString(v), maxText))
	}
	for _, r := range v {
		if unicode.IsControl(r) {
			return invalid(field, "charset", fmt.Sprintf("contains the control character %q; use printable text", r))
		}
	}
	return nil
}

// checkToken: required text without spaces (logins, keys, LTI user IDs and
// roles, variable names).
func checkToken(field, v string) error {
	if err := checkText(field, v, true); err != nil {
		return err
	}
	if i := strings.IndexFunc(v, unicode.IsSpace); i >= 0 {
		return invalid(field, "charset", "must not contain spaces")
	}
	return nil
}

func checkEventName(field, v string) error {
	if err := checkToken(field, v); err != nil {
		return err
	}
	if utf8.RuneCountInString(v) > maxEvent {
		return invalid(field, "length", fmt.Sprintf("is longer than %d characters", maxEvent))
	}
	return nil
}

func checkEmail(field, v string, required bool) error {
	if v == "" && !required {
		return nil
	}
	if err := checkToken(field, v); err != nil {
		return err
	}
	local, domain, ok := strings.Cut(v, "@")
	if !ok || local == "" || strings.Contains(domain, "@") || !strings.Contains(strings.Trim(domain, "."), ".") || len(v) > maxEmail {
		return invalid(field, "format", fmt.Sprintf("%q is not an email address like name@example.org", v))
	}
	return nil
}

// checkPeerID: a libp2p peer ID or a CID as text: 1 to 128 letters and
// digits (base58btc or base32).
func checkPeerID(field, v string) error {
	switch {
	case v == "":
		return invalid(field, "required", "is required")
	case len(v) > maxPeerID:
		return invalid(field, "length", fmt.Sprintf("is %d characters long; the limit is %d", len(v), maxPeerID))
	}
	for _, c := range []byte(v) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return invalid(field, "charset", fmt.Sprintf("contains %q; a peer ID or CID is letters and digits only", rune(c)))
		}
	}
	return nil
}

func checkSHA256(field, v string) error {
	if v == "" {
		return invalid(field, "required", "is required: 64 lowercase hex digits")
	}
	if !isSHA256Hex(v) {
		return invalid(field, "format", fmt.Sprintf("%q is not 64 lowercase hex digits", v))
	}
	return nil
}

func isSHA256Hex(v string) bool {
	if len(v) != 64 {
		return false
	}
	for _, c := range []byte(v) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func checkMediaType(field, v string) error {
	if v == "" {
		return invalid(field, "required", "is required, e.g. application/zip")
	}
	typ, sub, ok := strings.Cut(v, "/")
	if !ok || !isMIMEToken(typ) || !isMIMEToken(sub) || len(v) > maxText {
		return invalid(field, "format", fmt.Sprintf("%q is not a media type like application/zip (no parameters)", v))
	}
	return nil
}

func isMIMEToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$&^_.+-", c) >= 0) {
			return false
		}
	}
	return true
}

func checkTime(field string, t time.Time) error {
	switch {
	case t.IsZero():
		return invalid(field, "required", "is required: an RFC 3339 time such as 2026-06-01T09:00:00Z")
	case t.Before(minTime) || t.After(maxTime):
		return invalid(field, "range", "must be between 1970-01-01T00:00:00Z and 9999-12-31T23:59:59Z")
	}
	return nil
}

func checkOneOf(field, v string, allowed []string) error {
	if slices.Contains(allowed, v) {
		return nil
	}
	if v == "" {
		return invalid(field, "required", "is required: one of "+quoteList(allowed))
	}
	return invalid(field, "oneof", "must be one of "+quoteList(allowed))
}

func checkIDList(field string, ids []string, required bool) error {
	if required && len(ids) == 0 {
		return invalid(field, "required", "must list at least one ID")
	}
	seen := make(map[string]bool, len(ids))
	for i, id := range ids {
		f := fmt.Sprintf("%s[%d]", field, i)
		if err := checkID(f, id, MaxIDLength); err != nil {
			return err
		}
		if seen[id] {
			return invalid(f, "unique", fmt.Sprintf("%q is listed twice", id))
		}
		seen[id] = true
	}
	return nil
}
