package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/examnode/examnode/node"
)

// floodHelpers is how many processes hold them.
const floodHelpers = 2

// floodConns is how many idle connections TestAPIHolds20000IdleConnections
// opens: the number that exhausted a daemon without a connection cap.
const floodConns = 20000

// A platform (or anything local) that opens 20,000 connections to the API,
// each fetching a page asset and then falling silent, does not take the
// node down: the platform's authenticated requests are still answered
// within seconds, and the daemon's open files and memory stay bounded. The
// daemon is a separate `examnode run` process in the production
// configuration: gated (authority and membership), encrypted store,
// default connection cap.
func TestAPIHolds20000IdleConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 20,000 connections")
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "examnode")
	build := exec.Command("go", "build", "-o", bin, "github.com/examnode/examnode/cmd/examnode")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dir := gatedEncryptedVM(t, tmp)

	var stderr bytes.Buffer
	daemon := exec.Command(bin, "run", "--dir", dir)
	daemon.Stderr = &stderr
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- daemon.Wait() }()
	t.Cleanup(func() {
		_ = daemon.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = daemon.Process.Kill()
			<-exited
			t.Errorf("the daemon did not stop within 30s of an interrupt")
		}
	})
	pid := daemon.Process.Pid
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, err := os.ReadFile(filepath.Join(dir, node.APIAddrFile)); err == nil && len(b) > 0 {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("the daemon exited: %v\n%s", err, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon did not start:\n%s", stderr.String())
		}
	}
	cl, err := node.ClientFromDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	addr := cl.Addr

	// The platform: write a record and read it back, each within 5s.
	var seq atomic.Int64
	platform := func() (time.Duration, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		start := time.Now()
		id := fmt.Sprintf("u%d", seq.Add(1))
		body := fmt.Sprintf(`{"consumer_key":"moodle-key","user_id":%q,"roles":["Learner"]}`, id)
		if _, err := cl.PutRecord(ctx, "C1", "lti-users", id, []byte(body)); err != nil {
			return time.Since(start), fmt.Errorf("put lti-users/%s: %w", id, err)
		}
		rec, err := cl.GetRecord(ctx, "C1", "lti-users", id)
		if err != nil || !bytes.Contains(rec.Body, []byte(id)) {
			return time.Since(start), fmt.Errorf("get lti-users/%s: %v", id, err)
		}
		return time.Since(start), nil
	}
	if _, err := platform(); err != nil {
		t.Fatal(err)
	}
	rss0, fds0 := procFigures(t, pid)

	// Sample the daemon's figures and serve the platform all along.
	var (
		mu                sync.Mutex
		peakRSS, peakFDs  int
		worst             time.Duration
		answered, failed  int
		failures          []string
		stopBackground    = make(chan struct{})
		backgroundStopped sync.WaitGroup
	)
	backgroundStopped.Add(2)
	go func() {
		defer backgroundStopped.Done()
		for {
			if rss, fds := procFigures(t, pid); rss > 0 {
				mu.Lock()
				peakRSS, peakFDs = max(peakRSS, rss), max(peakFDs, fds)
				mu.Unlock()
			}
			select {
			case <-stopBackground:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	go func() {
		defer backgroundStopped.Done()
		for {
			d, err := platform()
			mu.Lock()
			worst = max(worst, d)
			if err != nil {
				failed++
				failures = append(failures, err.Error())
			} else {
				answered++
			}
			mu.Unlock()
			select {
			case <-stopBackground:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()

	// 20,000 connections: each GETs a page asset (no token) and falls
	// silent. Two helper processes hold them (a process may open 20,000
	// files at most here, `ulimit -Hn`).
	floodStart := time.Now()
	var helpers []*floodHelper
	for range floodHelpers {
		h := startFloodHelper(t, addr, floodConns/floodHelpers)
		helpers = append(helpers, h)
	}
	for _, h := range helpers {
		if err := h.ready(); err != nil {
			t.Fatal(err)
		}
	}
	floodTime := time.Since(floodStart)

	// All 20,000 held open by the helpers: the platform and the CLI work.
	var after []time.Duration
	for range 10 {
		d, err := platform()
		if err != nil {
			t.Errorf("platform request with %d connections held: %v", floodConns, err)
		}
		after = append(after, d)
	}
	code, out, errs := cli(t, "", "status", "--dir", dir, "--json")
	var st node.Status
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || !strings.HasPrefix(st.Trust, "gated") || !st.Encrypted {
		t.Errorf("examnode status with %d connections held: exit %d %s %s", floodConns, code, errs, out)
	}
	close(stopBackground)
	backgroundStopped.Wait()
	rss1, fds1 := procFigures(t, pid)

	mu.Lock()
	defer mu.Unlock()
	limits, _ := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	for _, line := range strings.Split(string(limits), "\n") {
		if strings.HasPrefix(line, "Max open files") {
			t.Logf("daemon: %s", strings.Join(strings.Fields(line), " "))
		}
	}
	t.Logf("daemon before: VmRSS %d KiB, %d open files", rss0, fds0)
	t.Logf("%d connections opened in %v; daemon at the end: VmRSS %d KiB, %d open files; peak: VmRSS %d KiB, %d open files",
		floodConns, floodTime.Round(time.Millisecond), rss1, fds1, peakRSS, peakFDs)
	t.Logf("platform during the flood: %d answered, %d failed, slowest %v; after it, 10 requests: %v",
		answered, failed, worst.Round(time.Millisecond), after)
	if failed > 0 {
		t.Errorf("%d platform requests failed during the flood: %v", failed, failures[:min(len(failures), 5)])
	}
	if answered == 0 {
		t.Error("no platform request was answered during the flood")
	}
	// Bounded: the cap (node.DefaultAPIMaxConnections) plus the store's
	// and the mesh's files; 200 MiB at most (a daemon without the cap
	// reached 532 MiB and ran out of files).
	if limit := node.DefaultAPIMaxConnections + 512; peakFDs > limit {
		t.Errorf("the daemon held %d open files, more than the connection cap allows (%d)", peakFDs, limit)
	}
	if limit := 200 << 10; peakRSS > limit {
		t.Errorf("the daemon's VmRSS reached %d KiB, more than %d KiB", peakRSS, limit)
	}
}

// procFigures reads a process's resident memory (KiB) and open files.
func procFigures(t *testing.T, pid int) (rssKiB, fds int) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			rssKiB, _ = strconv.Atoi(f[1])
		}
	}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, 0
	}
	return rssKiB, len(ents)
}

// gatedEncryptedVM initialises a VM of C1 as in production: gated by a
// network authority, with its membership, and an encrypted store.
func gatedEncryptedVM(t *testing.T, tmp string) string {
	t.Helper()
	keyFile := filepath.Join(tmp, "authority.pem")
	pub := strings.TrimSpace(mustCLI(t, "authority", "init", "--out", keyFile))
	dir := filepath.Join(tmp, "vm")
	out := mustCLI(t, "init", "--dir", dir, "--role", "vm", "--org", "C1", "--encrypt",
		"--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0", "--lan-discovery=false", "--authority", pub)
	var id string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "peer" && f[1] == "ID:" {
			id = f[2]
		}
	}
	if id == "" {
		t.Fatalf("init printed no peer ID:\n%s", out)
	}
	m := strings.TrimSpace(mustCLI(t, "grant", "--authority", keyFile, "--peer", id, "--org", "C1", "--role", "vm", "--expires", "1d"))
	cfg, err := node.LoadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Membership = m
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, node.ConfigFile), append(b, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// floodHelper is a process (this test binary, running
// TestFloodHelperProcess) that holds idle connections until its stdin
// closes.
type floodHelper struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

func startFloodHelper(t *testing.T, addr string, n int) *floodHelper {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestFloodHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "EXAMNODE_FLOOD_ADDR="+addr, "EXAMNODE_FLOOD_CONNS="+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &floodHelper{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
	t.Cleanup(func() {
		_ = stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	return h
}

// ready waits for the helper's report that its connections are open.
func (h *floodHelper) ready() error {
	for {
		line, err := h.out.ReadString('\n')
		if err != nil {
			return fmt.Errorf("flood helper: %w", err)
		}
		if rest, ok := strings.CutPrefix(line, "flood: "); ok {
			if rest = strings.TrimSpace(rest); rest != "ok" {
				return fmt.Errorf("flood helper: %s", rest)
			}
			return nil
		}
	}
}

// TestFloodHelperProcess is not a test: TestAPIHolds20000IdleConnections
// runs it in a process of its own to hold connections.
func TestFloodHelperProcess(t *testing.T) {
	addr, n := os.Getenv("EXAMNODE_FLOOD_ADDR"), os.Getenv("EXAMNODE_FLOOD_CONNS")
	if addr == "" {
		t.Skip("a helper process of TestAPIHolds20000IdleConnections")
	}
	count, _ := strconv.Atoi(n)
	conns := make([]net.Conn, count)
	var dialErrs atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	const dialers = 16
	for w := range dialers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < count; i += dialers {
				c, err := net.DialTimeout("tcp", addr, 10*time.Second)
				if err != nil {
					dialErrs.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				_, _ = io.WriteString(c, "GET /ui/app.js HTTP/1.1\r\nHost: "+addr+"\r\n\r\n")
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	if e := dialErrs.Load(); e > 0 {
		fmt.Printf("flood: %d of %d connections could not be opened (first: %v)\n", e, count, firstErr.Load())
	} else {
		fmt.Printf("flood: ok\n")
	}
	_, _ = io.Copy(io.Discard, os.Stdin) // hold them until the test is done
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}
