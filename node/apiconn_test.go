package node

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/examnode/examnode/internal/testwait"
	"github.com/examnode/examnode/schema"
)

// Every route but the status page's script and style sheet needs the
// token. The list holds one request per route of Handler (api.go,
// attachments.go, bundles_api.go, metrics, ui.go); add new routes here.
func TestAPIAnswersOnlyPageAssetsWithoutTheToken(t *testing.T) {
	n := startNode(t)
	open := map[string]bool{"GET /ui/app.js": true, "GET /ui/style.css": true, "HEAD /ui/app.js": true, "HEAD /ui/style.css": true}
	reqs := []string{
		"GET /ui/app.js", "GET /ui/style.css", "HEAD /ui/app.js", "HEAD /ui/style.css",
		"GET /ui", "GET /ui/", "GET /ui/index.html",
		"GET /v1/status", "GET /v1/peers", "GET /v1/sync", "GET /v1/history", "GET /metrics",
		"GET /v1/orgs/C1/raw", "GET /v1/orgs/C1/raw/a", "PUT /v1/orgs/C1/raw/a", "DELETE /v1/orgs/C1/raw/a",
		"GET /v1/orgs/C1/changes", "GET /v1/orgs/C1/refused", "POST /v1/revocations",
		"GET /v1/orgs/C1/held/results/e1", "POST /v1/orgs/C1/executions/e1/resume",
		"GET /v1/orgs/C1/test-takers", "GET /v1/orgs/C1/test-takers/tt1",
		"PUT /v1/orgs/C1/test-takers/tt1", "DELETE /v1/orgs/C1/test-takers/tt1",
		"PUT /v1/attachments/C1/e1/a.txt", "GET /v1/attachments/C1/e1",
		"GET /v1/bundles", "GET /v1/bundles/C1/e1/bundle",
		"GET /", "GET /nothing-here", "OPTIONS /v1/status", "GET /v1/orgs/C1/../../ui/app.js",
	}
	for _, rq := range reqs {
		method, path, _ := strings.Cut(rq, " ")
		req, err := http.NewRequest(method, "http://"+n.APIAddr()+path, strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := newHTTPClient().Do(req)
		if err != nil {
			t.Fatalf("%s: %v", rq, err)
		}
		resp.Body.Close()
		switch {
		case open[rq] && resp.StatusCode != http.StatusOK:
			t.Errorf("%s without the token: %d, want 200 (a page asset)", rq, resp.StatusCode)
		case !open[rq] && resp.StatusCode != http.StatusUnauthorized:
			t.Errorf("%s without the token: %d, want 401", rq, resp.StatusCode)
		case !open[rq] && !resp.Close:
			t.Errorf("%s without the token: the 401 keeps the connection open", rq)
		}
	}
}

// rawGet opens a connection, sends one request without a token and
// reads the answer; the connection stays open.
func rawGet(t *testing.T, addr, path string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", path, resp.StatusCode)
	}
	return c, br
}

// A connection that fetched a page asset and fell silent is closed after
// apiUnauthIdle, not kept for minutes (or for ever, as before); one that
// never sent a request is too.
func TestAPIClosesIdleUnauthenticatedConnectionsSoon(t *testing.T) {
	n := startNode(t)
	asset, br := rawGet(t, n.APIAddr(), "/ui/style.css")
	silent, err := net.Dial("tcp", n.APIAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	start := time.Now()
	for _, c := range []struct {
		name string
		r    io.Reader
		conn net.Conn
	}{{"idle after a page asset", br, asset}, {"silent from the start", silent, silent}} {
		_ = c.conn.SetReadDeadline(start.Add(apiUnauthIdle + 10*time.Second))
		_, err := c.r.Read(make([]byte, 1))
		if !errors.Is(err, io.EOF) {
			t.Fatalf("%s: read %v, want the daemon to close the connection (EOF)", c.name, err)
		}
		if d := time.Since(start); d > apiUnauthIdle+5*time.Second {
			t.Fatalf("%s: closed after %v, want about %v", c.name, d, apiUnauthIdle)
		}
	}
}

// At the cap, idle connections make room for new ones, the oldest
// unauthenticated first; a connection inside a request (a long poll) is
// never closed for it, and the platform's requests are answered.
func TestAPIConnectionCapClosesIdleConnectionsFirst(t *testing.T) {
	cfg := localConfig(schema.RoleCentral)
	cfg.APIMaxConnections = 20
	n := startConfig(t, t.TempDir(), cfg)
	lim := n.apiLn.(*connLimiter)

	// An authenticated long poll, open through what follows.
	got := make(chan Changes, 1)
	pollCtx, stopPoll := context.WithCancel(context.Background())
	defer stopPoll()
	go func() {
		var c Changes
		req, _ := http.NewRequestWithContext(pollCtx, "GET", "http://"+n.APIAddr()+"/v1/orgs/C1/changes?since=0&wait=60s", nil)
		req.Header.Set("Authorization", "Bearer "+n.Token())
		if resp, err := (&http.Client{}).Do(req); err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&c)
			resp.Body.Close()
		}
		got <- c
	}()
	if !testwait.Until(t, 10*time.Second, 10*time.Millisecond, func() bool { return lim.Open() == 1 }) {
		t.Fatalf("the long poll's connection is not open: %d", lim.Open())
	}

	// Five times the cap of idle, unauthenticated connections.
	var idle []net.Conn
	for range 5 * cfg.APIMaxConnections {
		c, _ := rawGet(t, n.APIAddr(), "/ui/app.js")
		idle = append(idle, c)
		if o := lim.Open(); o > cfg.APIMaxConnections {
			t.Fatalf("%d connections open, the cap is %d", o, cfg.APIMaxConnections)
		}
	}
	if lim.evicted.Load() == 0 {
		t.Fatal("no idle connection was closed to make room")
	}
	m, err := (&Client{Addr: n.APIAddr(), Token: n.Token()}).Metrics(context.Background())
	if err != nil || !strings.Contains(string(m), "examnode_api_connections_closed_total{reason=\"evicted\"}") || !strings.Contains(string(m), "examnode_api_connections ") {
		t.Fatalf("metrics lack the API's connections: %v\n%.2000s", err, m)
	}
	// The oldest idle ones were closed, the newest is still served.
	_ = idle[0].SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := idle[0].Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("oldest idle connection: read %v, want closed (EOF)", err)
	}
	last := idle[len(idle)-1]
	if _, err := io.WriteString(last, "GET /ui/app.js HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if resp, err := http.ReadResponse(bufio.NewReader(last), nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("newest idle connection, second request: %v", err)
	}

	// The platform writes a record; the long poll, still open, sees it.
	if a := call(t, n, "PUT", recPath(schema.KindTestTakers, fixtures[schema.KindTestTakers][0]), []byte(fixtures[schema.KindTestTakers][1])); a.status != 200 {
		t.Fatalf("platform write at the cap: %d %s", a.status, a.body)
	}
	select {
	case c := <-got:
		if len(c.Changes) != 1 || c.Changes[0].ID != "tt1" {
			t.Fatalf("long poll: %+v", c)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the long poll did not answer the write: its connection was closed to make room")
	}
}

// Under concurrent connections that come, make requests, idle and go (at
// a cap far below their number), the limiter never holds more than its
// cap and counts every connection out again: none is leaked or counted
// twice.
func TestConnLimiterCountsEveryConnectionOut(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const limit = 8
	lim := newConnLimiter(ln, limit)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "" {
				markAuthenticated(r)
			}
			_, _ = io.WriteString(w, "ok")
		}),
		ReadHeaderTimeout: apiReadHeaderTimeout, IdleTimeout: apiIdleTimeout,
		ConnState: lim.connState, ConnContext: connContext,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lim) }()
	defer func() {
		if err := srv.Close(); err != nil {
			t.Error(err)
		}
		<-served
	}()
	addr := ln.Addr().String()
	done := make(chan struct{})
	for g := range 16 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 25 {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					continue
				}
				if o := lim.Open(); o > limit+1 { // +1: this one may be counted before an eviction
					t.Errorf("%d connections open, cap %d", o, limit)
				}
				auth := ""
				if (g+i)%2 == 0 {
					auth = "Authorization: Bearer x\r\n"
				}
				_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n"+auth+"\r\n")
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if i%3 != 0 {
					c.Close() // the rest stay idle until the server closes them or the test ends
				} else {
					defer c.Close()
				}
			}
		}()
	}
	for range 16 {
		<-done
	}
	if o := lim.Open(); o > limit {
		t.Fatalf("%d connections open after the storm, cap %d", o, limit)
	}
	srv.SetKeepAlivesEnabled(false) // closes the idle ones
	if !testwait.Until(t, 10*time.Second, 10*time.Millisecond, func() bool { return lim.Open() == 0 }) {
		t.Fatalf("%d connections still counted after every one closed", lim.Open())
	}
}
