package node

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/examnode/examnode/internal/testwait"
	"github.com/examnode/examnode/schema"
)

// startPprof starts a node of C1 with "pprof" set to on, closed when the
// test ends.
func startPprof(t *testing.T, on bool, maxConns int) *Node {
	t.Helper()
	cfg := localConfig(schema.RoleVM)
	cfg.Pprof = on
	cfg.APIMaxConnections = maxConns
	return startConfig(t, t.TempDir(), cfg)
}

// Without "pprof": true the profiling routes answer 404 pprof_off, naming
// the key, and only behind the token.
func TestPprofOffAnswers404NamingTheKey(t *testing.T) {
	n := startPprof(t, false, 0)
	for _, p := range []string{"/debug/pprof", "/debug/pprof/", "/debug/pprof/heap?debug=1", "/debug/pprof/profile?seconds=1"} {
		status, e := request(t, n, "GET", p, n.Token(), nil)
		if status != http.StatusNotFound || e.Code != "pprof_off" || !strings.Contains(e.Error, `"pprof": true`) {
			t.Errorf("GET %s without pprof: %d %+v, want 404 pprof_off naming \"pprof\"", p, status, e)
		}
		if status, e := request(t, n, "GET", p, "", nil); status != http.StatusUnauthorized || e.Code != "unauthorized" {
			t.Errorf("GET %s without pprof or token: %d %+v, want 401", p, status, e)
		}
	}
}

// With "pprof": true the profiles need the token, answer what
// net/http/pprof answers, and bound seconds.
func TestPprofServesProfilesBehindTheToken(t *testing.T) {
	n := startPprof(t, true, 0)
	for _, p := range []string{"/debug/pprof/", "/debug/pprof/heap?debug=1", "/debug/pprof/profile?seconds=1", "/debug/pprof/cmdline"} {
		for _, tok := range []string{"", "wrong"} {
			if status, e := request(t, n, "GET", p, tok, nil); status != http.StatusUnauthorized || e.Code != "unauthorized" {
				t.Errorf("GET %s with token %q: %d %+v, want 401", p, tok, status, e)
			}
		}
	}

	status, body, _ := get(t, n, "/debug/pprof/heap?debug=1", n.Token())
	if status != http.StatusOK || !strings.HasPrefix(body, "heap profile:") {
		t.Fatalf("heap?debug=1: %d %.200q, want a heap profile in text", status, body)
	}
	status, body, _ = get(t, n, "/debug/pprof/", n.Token())
	if status != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Fatalf("index: %d %.200q", status, body)
	}
	status, body, _ = get(t, n, "/debug/pprof/goroutine?debug=1", n.Token())
	if status != http.StatusOK || !strings.HasPrefix(body, "goroutine profile:") {
		t.Fatalf("goroutine?debug=1: %d %.200q", status, body)
	}

	start := time.Now()
	status, body, h := get(t, n, "/debug/pprof/profile?seconds=1", n.Token())
	if status != http.StatusOK || len(body) < 2 || body[0] != 0x1f || body[1] != 0x8b {
		t.Fatalf("profile?seconds=1: %d %s %.40q, want a gzipped CPU profile", status, h.Get("Content-Type"), body)
	}
	if d := time.Since(start); d < time.Second {
		t.Fatalf("profile?seconds=1 answered after %v", d)
	}

	for _, p := range []string{
		"/debug/pprof/profile?seconds=600", "/debug/pprof/profile?seconds=61", "/debug/pprof/profile?seconds=0",
		"/debug/pprof/profile?seconds=1.5", "/debug/pprof/profile?seconds=x", "/debug/pprof/trace?seconds=600",
		"/debug/pprof/trace?seconds=NaN", "/debug/pprof/heap?seconds=600", "/debug/pprof/allocs?seconds=-1",
	} {
		status, e := request(t, n, "GET", p, n.Token(), nil)
		if status != http.StatusBadRequest || e.Code != "invalid" || !strings.Contains(e.Error, "60") {
			t.Errorf("GET %s: %d %+v, want 400 invalid naming the limit", p, status, e)
		}
	}
	status, body, _ = get(t, n, "/debug/pprof/trace?seconds=0.2", n.Token())
	if status != http.StatusOK || len(body) == 0 {
		t.Fatalf("trace?seconds=0.2: %d, %d bytes", status, len(body))
	}
}

// A profile in progress is not cut by the connection cap (other clients
// come and go meanwhile), and the node's Close ends it early with what was
// recorded, without waiting for it.
func TestPprofLongProfileSurvivesTheCapAndEndsOnClose(t *testing.T) {
	// A cap of 4: the profile's connection, the previous look's (which
	// may not be idle yet when the next is accepted), and idle ones to close.
	n := startPprof(t, true, 4)
	type result struct {
		status int
		body   string
		took   time.Duration
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		req, _ := http.NewRequest("GET", "http://"+n.APIAddr()+"/debug/pprof/profile?seconds=60", nil)
		req.Header.Set("Authorization", "Bearer "+n.Token())
		resp, err := (&http.Client{Transport: &http.Transport{}}).Do(req)
		if err != nil {
			done <- result{status: -1, body: err.Error()}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			done <- result{status: -2, body: err.Error()}
			return
		}
		done <- result{resp.StatusCode, string(b), time.Since(start)}
	}()
	// Wait until the profile is under way, each look on a new connection
	// left open, so that every one past the cap closes an idle one.
	var transports []*http.Transport
	defer func() {
		for _, tr := range transports {
			tr.CloseIdleConnections()
		}
	}()
	look := func(path string) (int, string) {
		tr := &http.Transport{}
		transports = append(transports, tr)
		req, _ := http.NewRequest("GET", "http://"+n.APIAddr()+path, nil)
		req.Header.Set("Authorization", "Bearer "+n.Token())
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatalf("GET %s beside a profile: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	started := testwait.Until(t, 10*time.Second, 50*time.Millisecond, func() bool {
		status, body := look("/debug/pprof/goroutine?debug=1")
		if status != http.StatusOK {
			t.Fatalf("goroutine profile beside a CPU profile: %d", status)
		}
		return strings.Contains(body, "net/http/pprof.Profile")
	})
	if !started {
		t.Fatal("the 60 s profile did not start")
	}
	for range 8 {
		if status, _ := look("/v1/status"); status != http.StatusOK {
			t.Fatalf("status beside a profile: %d", status)
		}
	}
	if ev := n.apiLn.(*connLimiter).evicted.Load(); ev == 0 {
		t.Fatalf("no connection evicted: the cap was not reached")
	}
	select {
	case r := <-done:
		t.Fatalf("the profile ended before Close: %d %.100q", r.status, r.body)
	case <-time.After(500 * time.Millisecond):
	}
	closed := time.Now()
	if err := n.Close(); err != nil {
		t.Fatalf("Close during a profile: %v", err)
	}
	if d := time.Since(closed); d > 3*time.Second {
		t.Fatalf("Close took %v with a profile running", d)
	}
	r := <-done
	if r.status != http.StatusOK || len(r.body) < 2 || r.body[0] != 0x1f || r.body[1] != 0x8b {
		t.Fatalf("the profile cut by Close: %d %.100q, want what was recorded, gzipped", r.status, r.body)
	}
	if r.took > 30*time.Second {
		t.Fatalf("the profile took %v", r.took)
	}
}
