package schema_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/examnode/examnode/schema"
)

func TestFixturesValid(t *testing.T) {
	for _, k := range schema.Kinds() {
		t.Run(string(k), func(t *testing.T) {
			r := valid(t, k)
			if err := r.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			b, err := r.DecodeBody()
			if err != nil {
				t.Fatal(err)
			}
			if b.Kind() != k {
				t.Errorf("body kind %s, want %s", b.Kind(), k)
			}
			// NewRecord from the typed body gives the same canonical record.
			r2, err := schema.NewRecord(r.Org, r.ID, b)
			if err != nil {
				t.Fatal(err)
			}
			enc1, _ := schema.Encode(r)
			enc2, _ := schema.Encode(r2)
			if !bytes.Equal(enc1, enc2) {
				t.Errorf("NewRecord encoding differs:\n%s\n%s", enc1, enc2)
			}
		})
	}
}

func TestValidateEnvelope(t *testing.T) {
	base := func() schema.Record { return valid(t, schema.KindTestTakers) }
	tests := []struct {
		name     string
		mutate   func(*schema.Record)
		field    string
		rule     string
		sentinel error
	}{
		{"schema missing", func(r *schema.Record) { r.Schema = 0 }, "schema", "required", nil},
		{"kind unknown", func(r *schema.Record) { r.Kind = "grades" }, "kind", "oneof", schema.ErrUnknownKind},
		{"kind empty", func(r *schema.Record) { r.Kind = "" }, "kind", "oneof", schema.ErrUnknownKind},
		{"id empty", func(r *schema.Record) { r.ID = "" }, "id", "required", nil},
		{"id slash", func(r *schema.Record) { r.ID = "a/b" }, "id", "charset", nil},
		{"id space", func(r *schema.Record) { r.ID = "a b" }, "id", "charset", nil},
		{"id dotdot", func(r *schema.Record) { r.ID = ".." }, "id", "reserved", nil},
		{"id too long", func(r *schema.Record) { r.ID = strings.Repeat("x", 129) }, "id", "length", nil},
		{"org empty", func(r *schema.Record) { r.Org = "" }, "org", "required", nil},
		{"org too long", func(r *schema.Record) { r.Org = strings.Repeat("o", 65) }, "org", "length", nil},
		{"org charset", func(r *schema.Record) { r.Org = "org:1" }, "org", "charset", nil},
		{"body missing", func(r *schema.Record) { r.Body = nil }, "body", "required", nil},
		{"body null", func(r *schema.Record) { r.Body = []byte("null") }, "body", "type", nil},
		{"body array", func(r *schema.Record) { r.Body = []byte(`[1]`) }, "body", "type", nil},
		{"body unknown field", func(r *schema.Record) { r.Body = []byte(`{"login":"x","nickname":"y"}`) }, "body.nickname", "unknown", nil},
		{"body wrong case", func(r *schema.Record) { r.Body = []byte(`{"Login":"x"}`) }, "body.Login", "unknown", nil},
		{"body duplicate", func(r *schema.Record) { r.Body = []byte(`{"login":"x","login":"y"}`) }, "body.login", "unique", nil},
		{"body wrong type", func(r *schema.Record) { r.Body = []byte(`{"login":7}`) }, "body.login", "type", nil},
		{"body forbidden", func(r *schema.Record) { r.Body = []byte(`{"login":"x","password":"hunter2"}`) }, "body.password", "forbidden", schema.ErrForbiddenProperty},
		{"body too deep", func(r *schema.Record) {
			r.Kind, r.ID = schema.KindResultLogs, schema.LogID("e1", 1)
			r.Body = []byte(`{"execution":"e1","seq":1,"at":"` + t1 + `","event":"x","data":` +
				strings.Repeat("[", schema.MaxDepth) + strings.Repeat("]", schema.MaxDepth) + `}`)
		}, "body.data" + strings.Repeat("[0]", schema.MaxDepth-2), "depth", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := base()
			tt.mutate(&r)
			wantValidation(t, r.Validate(), tt.field, tt.rule, tt.sentinel)
		})
	}

	t.Run("future version", func(t *testing.T) {
		r := base()
		r.Schema = 3
		err := r.Validate()
		if !errors.Is(err, schema.ErrUnsupportedVersion) {
			t.Fatalf("err = %v", err)
		}
		if want := "record schema version 3 is not supported by this node (supports 1); upgrade examnode"; !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	})
	t.Run("negative version", func(t *testing.T) {
		r := base()
		r.Schema = -1
		if err := r.Validate(); !errors.Is(err, schema.ErrUnsupportedVersion) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("body not JSON", func(t *testing.T) {
		r := base()
		r.Body = []byte(`{"login":`)
		if err := r.Validate(); !errors.Is(err, schema.ErrMalformed) || !strings.Contains(err.Error(), "body") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("body trailing data", func(t *testing.T) {
		r := base()
		r.Body = []byte(`{"login":"x"} {}`)
		if err := r.Validate(); !errors.Is(err, schema.ErrMalformed) || !strings.Contains(err.Error(), "trailing") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("body not UTF-8", func(t *testing.T) {
		r := base()
		r.Body = []byte("{\"login\":\"\xff\"}")
		if err := r.Validate(); !errors.Is(err, schema.ErrMalformed) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("too large", func(t *testing.T) {
		r := valid(t, schema.KindResultLogs, "data", strings.Repeat("x", schema.MaxRecordSize))
		if err := r.Validate(); !errors.Is(err, schema.ErrTooLarge) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestValidateBodies(t *testing.T) {
	long := strings.Repeat("n", 257)
	tests := []struct {
		kind     schema.Kind
		id       string // "" keeps the fixture's
		kv       []any  // path, value pairs applied to the fixture body
		field    string
		rule     string
		sentinel error
	}{
		// test-centers
		{schema.KindTestCenters, "", []any{"label", ""}, "body.label", "required", nil},
		{schema.KindTestCenters, "", []any{"label", long}, "body.label", "length", nil},
		{schema.KindTestCenters, "", []any{"label", "a\nb"}, "body.label", "charset", nil},
		{schema.KindTestCenters, "", []any{"org_id", "other-org"}, "body.org_id", "match", nil},
		{schema.KindTestCenters, "", []any{"org_id", del}, "body.org_id", "required", nil},
		// administrators
		{schema.KindAdministrators, "", []any{"login", ""}, "body.login", "required", nil},
		{schema.KindAdministrators, "", []any{"login", "a b"}, "body.login", "charset", nil},
		{schema.KindAdministrators, "", []any{"name", del}, "body.name", "required", nil},
		{schema.KindAdministrators, "", []any{"email", ""}, "body.email", "required", nil},
		{schema.KindAdministrators, "", []any{"email", "alice"}, "body.email", "format", nil},
		{schema.KindAdministrators, "", []any{"email", "alice@localhost"}, "body.email", "format", nil},
		{schema.KindAdministrators, "", []any{"email", "a@b@c.org"}, "body.email", "format", nil},
		{schema.KindAdministrators, "", []any{"password", "x"}, "body.password", "forbidden", schema.ErrForbiddenProperty},
		// proctors
		{schema.KindProctors, "", []any{"test_centers", []any{"paris", "paris"}}, "body.test_centers[1]", "unique", nil},
		{schema.KindProctors, "", []any{"test_centers", []any{"bad id"}}, "body.test_centers[0]", "charset", nil},
		{schema.KindProctors, "", []any{"test_centers", "paris"}, "body.test_centers", "type", nil},
		// test-takers
		{schema.KindTestTakers, "", []any{"login", del}, "body.login", "required", nil},
		{schema.KindTestTakers, "", []any{"email", "nope"}, "body.email", "format", nil},
		{schema.KindTestTakers, "", []any{"App_Key", "k"}, "body.App_Key", "forbidden", schema.ErrForbiddenProperty},
		// eligibilities
		{schema.KindEligibilities, "", []any{"test_center", ""}, "body.test_center", "required", nil},
		{schema.KindEligibilities, "", []any{"delivery", "d/1"}, "body.delivery", "charset", nil},
		{schema.KindEligibilities, "", []any{"test_takers", []any{}}, "body.test_takers", "required", nil},
		{schema.KindEligibilities, "", []any{"test_takers", []any{"tt1", "tt1"}}, "body.test_takers[1]", "unique", nil},
		{schema.KindEligibilities, "", []any{"by_proctor", "yes"}, "body.by_proctor", "type", nil},
		// deliveries
		{schema.KindDeliveries, "", []any{"opens", del}, "body.opens", "required", nil},
		{schema.KindDeliveries, "", []any{"opens", "2026-06-01 08:00"}, "body.opens", "format", nil},
		{schema.KindDeliveries, "", []any{"opens", 1717228800}, "body.opens", "type", nil},
		{schema.KindDeliveries, "", []any{"closes", t0}, "body.closes", "order", nil},
		{schema.KindDeliveries, "", []any{"closes", "1969-12-31T23:59:59Z"}, "body.closes", "range", nil},
		{schema.KindDeliveries, "", []any{"package.sha256", "AB"}, "body.package.sha256", "format", nil},
		{schema.KindDeliveries, "", []any{"package.sha256", strings.Repeat("AB", 32)}, "body.package.sha256", "format", nil},
		{schema.KindDeliveries, "", []any{"package.cid", ""}, "body.package.cid", "required", nil},
		{schema.KindDeliveries, "", []any{"package.cid", "bafy-x"}, "body.package.cid", "charset", nil},
		{schema.KindDeliveries, "", []any{"package.size", -1}, "body.package.size", "range", nil},
		{schema.KindDeliveries, "", []any{"package.size", 1.5}, "body.package.size", "type", nil},
		{schema.KindDeliveries, "", []any{"package.media_type", "zip"}, "body.package.media_type", "format", nil},
		{schema.KindDeliveries, "", []any{"package.media_type", "application/zip; q=1"}, "body.package.media_type", "format", nil},
		{schema.KindDeliveries, "", []any{"package.extra", 1}, "body.package.extra", "unknown", nil},
		{schema.KindDeliveries, "", []any{"max_attempts", -1}, "body.max_attempts", "range", nil},
		// lti-consumers
		{schema.KindLTIConsumers, "", []any{"key", ""}, "body.key", "required", nil},
		{schema.KindLTIConsumers, "", []any{"secret", "s3cr3t"}, "body.secret", "forbidden", schema.ErrForbiddenProperty},
		{schema.KindLTIConsumers, "", []any{"Consumer-Secret", "s3cr3t"}, "body.Consumer-Secret", "forbidden", schema.ErrForbiddenProperty},
		// executions
		{schema.KindExecutions, "", []any{"state", "running"}, "body.state", "oneof", nil},
		{schema.KindExecutions, "", []any{"state", del}, "body.state", "required", nil},
		{schema.KindExecutions, "", []any{"delivery", del}, "body.delivery", "required", nil},
		{schema.KindExecutions, "", []any{"test_taker", ".."}, "body.test_taker", "reserved", nil},
		{schema.KindExecutions, "", []any{"started", del}, "body.started", "required", nil},
		{schema.KindExecutions, "", []any{"vm", ""}, "body.vm", "required", nil},
		{schema.KindExecutions, "", []any{"vm", "peer/1"}, "body.vm", "charset", nil},
		{schema.KindExecutions, "", []any{"state", "finished"}, "body.finished", "required", nil},
		{schema.KindExecutions, "", []any{"state", "terminated"}, "body.finished", "required", nil},
		{schema.KindExecutions, "", []any{"finished", t1}, "body.finished", "absent", nil},
		{schema.KindExecutions, "", []any{"state", "finished", "finished", "2026-06-01T07:00:00Z"}, "body.finished", "order", nil},
		{schema.KindExecutions, "", []any{"version", 0}, "body.version", "range", nil},
		{schema.KindExecutions, "", []any{"version", 2}, "body.version", "convention", nil},
		{schema.KindExecutions, "", []any{"previous", "e0"}, "body.previous", "convention", nil},
		{schema.KindExecutions, "e1.v2", nil, "body.version", "convention", nil},
		{schema.KindExecutions, "e1.v2", []any{"version", 2}, "body.previous", "convention", nil},
		{schema.KindExecutions, "e1.v3", []any{"version", 3, "previous", "e1"}, "body.previous", "convention", nil},
		{schema.KindExecutions, "e1.v1", nil, "id", "convention", nil},
		{schema.KindExecutions, "e1.v02", nil, "id", "convention", nil},
		{schema.KindExecutions, "e1.v2.v3", []any{"version", 3, "previous", "e1.v2.v2"}, "id", "convention", nil},
		// results
		{schema.KindResults, "e2", nil, "id", "match", nil},
		{schema.KindResults, "", []any{"execution", del}, "body.execution", "required", nil},
		{schema.KindResults, "", []any{"finished", del}, "body.finished", "required", nil},
		{schema.KindResults, "", []any{"variables.SCORE.cardinality", "many"}, "body.variables.SCORE.cardinality", "oneof", nil},
		{schema.KindResults, "", []any{"variables.SCORE.base_type", "decimal"}, "body.variables.SCORE.base_type", "oneof", nil},
		{schema.KindResults, "", []any{"variables.SCORE.base_type", del}, "body.variables.SCORE.base_type", "required", nil},
		{schema.KindResults, "", []any{"variables.SCORE.cardinality", "record"}, "body.variables.SCORE.base_type", "absent", nil},
		{schema.KindResults, "", []any{"variables.SCORE.value", del}, "body.variables.SCORE.value", "required", nil},
		{schema.KindResults, "", []any{"variables.SCORE.weight", 1}, "body.variables.SCORE.weight", "unknown", nil},
		{schema.KindResults, "", []any{"variables.bad name", obj("base_type", "float", "cardinality", "single", "value", 1)}, "body.variables.bad name", "charset", nil},
		{schema.KindResults, "", []any{"variables.SCORE.value", obj("private_key", "k")}, "body.variables.SCORE.value.private_key", "forbidden", schema.ErrForbiddenProperty},
		{schema.KindResults, "", []any{"variables.password", obj("base_type", "string", "cardinality", "single", "value", "x")}, "body.variables.password", "forbidden", schema.ErrForbiddenProperty},
		{schema.KindResults, "", []any{"sealed", sealedBlob}, "body.variables", "absent", nil},
		{schema.KindResults, "", []any{"variables", obj(), "sealed", sealedBlob}, "body.variables", "absent", nil},
		{schema.KindResults, "", []any{"variables", del, "sealed", "not base64!"}, "body.sealed", "format", nil},
		{schema.KindResults, "", []any{"variables", del, "sealed", sealedBlob[:20] + "\n" + sealedBlob[20:]}, "body.sealed", "format", nil},
		{schema.KindResults, "", []any{"variables", del, "sealed", base64.StdEncoding.EncodeToString([]byte("-----BEGIN AGE ENCRYPTED FILE-----"))}, "body.sealed", "format", nil},
		{schema.KindResults, "", []any{"variables", del, "sealed", strings.Repeat("A", schema.MaxSealedResult+4)}, "body.sealed", "length", nil},
		{schema.KindResults, "", []any{"variables", del, "sealed", 7}, "body.sealed", "type", nil},
		// result-logs
		{schema.KindResultLogs, "", []any{"event", ""}, "body.event", "required", nil},
		{schema.KindResultLogs, "", []any{"event", strings.Repeat("e", 129)}, "body.event", "length", nil},
		{schema.KindResultLogs, "", []any{"at", del}, "body.at", "required", nil},
		{schema.KindResultLogs, "", []any{"seq", -1}, "body.seq", "type", nil},
		{schema.KindResultLogs, "", []any{"seq", 4}, "id", "convention", nil},
		{schema.KindResultLogs, "e1.3", nil, "id", "convention", nil},
		{schema.KindResultLogs, "e2.00000000000000000003", nil, "id", "convention", nil},
		{schema.KindResultLogs, "e1.", nil, "id", "convention", nil},
		{schema.KindResultLogs, "", []any{"data", obj("nested", []any{obj("API_TOKEN", "t")})}, "body.data.nested[0].API_TOKEN", "forbidden", schema.ErrForbiddenProperty},
		// lti-users
		{schema.KindLTIUsers, "", []any{"consumer_key", ""}, "body.consumer_key", "required", nil},
		{schema.KindLTIUsers, "", []any{"user_id", del}, "body.user_id", "required", nil},
		{schema.KindLTIUsers, "", []any{"roles", []any{"Learner", ""}}, "body.roles[1]", "required", nil},
		// bundles
		{schema.KindBundles, "e2", nil, "id", "match", nil},
		{schema.KindBundles, "", []any{"sha256", del}, "body.sha256", "required", nil},
		{schema.KindBundles, "", []any{"size", 0}, "body.size", "range", nil},
		{schema.KindBundles, "", []any{"signer", ""}, "body.signer", "required", nil},
		{schema.KindBundles, "", []any{"root", ""}, "body.root", "required", nil},
		{schema.KindBundles, "", []any{"created", "2026-13-01T00:00:00Z"}, "body.created", "format", nil},
		// custody
		{schema.KindCustody, "e1", nil, "id", "match", nil},
		{schema.KindCustody, "", []any{"holder", peerB}, "id", "match", nil},
		{schema.KindCustody, "", []any{"at", del}, "body.at", "required", nil},
		// bundle-receipts
		{schema.KindBundleReceipts, "e1", nil, "id", "match", nil},
		{schema.KindBundleReceipts, "", []any{"sha256", "xyz"}, "body.sha256", "format", nil},
		{schema.KindBundleReceipts, "", []any{"archive", ""}, "body.archive", "required", nil},
		// retention-records
		{schema.KindRetentionRecords, "e2", nil, "id", "match", nil},
		{schema.KindRetentionRecords, "", []any{"rule", ""}, "body.rule", "required", nil},
		{schema.KindRetentionRecords, "", []any{"deleted_at", "9999-12-31T23:00:00-05:00"}, "body.deleted_at", "range", nil},
	}
	for _, tt := range tests {
		name := fmt.Sprintf("%s/%s/%s", tt.kind, tt.field, tt.rule)
		t.Run(name, func(t *testing.T) {
			id, body := fixture(tt.kind)
			if tt.id != "" {
				id = tt.id
			}
			for i := 0; i < len(tt.kv); i += 2 {
				set(body, tt.kv[i].(string), tt.kv[i+1])
			}
			wantValidation(t, record(t, tt.kind, id, body).Validate(), tt.field, tt.rule, tt.sentinel)
		})
	}
}

func TestValidateAccepts(t *testing.T) {
	tests := []struct {
		name string
		kind schema.Kind
		id   string
		kv   []any
	}{
		{"test-taker without name or email", schema.KindTestTakers, "", []any{"name", del, "email", del}},
		{"proctor without centres", schema.KindProctors, "", []any{"test_centers", del}},
		{"delivery unlimited attempts", schema.KindDeliveries, "", []any{"max_attempts", 0}},
		{"time with offset", schema.KindDeliveries, "", []any{"opens", "2026-06-01T10:00:00+02:00"}},
		{"finished execution", schema.KindExecutions, "", []any{"state", "finished", "finished", t1}},
		{"paused execution", schema.KindExecutions, "", []any{"state", "paused"}},
		{"reactivated execution", schema.KindExecutions, "e1.v2", []any{"version", 2, "previous", "e1"}},
		{"third version", schema.KindExecutions, "e1.v3", []any{"version", 3, "previous", "e1.v2"}},
		{"execution ID with .v and letters", schema.KindExecutions, "e1.vx", nil},
		{"record variable", schema.KindResults, "", []any{"variables.SCORE", obj("base_type", "", "cardinality", "record", "value", obj("a", 1))}},
		{"null variable value", schema.KindResults, "", []any{"variables.SCORE.value", nil}},
		{"result of reactivated execution", schema.KindResults, "e1.v2", []any{"execution", "e1.v2"}},
		{"sealed result", schema.KindResults, "", []any{"variables", del, "sealed", sealedBlob}},
		{"sealed result, variables null", schema.KindResults, "", []any{"variables", nil, "sealed", sealedBlob}},
		{"result without variables", schema.KindResults, "", []any{"variables", obj()}},
		{"largest sealed result", schema.KindResults, "", []any{"variables", del, "sealed", maxSealedBlob()}},
		{"log with writer suffix", schema.KindResultLogs, "e1.vm-a-17", nil},
		{"log without data", schema.KindResultLogs, "", []any{"data", del}},
		{"log seq 0", schema.KindResultLogs, schema.LogID("e1", 0), []any{"seq", 0}},
		{"log max seq", schema.KindResultLogs, schema.LogID("e1", 1<<64-1), []any{"seq", uint64(1<<64 - 1)}},
		{"password-like but allowed", schema.KindResultLogs, "", []any{"data", obj("password_changed", true, "secrets", 1)}},
		{"null optional", schema.KindExecutions, "", []any{"finished", nil, "previous", nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, body := fixture(tt.kind)
			if tt.id != "" {
				id = tt.id
			}
			for i := 0; i < len(tt.kv); i += 2 {
				set(body, tt.kv[i].(string), tt.kv[i+1])
			}
			if err := record(t, tt.kind, id, body).Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
		})
	}
}

func TestEncodeCanonical(t *testing.T) {
	// Same record, different spelling: whitespace, key order, time offset,
	// escaped characters, null optional fields.
	a := schema.Record{Schema: 1, Kind: schema.KindExecutions, ID: "e1", Org: org, Body: []byte(`{
		"vm": "` + peerA + `", "version": 1, "previous": null,
		"state": "active", "started": "2026-06-01T10:00:00.000+02:00",
		"test_taker": "tt\u0031", "delivery": "d1"}`)}
	b := valid(t, schema.KindExecutions)
	ea, err := schema.Encode(a)
	if err != nil {
		t.Fatal(err)
	}
	eb, err := schema.Encode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ea, eb) {
		t.Fatalf("encodings differ:\n%s\n%s", ea, eb)
	}
	want := `{"schema":1,"kind":"executions","id":"e1","org":"centre-paris","body":{"delivery":"d1","test_taker":"tt1","state":"active","started":"2026-06-01T08:00:00Z","vm":"` + peerA + `","version":1}}`
	if string(ea) != want {
		t.Errorf("Encode =\n%s\nwant\n%s", ea, want)
	}
	// No HTML escaping, so canonical text never grows.
	r := valid(t, schema.KindResultLogs)
	r.Body = bytes.Replace(r.Body, []byte(`{"item":"i1"}`), []byte(`{"html":"<b>&</b>"}`), 1)
	enc, err := schema.Encode(r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(enc, []byte(`"<b>&</b>"`)) {
		t.Errorf("Encode escaped HTML: %s", enc)
	}
	if _, err := schema.Encode(schema.Record{}); !errors.Is(err, schema.ErrInvalid) {
		t.Errorf("Encode(zero) err = %v; want ErrInvalid", err)
	}
}

func TestDecodeRoundTrip(t *testing.T) {
	for _, k := range schema.Kinds() {
		t.Run(string(k), func(t *testing.T) {
			enc, err := schema.Encode(valid(t, k))
			if err != nil {
				t.Fatal(err)
			}
			r, err := schema.Decode(enc)
			if err != nil {
				t.Fatal(err)
			}
			enc2, err := schema.Encode(r)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(enc, enc2) {
				t.Errorf("round trip differs:\n%s\n%s", enc, enc2)
			}
			if r.Key() != schema.Key(k, r.ID) {
				t.Errorf("Key() = %s", r.Key())
			}
		})
	}
}

func TestDecodeRefuses(t *testing.T) {
	good, err := schema.Encode(valid(t, schema.KindTestTakers))
	if err != nil {
		t.Fatal(err)
	}
	envelope := func(mod func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(good, &m); err != nil {
			t.Fatal(err)
		}
		mod(m)
		b, _ := json.Marshal(m)
		return b
	}
	tests := []struct {
		name     string
		data     []byte
		sentinel error
		field    string // for *ValidationError; "" otherwise
		inMsg    string
	}{
		{"empty", nil, schema.ErrMalformed, "", "empty"},
		{"not JSON", []byte("hello"), schema.ErrMalformed, "", "not JSON"},
		{"truncated", good[:len(good)-1], schema.ErrMalformed, "", "not JSON"},
		{"trailing record", append(append([]byte{}, good...), good...), schema.ErrMalformed, "", "trailing"},
		{"trailing junk", append(append([]byte{}, good...), " x"...), schema.ErrMalformed, "", "trailing"},
		{"not an object", []byte(`[1,2]`), schema.ErrMalformed, "", "JSON object"},
		{"not UTF-8", []byte("{\"schema\":1,\"kind\":\"\xff\"}"), schema.ErrMalformed, "", "UTF-8"},
		{"oversize", bytes.Repeat([]byte(" "), schema.MaxRecordSize+1), schema.ErrTooLarge, "", "limit"},
		{"future version", envelope(func(m map[string]any) { m["schema"] = 3; m["kind"] = "new-kind"; m["extra"] = 1 }),
			schema.ErrUnsupportedVersion, "", "record schema version 3 is not supported by this node (supports 1); upgrade examnode"},
		{"version zero", envelope(func(m map[string]any) { m["schema"] = 0 }), schema.ErrUnsupportedVersion, "", "schema version 0"},
		{"version missing", envelope(func(m map[string]any) { delete(m, "schema") }), schema.ErrInvalid, "schema", "required"},
		{"version string", envelope(func(m map[string]any) { m["schema"] = "1" }), schema.ErrInvalid, "schema", "whole number"},
		{"version fraction", []byte(strings.Replace(string(good), `"schema":1`, `"schema":1.5`, 1)), schema.ErrInvalid, "schema", "whole number"},
		{"unknown kind", envelope(func(m map[string]any) { m["kind"] = "grades" }), schema.ErrUnknownKind, "kind", "test-centers"},
		{"unknown envelope field", envelope(func(m map[string]any) { m["sig"] = "x" }), schema.ErrInvalid, "sig", "not a property"},
		{"envelope field wrong type", envelope(func(m map[string]any) { m["id"] = 5 }), schema.ErrInvalid, "id", "string"},
		{"forbidden in envelope", envelope(func(m map[string]any) { m["secret"] = "x" }), schema.ErrForbiddenProperty, "secret", "never be stored"},
		{"forbidden in body", envelope(func(m map[string]any) { m["body"].(map[string]any)["Private_Key"] = "x" }),
			schema.ErrForbiddenProperty, "body.Private_Key", "never be stored"},
		{"duplicate envelope key", []byte(strings.Replace(string(good), `"id":"tt1"`, `"id":"tt1","id":"tt2"`, 1)), schema.ErrInvalid, "id", "twice"},
		{"invalid body", envelope(func(m map[string]any) { m["body"].(map[string]any)["email"] = "nope" }), schema.ErrInvalid, "body.email", "email"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := schema.Decode(tt.data)
			if !errors.Is(err, tt.sentinel) {
				t.Fatalf("err = %v; want %v", err, tt.sentinel)
			}
			if tt.field != "" {
				var ve *schema.ValidationError
				if !errors.As(err, &ve) || ve.Field != tt.field {
					t.Errorf("err = %v; want a *ValidationError on %q", err, tt.field)
				}
			}
			if !strings.Contains(err.Error(), tt.inMsg) {
				t.Errorf("message %q lacks %q", err, tt.inMsg)
			}
		})
	}
}

func TestNewRecordAndDecodeBody(t *testing.T) {
	started := mustTime(t, t0)
	exec := schema.Execution{Delivery: "d1", TestTaker: "tt1", State: schema.ExecutionActive, Started: started, VM: peerA, Version: 1}
	r, err := schema.NewRecord(org, "e1", exec)
	if err != nil {
		t.Fatal(err)
	}
	if r.Kind != schema.KindExecutions || r.Schema != schema.CurrentVersion || r.Key() != "/executions/e1" {
		t.Errorf("record = %+v", r)
	}
	b, err := r.DecodeBody()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(b, exec) {
		t.Errorf("DecodeBody = %#v, want %#v", b, exec)
	}
	if _, err := schema.NewRecord(org, "e1", nil); !errors.Is(err, schema.ErrInvalid) {
		t.Errorf("NewRecord(nil) err = %v", err)
	}
	var np *schema.TestTaker
	if _, err := schema.NewRecord(org, "e1", np); !errors.Is(err, schema.ErrInvalid) {
		t.Errorf("NewRecord(nil pointer) err = %v", err)
	}
	bad := exec
	bad.State = "done"
	_, err = schema.NewRecord(org, "e1", bad)
	wantValidation(t, err, "body.state", "oneof", nil)
	if want := "body.state: must be one of active, paused, finished, terminated"; !strings.Contains(err.Error(), want) {
		t.Errorf("message %q lacks %q", err, want)
	}
}

func TestIsExcludedProperty(t *testing.T) {
	for name, want := range map[string]bool{
		"password": true, "PASSWORD": true, "pass_word": true, "secret": true, "app_key": true,
		"appKey": true, "application-key": true, "ApplicationKey": true, "private_key": true,
		"consumer_secret": true, "consumerSecret": true, "api_token": true, "API-TOKEN": true,
		"client_secret": true, "authority_key": true,
		"key": false, "consumer_key": false, "secrets": false, "password_changed": false,
		"token": false, "login": false, "": false,
	} {
		if got := schema.IsExcludedProperty(name); got != want {
			t.Errorf("IsExcludedProperty(%q) = %v, want %v", name, got, want)
		}
	}
	if len(schema.ExcludedProperties()) == 0 {
		t.Error("ExcludedProperties is empty")
	}
}

func TestValidationErrorMessage(t *testing.T) {
	err := &schema.ValidationError{Field: "body.state", Rule: "oneof", Msg: "must be one of a, b"}
	if got, want := err.Error(), "schema: invalid body.state: must be one of a, b"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(err, schema.ErrInvalid) || errors.Is(err, schema.ErrForbiddenProperty) {
		t.Errorf("wrapping wrong: %v", err)
	}
}

func TestDepthLimit(t *testing.T) {
	// The envelope is level 1, the body level 2: data may nest
	// MaxDepth-2 levels, in Validate and in Decode alike.
	nest := func(n int) schema.Record {
		r := valid(t, schema.KindResultLogs)
		r.Body = []byte(`{"execution":"e1","seq":3,"at":"` + t1 + `","event":"x","data":` +
			strings.Repeat("[", n) + strings.Repeat("]", n) + `}`)
		return r
	}
	enc, err := schema.Encode(nest(schema.MaxDepth - 2))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := schema.Decode(enc); err != nil {
		t.Fatalf("Decode at the limit: %v", err)
	}
	if err := nest(schema.MaxDepth - 1).Validate(); !errors.Is(err, schema.ErrInvalid) {
		t.Fatalf("over the limit: %v", err)
	}
	deep := []byte(strings.Repeat("[", 100000) + strings.Repeat("]", 100000))
	if _, err := schema.Decode(deep); err == nil {
		t.Fatal("Decode accepted 100000 levels")
	}
}
