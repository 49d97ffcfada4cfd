// Package scenario runs fault scenarios on real networks: every node is a
// separate `examnode run` process in its own Linux network namespace, the
// VMs of a centre share a bridge (their LAN) in a hub namespace, and each
// WAN host (central) hangs off the hub on a link of its own, so the WAN can
// be cut and healed, degraded, and nodes killed and restarted.
//
// Topology made by [New] for a [Spec]:
//
//	  vm1   vm2   vm3            (one namespace each, eth0 198.18.<lan>.<10+i>/24)
//	   |     |     |
//	[ bridge br<lan> in hub ]    (hub: 198.18.<lan>.1, routes between links)
//	   |
//	hub --- wan<j> --- central  (198.19.<j>.1 <-> 198.19.<j>.2, /24)
//
// Addresses come from 198.18.0.0/15 (RFC 2544) and exist only inside the
// namespaces the harness creates. The harness needs root and iproute2;
// without them the tests skip, saying why.
package scenario

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/examnode/examnode/node"
)

// Roles a host carries (passed to `examnode init --role`).
const (
	RoleVM      = "vm"
	RoleCentral = "central"
)

// HostSpec describes one host: a namespace with one examnode process.
type HostSpec struct {
	Name string // short, unique in the spec: "vm1", "central"
	Role string // RoleVM or RoleCentral
	Org  string // the VM's organisation; central holds it too
	// LAN names the centre LAN (bridge) the host sits on; "" puts the host
	// on its own WAN link to the hub (central, archive).
	LAN string
	// Peers are names of hosts this node keeps connected (`--peer`).
	Peers []string
	// DataSize, when non-zero, mounts a tmpfs of that many bytes as the
	// node's data directory (scenario 5: a disk that fills up).
	DataSize int64
}

// Spec describes a network: hosts, and through their LAN fields, links.
type Spec struct {
	Hosts []HostSpec
	// RedialMax shortens the backoff between redials of configured peers
	// (node tuning), so that the time to converge after a heal measures
	// replication rather than the default 30 s backoff ceiling.
	RedialMax time.Duration
}

// Host is a running host of a Net.
type Host struct {
	HostSpec
	NS     string // network namespace
	Addr   string // IPv4 address
	Dir    string // data directory
	PeerID string
	Log    string // the daemon's stderr, appended across restarts
	link   string // the hub-side end of its link
	gw     string // its default gateway (the hub)

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Net is a set of namespaces, links and examnode processes for one test.
type Net struct {
	t     *testing.T
	bin   string
	hub   string
	dir   string
	hosts map[string]*Host
	order []string
	lans  map[string]int
}

var (
	nsCounter int
	nsMu      sync.Mutex
)

// run runs a command with a time bound and returns its combined output.
func run(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

func (n *Net) must(name string, args ...string) {
	n.t.Helper()
	if _, err := run(30*time.Second, name, args...); err != nil {
		n.t.Fatal(err)
	}
}

func (n *Net) nsSh(ns, script string) {
	n.t.Helper()
	n.must("ip", "netns", "exec", ns, "sh", "-c", script)
}

// New creates the namespaces, links and data directories of spec, inits
// every node (central hosts first, so VMs can name them as peers) and
// starts them all. Everything is torn down by t.Cleanup, on failure too;
// if the test failed, each daemon's log is printed first.
func New(t *testing.T, spec Spec) *Net {
	t.Helper()
	requireNetns(t)
	nsMu.Lock()
	nsCounter++
	prefix := fmt.Sprintf("en%d-%d-", os.Getpid(), nsCounter)
	nsMu.Unlock()
	n := &Net{t: t, bin: examnodeBin, hub: prefix + "hub", dir: t.TempDir(), hosts: map[string]*Host{}, lans: map[string]int{}}
	t.Cleanup(n.teardown)

	n.must("ip", "netns", "add", n.hub)
	n.nsSh(n.hub, "ip link set lo up && echo 1 > /proc/sys/net/ipv4/ip_forward")
	wan := 0
	for i, hs := range spec.Hosts {
		h := &Host{HostSpec: hs, NS: prefix + hs.Name, Dir: filepath.Join(n.dir, hs.Name), Log: filepath.Join(n.dir, hs.Name+".log")}
		n.must("ip", "netns", "add", h.NS)
		n.hosts[hs.Name] = h
		n.order = append(n.order, hs.Name)
		var gw string
		if hs.LAN != "" {
			idx, ok := n.lans[hs.LAN]
			if !ok {
				idx = len(n.lans) + 1
				n.lans[hs.LAN] = idx
				br := fmt.Sprintf("br%d", idx)
				n.must("ip", "-n", n.hub, "link", "add", br, "type", "bridge", "mcast_snooping", "0")
				n.must("ip", "-n", n.hub, "addr", "add", fmt.Sprintf("198.18.%d.1/24", idx), "dev", br)
				n.must("ip", "-n", n.hub, "link", "set", br, "up")
			}
			h.Addr = fmt.Sprintf("198.18.%d.%d", idx, 10+i)
			gw = fmt.Sprintf("198.18.%d.1", idx)
			h.link = "l-" + hs.Name
			n.must("ip", "-n", n.hub, "link", "add", h.link, "type", "veth", "peer", "name", "eth0", "netns", h.NS)
			n.must("ip", "-n", n.hub, "link", "set", h.link, "master", fmt.Sprintf("br%d", idx))
			n.must("ip", "-n", h.NS, "addr", "add", h.Addr+"/24", "dev", "eth0")
		} else {
			wan++
			h.Addr = fmt.Sprintf("198.19.%d.2", wan)
			gw = fmt.Sprintf("198.19.%d.1", wan)
			h.link = "w-" + hs.Name
			n.must("ip", "-n", n.hub, "link", "add", h.link, "type", "veth", "peer", "name", "eth0", "netns", h.NS)
			n.must("ip", "-n", n.hub, "addr", "add", gw+"/24", "dev", h.link)
			n.must("ip", "-n", h.NS, "addr", "add", h.Addr+"/24", "dev", "eth0")
		}
		n.must("ip", "-n", n.hub, "link", "set", h.link, "up")
		n.must("ip", "-n", h.NS, "link", "set", "lo", "up")
		n.must("ip", "-n", h.NS, "link", "set", "eth0", "up")
		h.gw = gw
		n.must("ip", "-n", h.NS, "route", "add", "default", "via", gw)
	}

	// Init: hosts without peers first (central), so the others can name them.
	initOne := func(h *Host) {
		if err := os.MkdirAll(h.Dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if h.DataSize > 0 {
			n.must("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0700", h.DataSize), "tmpfs", h.Dir)
		}
		// Open, with the raw verbs the scenarios write and list with: a
		// test bench, never an exam network.
		args := []string{"--dir", h.Dir, "init", "--role", h.Role, "--listen", "/ip4/0.0.0.0/tcp/4001",
			fmt.Sprintf("--lan-discovery=%t", h.LAN != ""), "--insecure-open", "--debug"}
		if h.Org != "" {
			args = append(args, "--org", h.Org)
		}
		for _, p := range h.Peers {
			ph := n.hosts[p]
			if ph == nil || ph.PeerID == "" {
				t.Fatalf("host %s: peer %s is unknown or not initialised yet (list it earlier in the spec)", h.Name, p)
			}
			args = append(args, "--peer", fmt.Sprintf("/ip4/%s/tcp/4001/p2p/%s", ph.Addr, ph.PeerID))
		}
		out, err := run(60*time.Second, "ip", append([]string{"netns", "exec", h.NS, n.bin}, args...)...)
		if err != nil {
			t.Fatalf("init %s: %v", h.Name, err)
		}
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) == 3 && f[0] == "peer" && f[1] == "ID:" {
				h.PeerID = f[2]
			}
		}
		if h.PeerID == "" {
			t.Fatalf("init %s printed no peer ID:\n%s", h.Name, out)
		}
		if spec.RedialMax > 0 {
			cfg, err := node.LoadConfig(h.Dir)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Tuning.RedialMax = node.Duration(spec.RedialMax)
			b, _ := json.MarshalIndent(cfg, "", "  ")
			if err := os.WriteFile(filepath.Join(h.Dir, node.ConfigFile), append(b, '\n'), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	for pass := 0; pass < 2; pass++ {
		for _, name := range n.order {
			h := n.hosts[name]
			if (len(h.Peers) == 0) == (pass == 0) {
				initOne(h)
			}
		}
	}
	for _, name := range n.order {
		n.Start(name)
	}
	return n
}

// Host returns the named host.
func (n *Net) Host(name string) *Host {
	h := n.hosts[name]
	if h == nil {
		n.t.Fatalf("no host %q", name)
	}
	return h
}

// Start starts the host's daemon and waits (at most 60 s) until its API answers.
func (n *Net) Start(name string) {
	n.t.Helper()
	h := n.Host(name)
	h.mu.Lock()
	if h.cmd != nil {
		h.mu.Unlock()
		n.t.Fatalf("%s is already running", name)
	}
	logf, err := os.OpenFile(h.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		h.mu.Unlock()
		n.t.Fatal(err)
	}
	fmt.Fprintf(logf, "=== harness: start %s at %s\n", name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command("ip", "netns", "exec", h.NS, n.bin, "--dir", h.Dir, "run")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		h.mu.Unlock()
		logf.Close()
		n.t.Fatal(err)
	}
	done := make(chan struct{})
	h.cmd, h.done = cmd, done
	h.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	n.Eventually(60*time.Second, name+" API answers", func() (bool, string) {
		select {
		case <-done:
			n.t.Fatalf("%s exited at start; see its log", name)
		default:
		}
		_, err := n.Status(name)
		return err == nil, fmt.Sprint(err)
	})
}

// Kill sends sig to the host's daemon and waits (at most 30 s) for it to exit.
// (`ip netns exec` execs the daemon, so the signal reaches examnode itself.)
func (n *Net) Kill(name string, sig syscall.Signal) {
	n.t.Helper()
	h := n.Host(name)
	h.mu.Lock()
	cmd, done := h.cmd, h.done
	h.cmd = nil
	h.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		n.t.Errorf("%s did not exit within 30 s of %v; killed", name, sig)
	}
}

// Restart stops the host's daemon if it runs (SIGTERM), then starts it again.
func (n *Net) Restart(name string) {
	n.t.Helper()
	n.Kill(name, syscall.SIGTERM)
	n.Start(name)
}

// Running reports whether the host's daemon process is alive.
func (n *Net) Running(name string) bool {
	h := n.Host(name)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cmd == nil {
		return false
	}
	select {
	case <-h.done:
		return false
	default:
		return true
	}
}

// CutWAN takes the host's link to the hub down (both ends), as when a
// centre's internet line fails. Works for any host; for a VM it isolates
// that VM from its LAN too.
func (n *Net) CutWAN(name string) { n.setLink(name, "down") }

// HealWAN brings the host's link back up.
func (n *Net) HealWAN(name string) { n.setLink(name, "up") }

func (n *Net) setLink(name, state string) {
	n.t.Helper()
	h := n.Host(name)
	n.must("ip", "-n", n.hub, "link", "set", h.link, state)
	n.must("ip", "-n", h.NS, "link", "set", "eth0", state)
	if state == "up" {
		// Taking eth0 down removed the default route through it.
		n.must("ip", "-n", h.NS, "route", "replace", "default", "via", h.gw)
	}
}

// Degrade shapes both directions of the host's link with a token bucket
// filter: rate (e.g. "256kbit"), a queue of limitBytes, and packets that
// would wait longer than the bucket allows are dropped. So the link delays
// (queueing) and drops (tail drop) packets under load. netem is not needed.
func (n *Net) Degrade(name, rate string, limitBytes int) {
	n.t.Helper()
	h := n.Host(name)
	for _, dev := range [][2]string{{n.hub, h.link}, {h.NS, "eth0"}} {
		n.must("ip", "netns", "exec", dev[0], "tc", "qdisc", "replace", "dev", dev[1], "root", "tbf",
			"rate", rate, "burst", "3200", "limit", fmt.Sprint(limitBytes))
	}
}

// Restore removes the shaping Degrade added.
func (n *Net) Restore(name string) {
	n.t.Helper()
	h := n.Host(name)
	for _, dev := range [][2]string{{n.hub, h.link}, {h.NS, "eth0"}} {
		_, _ = run(30*time.Second, "ip", "netns", "exec", dev[0], "tc", "qdisc", "del", "dev", dev[1], "root")
	}
}

// Exec runs the examnode CLI inside the host's namespace against its data
// directory (`ip netns exec NS examnode --dir D args...`), bounded to 60 s.
// It returns stdout, stderr and the error (an *exec.ExitError on non-zero exit).
func (n *Net) Exec(name string, args ...string) (string, string, error) {
	h := n.Host(name)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.NS, n.bin, "--dir", h.Dir}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// Put writes one raw record through the CLI; nil means `put` exited 0, i.e.
// the node acknowledged the write as durable.
func (n *Net) Put(name, org, key, value string) error {
	_, stderr, err := n.Exec(name, "put", org, key, value)
	if err != nil {
		return fmt.Errorf("%s: put %s %s: %w: %s", name, org, key, err, strings.TrimSpace(stderr))
	}
	return nil
}

// Records lists every record of org on the host (`ls ORG / --values --json`).
func (n *Net) Records(name, org string) (map[string]string, error) {
	stdout, stderr, err := n.Exec(name, "ls", org, "/", "--values", "--json", "--limit", "100000")
	if err != nil {
		return nil, fmt.Errorf("%s: ls %s: %w: %s", name, org, err, strings.TrimSpace(stderr))
	}
	var es []node.Entry
	if err := json.Unmarshal([]byte(stdout), &es); err != nil {
		return nil, fmt.Errorf("%s: ls %s: %w", name, org, err)
	}
	m := make(map[string]string, len(es))
	for _, e := range es {
		m[e.Key] = e.Value
	}
	return m, nil
}

// Status reads the host's `status --json`.
func (n *Net) Status(name string) (node.Status, error) {
	var st node.Status
	stdout, stderr, err := n.Exec(name, "status", "--json")
	if err != nil {
		return st, fmt.Errorf("%s: status: %w: %s", name, err, strings.TrimSpace(stderr))
	}
	return st, json.Unmarshal([]byte(stdout), &st)
}

// Peers reads the host's `peers --json`.
func (n *Net) Peers(name string) ([]map[string]any, error) {
	stdout, stderr, err := n.Exec(name, "peers", "--json")
	if err != nil {
		return nil, fmt.Errorf("%s: peers: %w: %s", name, err, strings.TrimSpace(stderr))
	}
	var ps []map[string]any
	return ps, json.Unmarshal([]byte(stdout), &ps)
}

// Eventually polls cond every 250 ms until it holds or timeout passes; then
// the test fails with cond's last explanation.
func (n *Net) Eventually(timeout time.Duration, what string, cond func() (bool, string)) time.Duration {
	n.t.Helper()
	start := time.Now()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	last := ""
	for {
		ok, why := cond()
		if ok {
			return time.Since(start)
		}
		last = why
		select {
		case <-deadline.C:
			n.t.Fatalf("after %s: %s: still not true: %s", timeout, what, last)
		case <-tick.C:
		}
	}
}

// HasAll reports whether the host holds every record of want with the same
// value, and says how many are missing.
func (n *Net) HasAll(name, org string, want map[string]string) (bool, string) {
	got, err := n.Records(name, org)
	if err != nil {
		return false, err.Error()
	}
	missing, wrong := 0, 0
	var example string
	for k, v := range want {
		g, ok := got[k]
		switch {
		case !ok:
			missing++
			example = k
		case g != v:
			wrong++
			example = k
		}
	}
	if missing+wrong == 0 {
		return true, ""
	}
	return false, fmt.Sprintf("%s holds %d records; %d of %d missing, %d with another value (e.g. %s)", name, len(got), missing, len(want), wrong, example)
}

func (n *Net) teardown() {
	for _, name := range n.order {
		n.Kill(name, syscall.SIGKILL)
	}
	if n.t.Failed() {
		for _, name := range n.order {
			n.printLog(name, 150)
		}
	}
	for _, name := range n.order {
		h := n.hosts[name]
		if h.DataSize > 0 {
			_, _ = run(30*time.Second, "umount", "-l", h.Dir)
		}
		_, _ = run(30*time.Second, "ip", "netns", "del", h.NS)
	}
	_, _ = run(30*time.Second, "ip", "netns", "del", n.hub)
}

// printLog prints a crash's header and stack, if the daemon crashed, and
// the last tail lines of a host's daemon log.
func (n *Net) printLog(name string, tail int) {
	f, err := os.Open(n.hosts[name].Log)
	if err != nil {
		return
	}
	defer f.Close()
	var lines, crash []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		// A crash's header and first stack (panic, fatal error, SIGBUS)
		// would scroll out of the tail.
		if len(crash) == 0 && (strings.HasPrefix(line, "panic:") || strings.HasPrefix(line, "fatal error:") || strings.HasPrefix(line, "unexpected fault")) {
			crash = append(crash, line)
		} else if len(crash) > 0 && len(crash) < 40 {
			crash = append(crash, line)
		}
		lines = append(lines, line)
		if len(lines) > 2*tail+1 {
			lines = lines[len(lines)-tail:]
		}
	}
	if len(lines) > tail {
		lines = lines[len(lines)-tail:]
	}
	if len(crash) > 0 {
		n.t.Logf("---- %s crashed ----\n%s", name, strings.Join(crash, "\n"))
	}
	if tail == 0 {
		return
	}
	n.t.Logf("---- %s daemon log (last %d lines) ----\n%s", name, len(lines), strings.Join(lines, "\n"))
}

// examnodeBin is the examnode binary TestMain builds; skipReason, when not
// empty, says why namespaces cannot be made here.
var (
	examnodeBin string
	skipReason  string
)

func requireNetns(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip("network-namespace scenarios skipped: " + skipReason)
	}
}

// probeNetns finds out whether this machine can make network namespaces.
func probeNetns() string {
	if os.Geteuid() != 0 {
		return "they need root (CI runs them as root)"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return "iproute2's `ip` is not installed"
	}
	ns := fmt.Sprintf("en%d-probe", os.Getpid())
	if _, err := run(30*time.Second, "ip", "netns", "add", ns); err != nil {
		return "cannot create a network namespace: " + err.Error()
	}
	_, _ = run(30*time.Second, "ip", "netns", "del", ns)
	return ""
}

// buildExamnode builds the CLI (without -race) into dir.
func buildExamnode(dir string) (string, error) {
	bin := filepath.Join(dir, "examnode")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/examnode/examnode/cmd/examnode")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", errors.New("go build ./cmd/examnode: " + err.Error() + ": " + string(out))
	}
	return bin, nil
}

// setLinkQuiet is setLink for use off the test goroutine: errors are
// logged, never fatal.
func (n *Net) setLinkQuiet(name, state string) {
	h := n.Host(name)
	cmds := [][]string{{"-n", n.hub, "link", "set", h.link, state}, {"-n", h.NS, "link", "set", "eth0", state}}
	if state == "up" {
		cmds = append(cmds, []string{"-n", h.NS, "route", "replace", "default", "via", h.gw})
	}
	for _, c := range cmds {
		if _, err := run(30*time.Second, "ip", c...); err != nil {
			n.t.Log(err)
		}
	}
}
