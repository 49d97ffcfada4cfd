package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/examnode/examnode/node"
	"github.com/examnode/examnode/schema"
)

// syncBuffer is a bytes.Buffer safe to read while a command writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRecordsAndChangesCommands(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "central")
	mustCLI(t, "init", "--dir", dir, "--role", "central", "--org", "C1", "--insecure-open",
		"--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0", "--lan-discovery=false")
	startDaemon(t, dir)

	code, out, errs := cli(t, `{"login":"jdoe","name":"Jane Doe"}`, "records", "put", "--dir", dir, "C1", "test-takers", "tt1")
	if code != 0 || !strings.Contains(out, "created /test-takers/tt1 in C1 (durable)") {
		t.Fatalf("put from stdin: exit %d %q %q", code, out, errs)
	}
	file := filepath.Join(t.TempDir(), "tt2.json")
	if err := os.WriteFile(file, []byte(`{"login":"asmith"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	var res node.RecordResult
	if err := json.Unmarshal([]byte(mustCLI(t, "records", "put", "--dir", dir, "C1", "test-takers", "tt2", "-f", file, "--json")), &res); err != nil || !res.Durable || res.Outcome != "create" {
		t.Fatalf("put -f --json: %+v %v", res, err)
	}
	if out := mustCLI(t, "records", "get", "--dir", dir, "C1", "test-takers", "tt1"); !strings.Contains(out, "/test-takers/tt1 in C1") || !strings.Contains(out, "Jane Doe") {
		t.Fatalf("get:\n%s", out)
	}
	out = mustCLI(t, "records", "ls", "--dir", dir, "C1", "test-takers")
	for _, want := range []string{"ID", "tt1", "tt2", "asmith"} {
		if !strings.Contains(out, want) {
			t.Fatalf("ls lacks %q:\n%s", want, out)
		}
	}
	var l node.RecordList
	if err := json.Unmarshal([]byte(mustCLI(t, "records", "ls", "--dir", dir, "C1", "test-takers", "--limit", "1", "--json")), &l); err != nil || len(l.Records) != 1 || !l.More {
		t.Fatalf("ls --json: %+v %v", l, err)
	}
	// Refusals name the rule and the field.
	code, _, errs = cli(t, `{"login":"x","colour":"red"}`, "records", "put", "--dir", dir, "C1", "test-takers", "tt3")
	if code == 0 || !strings.Contains(errs, "field body.colour") {
		t.Fatalf("bad put: exit %d %q", code, errs)
	}
	code, _, errs = cli(t, `{}`, "records", "put", "--dir", dir, "C1", "results", "e1")
	if code == 0 || !strings.Contains(errs, "role_may_not_write") {
		t.Fatalf("central writing a result: exit %d %q", code, errs)
	}

	out = mustCLI(t, "changes", "--dir", dir, "C1")
	if !strings.Contains(out, "/test-takers/tt1") || !strings.Contains(out, "next: 2") {
		t.Fatalf("changes:\n%s", out)
	}
	var page node.Changes
	if err := json.Unmarshal([]byte(mustCLI(t, "changes", "--dir", dir, "C1", "--since", "1", "--json")), &page); err != nil ||
		len(page.Changes) != 1 || page.Changes[0].ID != "tt2" || page.Next != "2" {
		t.Fatalf("changes --since 1 --json: %+v %v", page, err)
	}

	// --follow streams what is written while it runs.
	ctx, cancel := context.WithCancel(context.Background())
	var follow syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- execute(ctx, []string{"changes", "--dir", dir, "C1", "--since", "2", "--follow", "--json"}, nil, &follow, &bytes.Buffer{})
	}()
	mustCLI(t, "records", "rm", "--dir", dir, "C1", "test-takers", "tt1")
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(follow.String(), `"op":"delete"`) {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("follow did not show the delete: %q", follow.String())
		}
		select {
		case code := <-done:
			t.Fatalf("follow exited %d early: %q", code, follow.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("follow exited %d after interrupt", code)
	}
	var ch node.Change
	if err := json.Unmarshal([]byte(strings.TrimSpace(follow.String())), &ch); err != nil || ch.Seq != 3 || ch.Kind != string(schema.KindTestTakers) {
		t.Fatalf("follow output %q: %v", follow.String(), err)
	}
}
