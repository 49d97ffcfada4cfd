package node

// The record routes of the local API: typed, validated records of the
// schema package, for exam platforms. The raw routes (/raw/...) remain a
// debugging aid; they take precedence over these because "raw" is a
// literal where these have {kind}.
//
//	PUT    /v1/orgs/{org}/{kind}/{id}   body: the record's body; answered once durable
//	GET    /v1/orgs/{org}/{kind}/{id}   the record (envelope + body; RecordView)
//	DELETE /v1/orgs/{org}/{kind}/{id}   only deletable kinds, by their writer role
//	GET    /v1/orgs/{org}/{kind}        list: limit, offset, and filters
//
// The {id} pattern is registered as {id...}: a plain {id} would conflict
// with the raw routes' /raw/{key...} in Go's ServeMux (each matches paths
// the other does not), and it panics on such conflicts. IDs never contain
// '/', so the handler refuses one that does.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/examnode/examnode/bundle"
	"github.com/examnode/examnode/crdt"
	"github.com/examnode/examnode/policy"
	"github.com/examnode/examnode/schema"
)

// Record list limits.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
)

// recordError is the body of every error answer of the record and feed
// routes: the message, a stable code, and where it applies the field and
// the rule that the input broke.
type recordError struct {
	Error string `json:"error"`
	Code  string `json:"code"`
	Field string `json:"field,omitempty"`
	Rule  string `json:"rule,omitempty"`
}

func writeRecordErr(w http.ResponseWriter, status int, code, field, rule string, err error) {
	writeJSON(w, status, recordError{Error: err.Error(), Code: code, Field: field, Rule: rule})
}

// writeRecordError answers err with its status, code, field and rule.
func (n *Node) writeRecordError(w http.ResponseWriter, err error) {
	status, code := statusOf(err)
	var field, rule string
	var ve *schema.ValidationError
	switch {
	case errors.As(err, &ve):
		field, rule = ve.Field, ve.Rule
	case errors.Is(err, ErrUnknownOrg):
		field = "org"
	case errors.Is(err, schema.ErrUnknownKind), errors.Is(err, schema.ErrRoleMayNotWrite), errors.Is(err, schema.ErrNotDeletable):
		field = "kind"
	case errors.Is(err, schema.ErrAppendOnly), errors.Is(err, crdt.ErrNotFound):
		field = "id"
	case errors.Is(err, schema.ErrUnsupportedVersion):
		field = "schema"
	case errors.Is(err, schema.ErrNotFinished), errors.Is(err, schema.ErrExecutionMismatch), errors.Is(err, errNoExecution):
		field = "body.execution"
	case errors.Is(err, schema.ErrNotEligible):
		field = "body.test_taker"
	case errors.Is(err, schema.ErrReactivateInPlace):
		field = "body.state"
	case errors.Is(err, schema.ErrMalformed), errors.Is(err, schema.ErrTooLarge):
		field = "body"
	}
	writeRecordErr(w, status, code, field, rule, err)
}

var errNoExecution = errors.New("node: no such execution")

// Write outcomes in answers (schema.Outcome's names, plus delete).
const OutcomeDelete = "delete"

// RecordResult answers a record write or delete.
type RecordResult struct {
	Org     string `json:"org"`
	Kind    string `json:"kind"`
	ID      string `json:"id"`
	Durable bool   `json:"durable"`
	Outcome string `json:"outcome"` // create, replace, no-op or delete
	NoOp    bool   `json:"noop,omitempty"`
}

// RecordList is one page of a record listing.
type RecordList struct {
	Records []RecordView `json:"records"`
	Offset  int          `json:"offset"`
	Limit   int          `json:"limit"`
	More    bool         `json:"more"` // another page follows
}

// filters lists the list filters each kind supports: a filter matches a
// body property of that name, or an array property of that name plus "s"
// that contains the value (eligibilities' test_takers).
var filters = map[schema.Kind][]string{
	schema.KindExecutions:    {"test_taker", "delivery", "state"},
	schema.KindEligibilities: {"test_taker", "delivery"},
	schema.KindResults:       {"execution"},
	schema.KindResultLogs:    {"execution"},
	schema.KindBundles:       {"execution"},
}

var allFilters = []string{"test_taker", "delivery", "state", "execution"}

// recordTarget resolves {org}, {kind} and, if withID, {id...}.
func (n *Node) recordTarget(r *http.Request, withID bool) (*crdt.Replica, schema.Kind, string, error) {
	org := r.PathValue("org")
	if err := schema.ValidateOrgID(org); err != nil {
		return nil, "", "", err
	}
	rep, err := n.Replica(org)
	if err != nil {
		return nil, "", "", err
	}
	kind, err := schema.ParseKind(r.PathValue("kind"))
	if err != nil {
		return nil, "", "", err
	}
	var id string
	if withID {
		id = r.PathValue("id")
		if err := schema.ValidateID(id); err != nil {
			return nil, "", "", err
		}
	}
	return rep, kind, id, nil
}

// canWrite is nil if one of the node's roles writes kind.
func (n *Node) canWrite(kind schema.Kind, check func(schema.Role, schema.Kind) error) error {
	var first error
	for _, role := range n.cfg.Roles {
		err := check(role, kind)
		if err == nil {
			return nil
		}
		if first == nil {
			first = err
		}
	}
	if first == nil {
		first = fmt.Errorf("%w: this node has no role", schema.ErrRoleMayNotWrite)
	}
	return first
}

func (n *Node) handleRecordPut(w http.ResponseWriter, r *http.Request) {
	res, err := n.putRecord(r)
	if err != nil {
		n.writeRecordError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (n *Node) putRecord(r *http.Request) (RecordResult, error) {
	ctx := r.Context()
	rep, kind, id, err := n.recordTarget(r, true)
	if err != nil {
		return RecordResult{}, err
	}
	org := rep.Org()
	if err := n.canWrite(kind, schema.CanWrite); err != nil {
		return RecordResult{}, err
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, schema.MaxRecordSize+1))
	if err != nil {
		return RecordResult{}, fmt.Errorf("%w: reading the body: %v", schema.ErrMalformed, err)
	}
	if len(body) > schema.MaxRecordSize {
		return RecordResult{}, fmt.Errorf("%w: the body is over %d bytes: put bulk data in a bundle or blob", schema.ErrTooLarge, schema.MaxRecordSize)
	}
	next := schema.Record{Schema: schema.CurrentVersion, Kind: kind, ID: id, Org: org, Body: body}
	enc, err := schema.Encode(next)
	if err != nil {
		return RecordResult{}, err
	}
	if next, err = schema.Decode(enc); err != nil {
		return RecordResult{}, err
	}
	if bundle.IsSealedResult(next) {
		return RecordResult{}, &schema.ValidationError{Field: "body.sealed", Rule: "absent",
			Msg: "must be absent: write the variables in clear; this node seals them to the organisation's central and archive peers"}
	}
	outcome, err := n.writeChecked(ctx, rep, next, enc)
	if err != nil {
		return RecordResult{}, err
	}
	return RecordResult{Org: org, Kind: string(kind), ID: id, Durable: true, Outcome: outcome.String(), NoOp: outcome == schema.OutcomeNoOp}, nil
}

// writeChecked stores rec (enc is its encoding) in rep after the checks
// every local write passes: schema.CheckWrite against the version the API
// serves (which also tells a no-op), the writer's own eligibility rule
// (checkEligible), and then the rules receivers run: on a gated node
// checkSend decides the record signed, as it will be sent, with the
// receivers' engine (policy.Decide); on an open node, which no receiver
// checks, the record's own rules (checkRecordRules). A result is sealed
// to its recipients before it is signed (results.go). Writes to one key are serialised. A write identical to the
// stored record changes nothing and returns OutcomeNoOp once the record is
// durable here (it may have arrived by replication, not yet fsynced); for
// a sealed result "identical" compares the plaintext, opened here.
func (n *Node) writeChecked(ctx context.Context, rep *crdt.Replica, rec schema.Record, enc []byte) (schema.Outcome, error) {
	key := rec.Key()
	unlock := n.lockRecord(rep.Org(), key)
	defer unlock()
	prev, err := getRecord(ctx, rep, key)
	if err != nil && !errors.Is(err, crdt.ErrNotFound) {
		return schema.OutcomeRefused, err
	}
	if prev != nil {
		// A sealed result this node cannot open stays sealed: it differs
		// from rec, and the append-only rule refuses the write.
		v := n.view(*prev)
		prev = &v.Record
	}
	outcome, err := schema.CheckWrite(prev, rec)
	if err != nil {
		return schema.OutcomeRefused, err
	}
	if outcome == schema.OutcomeNoOp {
		return outcome, n.store.Sync(ctx)
	}
	if err := n.checkEligible(ctx, rep, rec, outcome); err != nil {
		return schema.OutcomeRefused, err
	}
	if !rep.Verified() {
		// No receiver checks an open replica's records: of the rules,
		// only those of the record itself apply.
		if err := n.checkRecordRules(ctx, rep, rec); err != nil {
			return schema.OutcomeRefused, err
		}
	}
	sealed := true
	if rec.Kind == schema.KindResults {
		if rec, sealed, err = n.sealResult(ctx, rec); err != nil {
			return schema.OutcomeRefused, err
		}
		if enc, err = schema.Encode(rec); err != nil {
			return schema.OutcomeRefused, err
		}
	}
	stored, err := n.signRecord(ctx, enc)
	if err != nil {
		return schema.OutcomeRefused, err
	}
	if err := n.checkSend(ctx, rep, key, stored); err != nil {
		return schema.OutcomeRefused, err
	}
	if err := rep.Put(ctx, key, stored); err != nil {
		return schema.OutcomeRefused, err
	}
	if !sealed {
		return outcome, n.noteUnsealed(ctx, rec.Org, rec.ID)
	}
	return outcome, nil
}

// checkEligible enforces the one rule of the organisation that only the
// writing node applies: a new execution on a VM needs an eligibility of
// its test-taker for its delivery in the organisation (checked when the
// execution is created, so that an eligibility withdrawn mid-exam does
// not stop the session being finished). Receivers do not apply it: which
// write created an execution, and which eligibilities held then, is not
// a function of the replicated state (an eligibility is deleted later).
func (n *Node) checkEligible(ctx context.Context, rep *crdt.Replica, rec schema.Record, outcome schema.Outcome) error {
	if rec.Kind != schema.KindExecutions || outcome != schema.OutcomeCreate || !n.cfg.Has(schema.RoleVM) {
		return nil
	}
	b, err := rec.DecodeBody()
	if err != nil {
		return err
	}
	body := b.(schema.Execution)
	els, err := listRecords(ctx, rep, schema.KindEligibilities)
	if err != nil {
		return err
	}
	return schema.CheckEligible(rec.Org, body.TestTaker, body.Delivery, els)
}

// checkRecordRules applies, on an open replica, the rules of rec that
// read another record (policy.CheckRecordRules: a result needs its
// execution, finished). On a gated replica checkSend applies them with
// every other rule.
func (n *Node) checkRecordRules(ctx context.Context, rep *crdt.Replica, rec schema.Record) error {
	var exec *schema.Record
	if id, ok := policy.ExecutionOf(rec); ok && rec.Kind != schema.KindExecutions {
		x, err := getRecord(ctx, rep, schema.Key(schema.KindExecutions, id))
		if err != nil && !errors.Is(err, crdt.ErrNotFound) {
			return err
		}
		exec = x
	}
	return sendError(policy.CheckRecordRules(rec, exec))
}

// checkSend runs, on the value this node is about to write at key (signed,
// as it will be sent), the rules every receiver runs: crdt.Replica.Check,
// policy.Decide with this node's verified view as the lookups. A value
// receivers would refuse or park is refused here, with their reason
// (sendError).
func (n *Node) checkSend(ctx context.Context, rep *crdt.Replica, key string, value []byte) error {
	return sendError(rep.Check(ctx, key, value))
}

// sendError is the API's error for a write the rules refuse. The
// refusals the API named before the rules were one keep their codes: a
// record waiting for its execution is errNoExecution; a writer's role,
// organisation or ownership, schema.ErrRoleMayNotWrite; the schema's own
// (append-only, not finished, reactivation in place, immutable fields)
// their sentinels. Any other verdict (revoked, expired, replay, …) is
// answered with its reason as the code (statusOf).
func sendError(err error) error {
	var v *policy.Verdict
	switch {
	case err == nil:
		return nil
	case errors.Is(err, policy.ErrUnknownExecution):
		return fmt.Errorf("%w: %w", errNoExecution, err)
	case !errors.As(err, &v):
		return err
	}
	switch v.Reason {
	case policy.ReasonRoleMayNotWrite, policy.ReasonNotOwner, policy.ReasonNotMember, policy.ReasonMisplaced:
		return fmt.Errorf("%w: %w", schema.ErrRoleMayNotWrite, err)
	}
	return err
}

// getRecord reads and decodes the record at key.
func getRecord(ctx context.Context, rep *crdt.Replica, key string) (*schema.Record, error) {
	v, err := rep.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	rec, err := decodeStored(rep, v)
	if err != nil {
		return nil, fmt.Errorf("node: stored record %s in %s does not decode: %w", key, rep.Org(), err)
	}
	return &rec, nil
}

// listRecords returns every decodable record of kind (others are skipped:
// the raw routes can store anything).
func listRecords(ctx context.Context, rep *crdt.Replica, kind schema.Kind) ([]schema.Record, error) {
	entries, err := rep.List(ctx, "/"+string(kind), false, 0, 0)
	if err != nil {
		return nil, err
	}
	out := make([]schema.Record, 0, len(entries))
	for _, e := range entries {
		if rec, err := decodeStored(rep, e.Value); err == nil && rec.Kind == kind {
			out = append(out, rec)
		}
	}
	return out, nil
}

func (n *Node) handleRecordGet(w http.ResponseWriter, r *http.Request) {
	rep, kind, id, err := n.recordTarget(r, true)
	if err != nil {
		n.writeRecordError(w, err)
		return
	}
	rec, err := getRecord(r.Context(), rep, schema.Key(kind, id))
	if err != nil {
		n.writeRecordError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, n.view(*rec))
}

func (n *Node) handleRecordDelete(w http.ResponseWriter, r *http.Request) {
	rep, kind, id, err := n.recordTarget(r, true)
	if err == nil {
		err = n.canWrite(kind, schema.CanDelete)
	}
	if err != nil {
		n.writeRecordError(w, err)
		return
	}
	key := schema.Key(kind, id)
	unlock := n.lockRecord(rep.Org(), key)
	defer unlock()
	prev, err := getRecord(r.Context(), rep, key)
	if err != nil {
		n.writeRecordError(w, err)
		return
	}
	if err := n.deleteRecord(r.Context(), rep, key, *prev); err != nil {
		n.writeRecordError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, RecordResult{Org: rep.Org(), Kind: string(kind), ID: id, Durable: true, Outcome: OutcomeDelete})
}

func (n *Node) handleRecordList(w http.ResponseWriter, r *http.Request) {
	rep, kind, _, err := n.recordTarget(r, false)
	if err != nil {
		n.writeRecordError(w, err)
		return
	}
	q := r.URL.Query()
	offset, limit := 0, DefaultListLimit
	if s := q.Get("offset"); s != "" {
		if offset, err = strconv.Atoi(s); err != nil || offset < 0 {
			writeRecordErr(w, http.StatusBadRequest, "invalid", "offset", "range", errors.New("offset must be a whole number, 0 or more"))
			return
		}
	}
	if s := q.Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 1 || limit > MaxListLimit {
			writeRecordErr(w, http.StatusBadRequest, "invalid", "limit", "range", fmt.Errorf("limit must be a whole number from 1 to %d", MaxListLimit))
			return
		}
	}
	want := map[string]string{}
	for _, f := range allFilters {
		v := q.Get(f)
		if v == "" {
			continue
		}
		if !slices.Contains(filters[kind], f) {
			supported := "none"
			if len(filters[kind]) > 0 {
				supported = strings.Join(filters[kind], ", ")
			}
			writeRecordErr(w, http.StatusBadRequest, "invalid", f, "filter",
				fmt.Errorf("%s records cannot be filtered by %s (filters for %s: %s)", kind, f, kind, supported))
			return
		}
		want[f] = v
	}
	var recs []schema.Record
	if len(want) == 0 {
		// Paging goes down to the store; one more tells whether a page follows.
		entries, err := rep.List(r.Context(), "/"+string(kind), false, offset, limit+1)
		if err != nil {
			n.writeRecordError(w, err)
			return
		}
		for _, e := range entries {
			if rec, err := decodeStored(rep, e.Value); err == nil && rec.Kind == kind {
				recs = append(recs, rec)
			}
		}
	} else {
		all, err := listRecords(r.Context(), rep, kind)
		if err != nil {
			n.writeRecordError(w, err)
			return
		}
		skipped := 0
		for _, rec := range all {
			if !matches(rec, want) {
				continue
			}
			if skipped < offset {
				skipped++
				continue
			}
			recs = append(recs, rec)
			if len(recs) > limit {
				break
			}
		}
	}
	out := RecordList{Offset: offset, Limit: limit}
	if len(recs) > limit {
		recs, out.More = recs[:limit], true
	}
	out.Records = n.views(recs)
	writeJSON(w, http.StatusOK, out)
}

// matches reports whether rec's body has every wanted property value (or,
// for an array property named <filter>s, contains it).
func matches(rec schema.Record, want map[string]string) bool {
	var body map[string]any
	if json.Unmarshal(rec.Body, &body) != nil {
		return false
	}
	for f, v := range want {
		if s, ok := body[f].(string); ok {
			if s != v {
				return false
			}
			continue
		}
		arr, _ := body[f+"s"].([]any)
		if !slices.Contains(arr, any(v)) {
			return false
		}
	}
	return true
}
