package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/examnode/examnode/node"
)

// cancelAfter cancels once it has seen n separator lines.
type cancelAfter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	n      int
	cancel context.CancelFunc
}

func (w *cancelAfter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(b)
	if strings.Count(w.buf.String(), "\n--- ") >= w.n {
		w.cancel()
	}
	return len(b), nil
}

func TestHistoryAndWatch(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vm")
	mustCLI(t, "init", "--dir", dir, "--role", "vm", "--org", "C1", "--insecure-open", "--debug", "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0", "--lan-discovery=false")
	startDaemon(t, dir)
	mustCLI(t, "put", "--dir", dir, "C1", "/results/e1", "x")

	out := mustCLI(t, "history", "--dir", dir, "--org", "C1")
	for _, want := range []string{"PEER", "STATE", "LAST EXCHANGE", "EVENT", "RECORDS"} {
		if !strings.Contains(out, want) {
			t.Fatalf("history lacks %q:\n%s", want, out)
		}
	}
	var h node.History
	if err := json.Unmarshal([]byte(mustCLI(t, "history", "--dir", dir, "--json")), &h); err != nil || !strings.HasPrefix(h.Node, "12D3") {
		t.Fatalf("history --json: %v %+v", err, h)
	}

	for _, cmd := range []string{"status", "peers", "sync", "history"} {
		ctx, cancel := context.WithCancel(context.Background())
		w := &cancelAfter{n: 2, cancel: cancel}
		var errb bytes.Buffer
		code := execute(ctx, []string{cmd, "--dir", dir, "--watch", "--interval", "10ms"}, nil, w, &errb)
		cancel()
		if code != 0 {
			t.Fatalf("%s --watch: exit %d: %s", cmd, code, errb.String())
		}
		if got := w.buf.String(); strings.Count(got, "\n--- ") < 2 || strings.Contains(got, "\x1b[") {
			t.Fatalf("%s --watch into a pipe: want 3 snapshots separated by lines, no ANSI codes:\n%s", cmd, got)
		}
	}
	if code, _, errs := cli(t, "", "status", "--dir", dir, "--watch", "--interval", "0s"); code == 0 || !strings.Contains(errs, "interval") {
		t.Fatalf("--interval 0: exit %d %q", code, errs)
	}
}
