package node

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func get(t *testing.T, n *Node, path, token string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+n.APIAddr()+path, nil)
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
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestMetricsNeedTheTokenAndCountWrites(t *testing.T) {
	n := startNode(t)
	cl := &Client{Addr: n.APIAddr(), Token: n.Token()}
	ctx := context.Background()
	for _, k := range []string{"/results/e1", "/results/e2", "/notes/n1"} {
		if _, err := cl.Put(ctx, "C1", k, []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	if status, _, _ := get(t, n, "/metrics", ""); status != http.StatusUnauthorized {
		t.Fatalf("/metrics without the token: %d, want 401", status)
	}
	b, err := cl.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	for _, want := range []string{
		`examnode_records{org="C1"} 3`,
		`examnode_records_by_kind{kind="results",org="C1"} 2`,
		`examnode_peers_connected 0`,
		`examnode_heads{org="C1"} 1`,
		`examnode_announcements_total{event="dropped",org="C1"} 0`,
		`examnode_write_duration_seconds_count{method="PUT",route="raw"} 3`,
		`examnode_records_written_total{org="C1"} 3`,
		`examnode_verdict{verdict="isolated from central"} 1`,
		`examnode_pulls_total{result="failed"} 0`,
		"examnode_group_commits_total",
		"go_goroutines",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestHistoryCountsWritesHere(t *testing.T) {
	n := startNode(t)
	cl := &Client{Addr: n.APIAddr(), Token: n.Token()}
	ctx := context.Background()
	for _, k := range []string{"/results/e1", "/results/e2", "/notes/n1"} {
		if _, err := cl.Put(ctx, "C1", k, []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	// The feed entry follows the write by one drainer round: poll.
	deadline := time.Now().Add(10 * time.Second)
	for {
		h, err := cl.History(ctx, "C1", "")
		if err != nil {
			t.Fatal(err)
		}
		written := map[string]int{}
		for _, e := range h.Events {
			if e.Event == EventReceived {
				t.Fatalf("a local write counted as received: %+v", e)
			}
			if e.Event == EventWritten {
				for k, c := range e.Kinds {
					written[k] += c
				}
			}
		}
		if written["results"] == 2 && written["other"] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("history after 3 writes: %+v", h.Events)
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
		}
	}
}

func TestStatusPageTakesTheTokenInTheURLOnly(t *testing.T) {
	n := startNode(t)
	tok := n.Token()
	if status, body, _ := get(t, n, "/ui", ""); status != http.StatusUnauthorized || !strings.Contains(body, "api.token") {
		t.Fatalf("/ui without a token: %d %q", status, body)
	}
	if status, _, _ := get(t, n, "/ui?token=wrong", ""); status != http.StatusUnauthorized {
		t.Fatalf("/ui with a wrong token: %d", status)
	}
	status, body, h := get(t, n, "/ui?token="+tok, "")
	if status != http.StatusOK || !strings.Contains(body, `<svg id="graph"`) || !strings.Contains(h.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Fatalf("/ui with the token: %d %q %v", status, body, h)
	}
	if status, body, _ := get(t, n, "/ui/app.js", ""); status != http.StatusOK || !strings.Contains(body, "Authorization") {
		t.Fatalf("/ui/app.js: %d", status)
	}
	// The query token opens /ui only.
	for _, p := range []string{"/v1/status?token=" + tok, "/metrics?token=" + tok, "/v1/history?token=" + tok} {
		if status, _, _ := get(t, n, p, ""); status != http.StatusUnauthorized {
			t.Fatalf("%s: %d, want 401", p, status)
		}
	}
}
