package node

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/examnode/examnode/crdt"
	"github.com/examnode/examnode/schema"
)

const (
	peerA = "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo"
	peerB = "12D3KooWArchive0000000000000000000000000000000000001"
	cidA  = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
	t0    = "2026-06-01T08:00:00Z"
	t1    = "2026-06-01T09:30:00Z"
	t2    = "2026-06-01T18:00:00Z"
)

var sha = strings.Repeat("ab", 32)

// fixtures holds a valid ID and body of every kind, for organisation C1;
// in schema.Kinds() order each one's prerequisites come before it.
var fixtures = map[schema.Kind][2]string{
	schema.KindTestCenters:    {"paris", `{"label":"Paris Nord","org_id":"C1"}`},
	schema.KindAdministrators: {"adm1", `{"login":"alice","name":"Alice Martin","email":"alice@example.org"}`},
	schema.KindProctors:       {"p1", `{"login":"bob","name":"Bob Durand","test_centers":["paris"]}`},
	schema.KindTestTakers:     {"tt1", `{"login":"jdoe","name":"Jane Doe"}`},
	schema.KindEligibilities:  {"el1", `{"test_center":"paris","delivery":"d1","test_takers":["tt1","tt2"],"by_proctor":false}`},
	schema.KindDeliveries: {"d1", `{"label":"Maths 2026","opens":"` + t0 + `","closes":"` + t2 +
		`","package":{"cid":"` + cidA + `","sha256":"` + sha + `","size":1024,"media_type":"application/zip"},"max_attempts":1}`},
	schema.KindLTIConsumers: {"moodle", `{"label":"Moodle","key":"moodle-key"}`},
	schema.KindExecutions: {"e1", `{"delivery":"d1","test_taker":"tt1","state":"finished","started":"` + t0 +
		`","finished":"` + t1 + `","vm":"` + peerA + `","version":1}`},
	schema.KindResults: {"e1", `{"execution":"e1","finished":"` + t1 +
		`","variables":{"SCORE":{"base_type":"float","cardinality":"single","value":7.5}}}`},
	schema.KindResultLogs: {schema.LogID("e1", 3), `{"execution":"e1","seq":3,"at":"` + t1 + `","event":"item-response","data":{"item":"i1"}}`},
	schema.KindLTIUsers:   {"u1", `{"consumer_key":"moodle-key","user_id":"42","roles":["Learner"]}`},
	schema.KindBundles: {"e1", `{"execution":"e1","sha256":"` + sha + `","size":4096,"signer":"` + peerA +
		`","created":"` + t1 + `","root":"` + cidA + `"}`},
	schema.KindCustody:          {schema.CustodyID("e1", peerA), `{"bundle":"e1","holder":"` + peerA + `","at":"` + t1 + `"}`},
	schema.KindBundleReceipts:   {schema.ReceiptID("e1", peerB), `{"bundle":"e1","sha256":"` + sha + `","archive":"` + peerB + `","at":"` + t2 + `"}`},
	schema.KindRetentionRecords: {"e1", `{"bundle":"e1","rule":"keep-5y","deleted_at":"` + t2 + `"}`},
}

func newTestNode(t *testing.T, dir string, roles ...schema.Role) *Node {
	t.Helper()
	cfg := localConfig(roles[0])
	cfg.Roles = roles
	cfg.Debug = true // the raw routes
	return openStarted(t, dir, cfg)
}

// startRoles starts a node of C1 with roles, closed when the test ends.
func startRoles(t *testing.T, roles ...schema.Role) *Node {
	t.Helper()
	n := newTestNode(t, t.TempDir(), roles...)
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Error(err)
		}
	})
	return n
}

type answer struct {
	status int
	body   []byte
	err    recordError
}

func call(t *testing.T, n *Node, method, path string, body []byte) answer {
	t.Helper()
	return callToken(t, n, n.Token(), method, path, body)
}

func callToken(t *testing.T, n *Node, token, method, path string, body []byte) answer {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+n.APIAddr()+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := newHTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := answer{status: resp.StatusCode, body: b}
	if a.status >= 300 {
		if err := json.Unmarshal(b, &a.err); err != nil {
			t.Fatalf("error answer is not JSON: %q", b)
		}
	}
	return a
}

func recPath(kind schema.Kind, id string) string {
	p := "/v1/orgs/C1/" + string(kind)
	if id != "" {
		p += "/" + id
	}
	return p
}

func TestRecordsEveryKindWriteReadList(t *testing.T) {
	n := startRoles(t, schema.RoleCentral, schema.RoleVM, schema.RoleArchive)
	for _, kind := range schema.Kinds() {
		t.Run(string(kind), func(t *testing.T) {
			id, body := fixtures[kind][0], fixtures[kind][1]
			a := call(t, n, "PUT", recPath(kind, id), []byte(body))
			if a.status != 200 {
				t.Fatalf("put: %d %s", a.status, a.body)
			}
			var res RecordResult
			if err := json.Unmarshal(a.body, &res); err != nil {
				t.Fatal(err)
			}
			want := RecordResult{Org: "C1", Kind: string(kind), ID: id, Durable: true, Outcome: "create"}
			if res != want {
				t.Fatalf("put answered %+v, want %+v", res, want)
			}
			a = call(t, n, "GET", recPath(kind, id), nil)
			var rec schema.Record
			if a.status != 200 || json.Unmarshal(a.body, &rec) != nil {
				t.Fatalf("get: %d %s", a.status, a.body)
			}
			canon, _ := schema.Encode(schema.Record{Schema: 1, Kind: kind, ID: id, Org: "C1", Body: json.RawMessage(body)})
			got, _ := schema.Encode(rec)
			if !bytes.Equal(got, canon) {
				t.Fatalf("get returned %s, want %s", got, canon)
			}
			a = call(t, n, "GET", recPath(kind, ""), nil)
			var list RecordList
			if a.status != 200 || json.Unmarshal(a.body, &list) != nil || len(list.Records) != 1 || list.Records[0].ID != id {
				t.Fatalf("list: %d %s", a.status, a.body)
			}
			// Idempotent: the identical write again is a no-op.
			a = call(t, n, "PUT", recPath(kind, id), []byte(body))
			if a.status != 200 || json.Unmarshal(a.body, &res) != nil || !res.NoOp || res.Outcome != "no-op" {
				t.Fatalf("identical put: %d %s", a.status, a.body)
			}
		})
	}
}

func TestRecordsListPagingAndFilters(t *testing.T) {
	n := startRoles(t, schema.RoleCentral, schema.RoleVM)
	put := func(kind schema.Kind, id, body string) {
		t.Helper()
		if a := call(t, n, "PUT", recPath(kind, id), []byte(body)); a.status != 200 {
			t.Fatalf("put %s/%s: %d %s", kind, id, a.status, a.body)
		}
	}
	put(schema.KindEligibilities, "el1", `{"test_center":"paris","delivery":"d1","test_takers":["tt1","tt2","tt3"],"by_proctor":false}`)
	for i, st := range []string{"active", "paused", "active"} {
		put(schema.KindExecutions, "e"+strconv.Itoa(i), `{"delivery":"d1","test_taker":"tt`+strconv.Itoa(i+1)+
			`","state":"`+st+`","started":"`+t0+`","vm":"`+peerA+`","version":1}`)
	}
	list := func(q string) RecordList {
		t.Helper()
		a := call(t, n, "GET", recPath(schema.KindExecutions, "")+q, nil)
		var l RecordList
		if a.status != 200 || json.Unmarshal(a.body, &l) != nil {
			t.Fatalf("list %s: %d %s", q, a.status, a.body)
		}
		return l
	}
	if l := list("?limit=2"); len(l.Records) != 2 || !l.More || l.Records[0].ID != "e0" {
		t.Fatalf("first page: %+v", l)
	}
	if l := list("?limit=2&offset=2"); len(l.Records) != 1 || l.More || l.Records[0].ID != "e2" {
		t.Fatalf("second page: %+v", l)
	}
	if l := list("?state=active"); len(l.Records) != 2 {
		t.Fatalf("state=active: %+v", l)
	}
	if l := list("?state=active&test_taker=tt3"); len(l.Records) != 1 || l.Records[0].ID != "e2" {
		t.Fatalf("state+test_taker: %+v", l)
	}
	if l := list("?state=active&offset=1&limit=1"); len(l.Records) != 1 || l.Records[0].ID != "e2" || l.More {
		t.Fatalf("filtered page: %+v", l)
	}
	a := call(t, n, "GET", recPath(schema.KindEligibilities, "")+"?test_taker=tt2", nil)
	if a.status != 200 || !bytes.Contains(a.body, []byte(`"el1"`)) {
		t.Fatalf("eligibilities by test_taker: %d %s", a.status, a.body)
	}
	a = call(t, n, "GET", recPath(schema.KindTestTakers, "")+"?state=active", nil)
	if a.status != 400 || a.err.Field != "state" || a.err.Code != "invalid" {
		t.Fatalf("unsupported filter: %d %s", a.status, a.body)
	}
	a = call(t, n, "GET", recPath(schema.KindExecutions, "")+"?limit=0", nil)
	if a.status != 400 || a.err.Field != "limit" {
		t.Fatalf("bad limit: %d %s", a.status, a.body)
	}
}

func TestRecordsRefuseBadInputAndStoreNothing(t *testing.T) {
	vm := startRoles(t, schema.RoleVM)
	rep, err := vm.Replica("C1")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// What central would have replicated: an eligibility for tt1 in d1,
	// and an active execution (written before the refusals are counted).
	el, _ := schema.Encode(schema.Record{Schema: 1, Kind: schema.KindEligibilities, ID: "el1", Org: "C1", Body: json.RawMessage(fixtures[schema.KindEligibilities][1])})
	if err := rep.Put(ctx, schema.Key(schema.KindEligibilities, "el1"), el); err != nil {
		t.Fatal(err)
	}
	active := `{"delivery":"d1","test_taker":"tt1","state":"active","started":"` + t0 + `","vm":"` + peerA + `","version":1}`
	if a := call(t, vm, "PUT", recPath(schema.KindExecutions, "e2"), []byte(active)); a.status != 200 {
		t.Fatalf("active execution: %d %s", a.status, a.body)
	}
	finished := fixtures[schema.KindExecutions][1]
	if a := call(t, vm, "PUT", recPath(schema.KindExecutions, "e3"), []byte(finished)); a.status != 200 {
		t.Fatalf("finished execution: %d %s", a.status, a.body)
	}
	logID, logBody := fixtures[schema.KindResultLogs][0], fixtures[schema.KindResultLogs][1]
	if a := call(t, vm, "PUT", recPath(schema.KindResultLogs, logID), []byte(logBody)); a.status != 200 {
		t.Fatalf("result log: %d %s", a.status, a.body)
	}
	before, _ := rep.Count(ctx, "/")

	result := func(exec string) []byte {
		return []byte(strings.ReplaceAll(fixtures[schema.KindResults][1], `"execution":"e1"`, `"execution":"`+exec+`"`))
	}
	for _, tc := range []struct {
		name, method, path, token string
		body                      []byte
		status                    int
		code, field               string
	}{
		{"missing token", "PUT", recPath(schema.KindExecutions, "e9"), "-", []byte(active), 401, "unauthorized", ""},
		{"invalid JSON", "PUT", recPath(schema.KindExecutions, "e9"), "", []byte(`{"delivery":`), 400, "invalid_json", "body"},
		{"not an object", "PUT", recPath(schema.KindExecutions, "e9"), "", []byte(`[1]`), 400, "invalid", "body"},
		{"unknown kind", "PUT", "/v1/orgs/C1/grades/g1", "", []byte(`{}`), 404, "unknown_kind", "kind"},
		{"wrong organisation", "PUT", "/v1/orgs/C2/executions/e9", "", []byte(active), 404, "unknown_org", "org"},
		{"role may not write", "PUT", recPath(schema.KindTestTakers, "tt9"), "", []byte(fixtures[schema.KindTestTakers][1]), 403, "role_may_not_write", "kind"},
		{"append-only violation", "PUT", recPath(schema.KindResultLogs, logID), "", []byte(strings.Replace(logBody, "item-response", "other", 1)), 409, "append_only", "id"},
		{"oversize body", "PUT", recPath(schema.KindResultLogs, schema.LogID("e1", 4)), "", bytes.Repeat([]byte(" "), schema.MaxRecordSize+1), 413, "too_large", "body"},
		{"bad field value", "PUT", recPath(schema.KindExecutions, "e9"), "", []byte(strings.Replace(active, `"active"`, `"sleeping"`, 1)), 400, "invalid", "body.state"},
		{"unknown property", "PUT", recPath(schema.KindExecutions, "e9"), "", []byte(strings.Replace(active, `{`, `{"colour":"red",`, 1)), 400, "invalid", "body.colour"},
		{"forbidden property", "PUT", recPath(schema.KindResultLogs, schema.LogID("e1", 5)), "", []byte(strings.Replace(logBody, `{"item":"i1"}`, `{"password":"x"}`, 1)), 400, "forbidden_property", "body.data.password"},
		{"bad id", "PUT", recPath(schema.KindExecutions, "a%20b"), "", []byte(active), 400, "invalid", "id"},
		{"id with a slash", "PUT", recPath(schema.KindExecutions, "a/b"), "", []byte(active), 400, "invalid", "id"},
		{"not eligible", "PUT", recPath(schema.KindExecutions, "e9"), "", []byte(strings.Replace(active, `"tt1"`, `"tt7"`, 1)), 403, "not_eligible", "body.test_taker"},
		{"result without execution", "PUT", recPath(schema.KindResults, "e8"), "", result("e8"), 409, "no_execution", "body.execution"},
		{"result of unfinished execution", "PUT", recPath(schema.KindResults, "e2"), "", result("e2"), 409, "not_finished", "body.execution"},
		{"immutable field", "PUT", recPath(schema.KindExecutions, "e2"), "", []byte(strings.Replace(active, `"delivery":"d1"`, `"delivery":"d2"`, 1)), 400, "invalid", "body.delivery"},
		{"reactivation in place", "PUT", recPath(schema.KindExecutions, "e3"), "", []byte(active), 409, "reactivate_in_place", "body.state"},
		{"delete of evidence", "DELETE", recPath(schema.KindResultLogs, logID), "", nil, 403, "not_deletable", "kind"},
		{"get missing", "GET", recPath(schema.KindExecutions, "nope"), "", nil, 404, "not_found", "id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := vm.Token()
			if tc.token == "-" {
				tok = ""
			}
			a := callToken(t, vm, tok, tc.method, tc.path, tc.body)
			if a.status != tc.status || a.err.Code != tc.code || a.err.Field != tc.field {
				t.Fatalf("%d code %q field %q (%s); want %d %q %q", a.status, a.err.Code, a.err.Field, a.err.Error, tc.status, tc.code, tc.field)
			}
			if !strings.Contains(a.err.Error, " ") {
				t.Fatalf("error does not explain: %q", a.err.Error)
			}
			if after, _ := rep.Count(ctx, "/"); after != before {
				t.Fatalf("%d records after a refused request, want %d", after, before)
			}
		})
	}
	// The stored log is unchanged by the refused overwrite.
	a := call(t, vm, "GET", recPath(schema.KindResultLogs, logID), nil)
	if a.status != 200 || !bytes.Contains(a.body, []byte("item-response")) {
		t.Fatalf("log after refused overwrite: %s", a.body)
	}
	// The raw routes still work beside the record routes.
	if a := call(t, vm, "PUT", "/v1/orgs/C1/raw/executions/x", []byte("raw")); a.status != 200 {
		t.Fatalf("raw put: %d %s", a.status, a.body)
	}
	if a := call(t, vm, "GET", "/v1/orgs/C1/raw/executions/x", nil); a.status != 200 || string(a.body) != "raw" {
		t.Fatalf("raw get: %d %s", a.status, a.body)
	}
}

func TestRecordsDeleteCentralKind(t *testing.T) {
	n := startRoles(t, schema.RoleCentral)
	id, body := fixtures[schema.KindTestTakers][0], fixtures[schema.KindTestTakers][1]
	if a := call(t, n, "PUT", recPath(schema.KindTestTakers, id), []byte(body)); a.status != 200 {
		t.Fatalf("put: %d %s", a.status, a.body)
	}
	if a := call(t, n, "DELETE", recPath(schema.KindTestTakers, id), nil); a.status != 200 || !bytes.Contains(a.body, []byte(`"delete"`)) {
		t.Fatalf("delete: %d %s", a.status, a.body)
	}
	if a := call(t, n, "GET", recPath(schema.KindTestTakers, id), nil); a.status != 404 {
		t.Fatalf("get after delete: %d %s", a.status, a.body)
	}
	if a := call(t, n, "DELETE", recPath(schema.KindTestTakers, id), nil); a.status != 404 {
		t.Fatalf("second delete: %d %s", a.status, a.body)
	}
}

// pollChanges long-polls the feed of C1 after since.
func pollChanges(t *testing.T, n *Node, since string, wait string) Changes {
	t.Helper()
	a := call(t, n, "GET", "/v1/orgs/C1/changes?since="+since+"&wait="+wait, nil)
	var c Changes
	if a.status != 200 || json.Unmarshal(a.body, &c) != nil {
		t.Fatalf("changes: %d %s", a.status, a.body)
	}
	return c
}

func putFixture(t *testing.T, n *Node, kind schema.Kind) {
	t.Helper()
	if a := call(t, n, "PUT", recPath(kind, fixtures[kind][0]), []byte(fixtures[kind][1])); a.status != 200 {
		t.Fatalf("put %s: %d %s", kind, a.status, a.body)
	}
}

func TestChangesLongPoll(t *testing.T) {
	n := startRoles(t, schema.RoleCentral)
	c := pollChanges(t, n, "0", "0s")
	if len(c.Changes) != 0 || c.Next != "0" {
		t.Fatalf("empty feed: %+v", c)
	}
	got := make(chan Changes, 1)
	go func() {
		// Not call: t.Fatal belongs to the test's goroutine.
		var c Changes
		req, _ := http.NewRequest("GET", "http://"+n.APIAddr()+"/v1/orgs/C1/changes?since=0&wait=30s", nil)
		req.Header.Set("Authorization", "Bearer "+n.Token())
		if resp, err := newHTTPClient().Do(req); err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&c)
			resp.Body.Close()
		}
		got <- c
	}()
	putFixture(t, n, schema.KindTestTakers)
	select {
	case c = <-got:
	case <-time.After(20 * time.Second):
		t.Fatal("long poll did not return after a write")
	}
	if len(c.Changes) != 1 || c.Changes[0] != (Change{Seq: 1, Key: "/test-takers/tt1", Kind: "test-takers", ID: "tt1", Op: OpPut, At: c.Changes[0].At}) || c.Next != "1" {
		t.Fatalf("changes: %+v", c)
	}
	if a := call(t, n, "DELETE", recPath(schema.KindTestTakers, "tt1"), nil); a.status != 200 {
		t.Fatal(string(a.body))
	}
	c = pollChanges(t, n, "1", "30s")
	if len(c.Changes) != 1 || c.Changes[0].Op != OpDelete || c.Changes[0].Seq != 2 || c.Next != "2" {
		t.Fatalf("delete change: %+v", c)
	}
	// A nothing-new poll with a short wait answers empty, cursor unchanged.
	if c = pollChanges(t, n, "2", "10ms"); len(c.Changes) != 0 || c.Next != "2" {
		t.Fatalf("idle poll: %+v", c)
	}
	a := call(t, n, "GET", "/v1/orgs/C1/changes?since=x", nil)
	if a.status != 400 || a.err.Field != "since" {
		t.Fatalf("bad cursor: %d %s", a.status, a.body)
	}
	a = call(t, n, "GET", "/v1/orgs/C1/changes?wait=forever", nil)
	if a.status != 400 || a.err.Field != "wait" {
		t.Fatalf("bad wait: %d %s", a.status, a.body)
	}
}

func TestChangesServerSentEvents(t *testing.T) {
	n := startRoles(t, schema.RoleCentral)
	putFixture(t, n, schema.KindTestTakers)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+n.APIAddr()+"/v1/orgs/C1/changes", nil)
	req.Header.Set("Authorization", "Bearer "+n.Token())
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("%d %s", resp.StatusCode, ct)
	}
	events := make(chan Change, 10)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		var id string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "id: "):
				id = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "data: "):
				var c Change
				if json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &c) == nil && strconv.FormatUint(c.Seq, 10) == id {
					events <- c
				}
			}
		}
	}()
	next := func() Change {
		t.Helper()
		select {
		case c, ok := <-events:
			if !ok {
				t.Fatal("stream ended")
			}
			return c
		case <-time.After(20 * time.Second):
			t.Fatal("no event")
		}
		return Change{}
	}
	if c := next(); c.Seq != 1 || c.ID != "tt1" {
		t.Fatalf("first event: %+v", c)
	}
	putFixture(t, n, schema.KindDeliveries)
	if c := next(); c.Seq != 2 || c.Kind != "deliveries" {
		t.Fatalf("second event: %+v", c)
	}
	cancel()
	for range events {
	}
}

func TestChangesResumeAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	n := newTestNode(t, dir, schema.RoleCentral)
	putFixture(t, n, schema.KindTestTakers)
	putFixture(t, n, schema.KindDeliveries)
	c := pollChanges(t, n, "0", "30s")
	for len(c.Changes) < 2 {
		c2 := pollChanges(t, n, c.Next, "30s")
		c.Changes, c.Next = append(c.Changes, c2.Changes...), c2.Next
	}
	cursor := c.Next
	// Written after the consumer's last read, then the daemon restarts.
	putFixture(t, n, schema.KindEligibilities)
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	n = newTestNode(t, dir, schema.RoleCentral)
	defer func() {
		if err := n.Close(); err != nil {
			t.Error(err)
		}
	}()
	putFixture(t, n, schema.KindLTIConsumers)
	var seen []Change
	for len(seen) < 2 {
		c := pollChanges(t, n, cursor, "30s")
		seen, cursor = append(seen, c.Changes...), c.Next
	}
	if len(seen) != 2 || seen[0].Kind != "eligibilities" || seen[0].Seq != 3 || seen[1].Kind != "lti-consumers" || seen[1].Seq != 4 {
		t.Fatalf("after restart: %+v", seen)
	}
	for _, s := range seen {
		if s.Op == OpResync {
			t.Fatalf("resync after a clean shutdown: %+v", seen)
		}
	}
}

func TestChangesResyncAfterUncleanShutdown(t *testing.T) {
	dir := t.TempDir()
	n := newTestNode(t, dir, schema.RoleCentral)
	putFixture(t, n, schema.KindTestTakers)
	if c := pollChanges(t, n, "0", "30s"); len(c.Changes) != 1 {
		t.Fatalf("%+v", c)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	// A crash leaves the running marker behind.
	st, err := crdt.OpenStore(dir+"/"+StoreDir, crdt.DefaultStoreOptions())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Datastore().Put(context.Background(), feedRunningKey, []byte("crashed")); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	n = newTestNode(t, dir, schema.RoleCentral)
	defer func() {
		if err := n.Close(); err != nil {
			t.Error(err)
		}
	}()
	c := pollChanges(t, n, "1", "30s")
	if len(c.Changes) != 1 || c.Changes[0].Op != OpResync || c.Changes[0].Seq != 2 || c.Next != "2" {
		t.Fatalf("after an unclean shutdown: %+v", c)
	}
	// A cursor from the future (a wiped feed) is told to resync too.
	c = pollChanges(t, n, "99", "0s")
	if len(c.Changes) != 1 || c.Changes[0].Op != OpResync || c.Next != "2" {
		t.Fatalf("future cursor: %+v", c)
	}
}
