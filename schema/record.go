package schema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"unicode/utf8"
)

// CurrentVersion is the record schema version this node writes and reads.
const CurrentVersion = 1

// supportedVersions lists every record schema version this node reads.
var supportedVersions = []int{CurrentVersion}

// SupportedVersions returns every record schema version this node reads
// (peers announce theirs in the mesh hello).
func SupportedVersions() []int { return append([]int(nil), supportedVersions...) }

// MaxRecordSize is the largest encoded record, envelope included. Bulk data
// (attachments, bundle payloads) travels as content-addressed blocks, not
// inside records.
const MaxRecordSize = 1 << 20

// Record is the versioned envelope every stored record has. Body holds the
// kind's typed body (TestTaker, Execution, ...) as JSON.
type Record struct {
	Schema int             `json:"schema"` // record schema version; CurrentVersion
	Kind   Kind            `json:"kind"`
	ID     string          `json:"id"`
	Org    string          `json:"org"`
	Body   json.RawMessage `json:"body"`
}

// Body is implemented by the typed body of every kind: TestCenter,
// Administrator, Proctor, TestTaker, Eligibility, Delivery, LTIConsumer,
// Execution, Result, ResultLog, LTIUser, BundleMeta, Custody, BundleReceipt
// and RetentionRecord.
type Body interface {
	// Kind is the kind whose records carry this body.
	Kind() Kind
	// validate checks the body's rules; r is the enclosing record, for
	// rules that tie the body to the record's ID or organisation.
	validate(r *Record) error
	// normalized returns the body in canonical form: times in UTC, nil
	// slices as empty ones, JSON null raw values as absent.
	normalized() Body
}

// Key is the record's datastore key inside its organisation: /<kind>/<id>.
func (r Record) Key() string { return Key(r.Kind, r.ID) }

// NewRecord builds a valid record of body's kind at org and id, with the
// current schema version and a canonical body.
func NewRecord(org, id string, body Body) (Record, error) {
	if body == nil || reflect.ValueOf(body).Kind() == reflect.Pointer && reflect.ValueOf(body).IsNil() {
		return Record{}, invalid("body", "required", "is required")
	}
	raw, err := marshal(body)
	if err != nil {
		return Record{}, fmt.Errorf("%w body: %v", ErrInvalid, err)
	}
	c, _, _, err := canonicalize(Record{Schema: CurrentVersion, Kind: body.Kind(), ID: id, Org: org, Body: raw})
	return c, err
}

// Validate checks the envelope and the body by kind. It returns nil, a
// *ValidationError naming the field and the rule (wrapping ErrInvalid, and
// ErrForbiddenProperty or ErrUnknownKind where they apply), or an error
// wrapping ErrUnsupportedVersion, ErrMalformed or ErrTooLarge.
func (r Record) Validate() error {
	_, _, _, err := canonicalize(r)
	return err
}

// DecodeBody validates r and returns its typed body, e.g. an Execution for
// a record of kind executions.
func (r Record) DecodeBody() (Body, error) {
	_, b, _, err := canonicalize(r)
	return b, err
}

// Encode validates r and returns its canonical encoding: compact JSON, the
// envelope's fields in declaration order, the body's fields in its type's
// order, map keys sorted, times in UTC, no HTML escaping. Equal records
// encode to equal bytes.
func Encode(r Record) ([]byte, error) {
	_, _, enc, err := canonicalize(r)
	return enc, err
}

// Decode parses one encoded record, validates it and returns it with its
// body in canonical form. It refuses, in this order: input over
// MaxRecordSize (ErrTooLarge); bytes that are not one UTF-8 JSON object
// (ErrMalformed, also for trailing data); a schema version it does not read
// (ErrUnsupportedVersion); excluded properties anywhere
// (ErrForbiddenProperty); unknown properties, unknown kinds and anything
// else Validate refuses (ErrInvalid).
func Decode(data []byte) (Record, error) {
	if len(data) > MaxRecordSize {
		return Record{}, fmt.Errorf("%w: the record is %d bytes; the limit is %d", ErrTooLarge, len(data), MaxRecordSize)
	}
	if !utf8.Valid(data) {
		return Record{}, fmt.Errorf("%w: the record is not valid UTF-8", ErrMalformed)
	}
	tree, forbidden, err := parseStrict(data, "", 0)
	if err != nil {
		return Record{}, err
	}
	obj, ok := tree.(map[string]any)
	if !ok {
		return Record{}, fmt.Errorf("%w: a record is a JSON object {\"schema\":%d,\"kind\":…,\"id\":…,\"org\":…,\"body\":{…}}", ErrMalformed, CurrentVersion)
	}
	// The version comes first: a newer node's record may differ in any
	// other way, and "upgrade" is the useful answer.
	v, ok := obj["schema"]
	if !ok || v == nil {
		return Record{}, invalid("schema", "required", fmt.Sprintf("is required: the record schema version, %d", CurrentVersion))
	}
	n, ok := v.(json.Number)
	version, err := strconv.ParseInt(string(n), 10, 64)
	if !ok || err != nil {
		return Record{}, invalid("schema", "type", "must be a whole number: the record schema version")
	}
	if err := checkVersion(version); err != nil {
		return Record{}, err
	}
	if forbidden != "" {
		return Record{}, forbiddenErr(forbidden)
	}
	if err := checkShape(obj, reflect.TypeFor[Record](), ""); err != nil {
		return Record{}, err
	}
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		return Record{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	c, _, _, err := canonicalize(r)
	return c, err
}

func checkVersion(v int64) error {
	for _, s := range supportedVersions {
		if v == int64(s) {
			return nil
		}
	}
	supports := fmt.Sprint(supportedVersions[0])
	for _, s := range supportedVersions[1:] {
		supports += ", " + strconv.Itoa(s)
	}
	if v > int64(CurrentVersion) {
		return fmt.Errorf("%w: record schema version %d is not supported by this node (supports %s); upgrade examnode",
			ErrUnsupportedVersion, v, supports)
	}
	return fmt.Errorf("%w: record schema version %d is not supported by this node (supports %s); the writer must set schema to %d",
		ErrUnsupportedVersion, v, supports, CurrentVersion)
}

// canonicalize validates r and returns it with a canonical body, the typed
// body and the canonical encoding.
func canonicalize(r Record) (Record, Body, []byte, error) {
	if r.Schema == 0 {
		return Record{}, nil, nil, invalid("schema", "required", fmt.Sprintf("is required: set it to %d (schema.CurrentVersion)", CurrentVersion))
	}
	if err := checkVersion(int64(r.Schema)); err != nil {
		return Record{}, nil, nil, err
	}
	info, ok := kinds[r.Kind]
	if !ok {
		return Record{}, nil, nil, &ValidationError{Field: "kind", Rule: "oneof",
			Msg:      fmt.Sprintf("%q is not a kind; use one of %s", r.Kind, kindNames()),
			sentinel: ErrUnknownKind}
	}
	if err := firstErr(checkID("id", r.ID, MaxIDLength), checkID("org", r.Org, MaxOrgIDLength)); err != nil {
		return Record{}, nil, nil, err
	}
	if len(bytes.TrimSpace(r.Body)) == 0 {
		return Record{}, nil, nil, invalid("body", "required", fmt.Sprintf("is required: a JSON object with the fields of a %s record", r.Kind))
	}
	if !utf8.Valid(r.Body) {
		return Record{}, nil, nil, fmt.Errorf("%w: body is not valid UTF-8", ErrMalformed)
	}
	tree, forbidden, err := parseStrict(r.Body, "body", 1)
	if err != nil {
		return Record{}, nil, nil, err
	}
	if forbidden != "" {
		return Record{}, nil, nil, forbiddenErr(forbidden)
	}
	if _, ok := tree.(map[string]any); !ok {
		return Record{}, nil, nil, invalid("body", "type", fmt.Sprintf("must be a JSON object with the fields of a %s record", r.Kind))
	}
	ptr := info.newBody()
	if err := checkShape(tree, reflect.TypeOf(ptr).Elem(), "body"); err != nil {
		return Record{}, nil, nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(ptr); err != nil {
		return Record{}, nil, nil, fmt.Errorf("%w body: %v", ErrInvalid, err)
	}
	body := reflect.ValueOf(ptr).Elem().Interface().(Body).normalized()
	if err := body.validate(&r); err != nil {
		return Record{}, nil, nil, err
	}
	if r.Body, err = marshal(body); err != nil {
		return Record{}, nil, nil, fmt.Errorf("%w body: %v", ErrInvalid, err)
	}
	enc, err := marshal(r)
	if err != nil {
		return Record{}, nil, nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if len(enc) > MaxRecordSize {
		return Record{}, nil, nil, fmt.Errorf("%w: %s encodes to %d bytes; the limit is %d: put bulk data in a bundle",
			ErrTooLarge, r.Key(), len(enc), MaxRecordSize)
	}
	return r, body, enc, nil
}
