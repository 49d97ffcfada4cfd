package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/examnode/examnode/schema"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreAnyFunction("github.com/ipfs/go-log/v2/writer.(*MirrorWriter).logRoutine"),
	)
}

func startNode(t *testing.T) *Node {
	t.Helper()
	cfg := localConfig(schema.RoleVM)
	cfg.Debug = true // the raw routes
	return startConfig(t, t.TempDir(), cfg)
}

// localConfig is the configuration of a test node of C1 with one role:
// loopback addresses on free ports, no LAN discovery.
func localConfig(role schema.Role) Config {
	cfg := DefaultConfig(role, "C1")
	cfg.Listen, cfg.API, cfg.LANDiscovery = []string{"/ip4/127.0.0.1/tcp/0"}, "127.0.0.1:0", false
	return cfg
}

// openStarted opens a node on dir with cfg and starts it; the caller
// closes it.
func openStarted(t *testing.T, dir string, cfg Config) *Node {
	t.Helper()
	n, err := New(dir, cfg, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(errors.Join(err, n.Close()))
	}
	return n
}

// startConfig is openStarted, closed (twice: Close is safe twice) when the
// test ends.
func startConfig(t *testing.T, dir string, cfg Config) *Node {
	t.Helper()
	n := openStarted(t, dir, cfg)
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Error(err)
		}
		if err := n.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
	return n
}

func request(t *testing.T, n *Node, method, path, token string, body []byte) (int, apiError) {
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
	var e apiError
	_ = json.NewDecoder(resp.Body).Decode(&e)
	return resp.StatusCode, e
}

func TestAPIRefusesBadRequestsAndStoresNothing(t *testing.T) {
	n := startNode(t)
	tok := n.Token()
	for _, tc := range []struct {
		name, method, path, token string
		body                      []byte
		status                    int
		code                      string
	}{
		{"no token", "PUT", "/v1/orgs/C1/raw/a", "", []byte("x"), 401, "unauthorized"},
		{"wrong token", "PUT", "/v1/orgs/C1/raw/a", "nope", []byte("x"), 401, "unauthorized"},
		{"other organisation", "PUT", "/v1/orgs/C2/raw/a", tok, []byte("x"), 404, "unknown_org"},
		{"bad key", "PUT", "/v1/orgs/C1/raw/a%20b", tok, []byte("x"), 400, "invalid"},
		{"oversize", "PUT", "/v1/orgs/C1/raw/a", tok, bytes.Repeat([]byte("x"), MaxValueSize+1), 413, "too_large"},
		{"dot-dot is not followed", "PUT", "/v1/orgs/C1/raw/x/../a", tok, []byte("x"), http.StatusTemporaryRedirect, ""},
		{"missing", "GET", "/v1/orgs/C1/raw/absent", tok, nil, 404, "not_found"},
		{"bad paging", "GET", "/v1/orgs/C1/raw?limit=-1", tok, nil, 400, "invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, e := request(t, n, tc.method, tc.path, tc.token, tc.body)
			if status != tc.status || e.Code != tc.code {
				t.Fatalf("status %d code %q (%s), want %d %q", status, e.Code, e.Error, tc.status, tc.code)
			}
			if status >= 400 && status != 404 && !strings.Contains(e.Error, " ") {
				t.Fatalf("error message does not explain: %q", e.Error)
			}
		})
	}
	rep, err := n.Replica("C1")
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := rep.Count(context.Background(), "/"); c != 0 {
		t.Fatalf("%d records stored by refused requests", c)
	}
}

func TestAPIWriteIsDurableAndReadable(t *testing.T) {
	n := startNode(t)
	cl := &Client{Addr: n.APIAddr(), Token: n.Token()}
	ctx := context.Background()
	r, err := cl.Put(ctx, "C1", "/results/e1", []byte("17"))
	if err != nil || !r.Durable {
		t.Fatalf("put: %+v, %v", r, err)
	}
	v, err := cl.Get(ctx, "C1", "/results/e1")
	if err != nil || string(v) != "17" {
		t.Fatalf("get: %q, %v", v, err)
	}
}

// Without "debug": true the raw routes do not exist: they answer 404
// raw_off, naming the key, and write nothing; the record routes work.
func TestRawRoutesExistOnlyWithDebug(t *testing.T) {
	n := startConfig(t, t.TempDir(), localConfig(schema.RoleCentral))
	putFixture(t, n, schema.KindTestTakers)
	for _, rq := range []struct{ method, path string }{
		{"GET", "/v1/orgs/C1/raw"}, {"GET", "/v1/orgs/C1/raw/test-takers/tt1"},
		{"PUT", "/v1/orgs/C1/raw/test-takers/tt1"}, {"DELETE", "/v1/orgs/C1/raw/test-takers/tt1"},
	} {
		status, e := request(t, n, rq.method, rq.path, n.Token(), []byte("x"))
		if status != http.StatusNotFound || e.Code != "raw_off" || !strings.Contains(e.Error, `"debug": true`) {
			t.Errorf("%s %s without debug: %d %+v, want 404 raw_off naming \"debug\"", rq.method, rq.path, status, e)
		}
	}
	if a := call(t, n, "GET", recPath(schema.KindTestTakers, "tt1"), nil); a.status != 200 || !strings.Contains(string(a.body), "jdoe") && !strings.Contains(string(a.body), "login") {
		t.Fatalf("record after raw requests: %d %s", a.status, a.body)
	}
	cl := &Client{Addr: n.APIAddr(), Token: n.Token()}
	var ae *APIError
	if err := cl.Delete(context.Background(), "C1", "/test-takers/tt1"); !errors.As(err, &ae) || ae.Code != "raw_off" {
		t.Fatalf("client raw delete without debug: %v", err)
	}
}
