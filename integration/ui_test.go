package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/examnode/examnode/internal/cluster"
	"github.com/examnode/examnode/node"
	"github.com/examnode/examnode/schema"
)

// TestStatusPageInChromium loads vm1's status page in headless Chromium
// while vm1 is cut off from vm2 and has written a record since, and checks
// that the graph shows central and the archive (drawn above) in sync and vm2
// (a VM of the centre, below) disconnected and one delta behind, the
// organisation's lag and its bundle counts; then, central and the archive
// cut off too, that the verdict reads "isolated from central". The
// screenshots status-page.png and status-page-isolated.png
// go to $EXAMNODE_UI_ARTIFACTS if set (.ci/run sets .ci/artifacts), else
// to the test's artifact directory (kept with go test -artifacts
// -outputdir DIR).
func TestStatusPageInChromium(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed (apt-get install chromium; .ci/run installs it): the status page is not checked in a browser")
	}
	c := makeN(t, 3, testTuning())
	ctx := context.Background()
	if _, err := c.Add(ctx, cluster.Spec{Name: "archive", Role: schema.RoleArchive, Orgs: []string{org}}); err != nil {
		t.Fatal(err)
	}
	central, vm1, vm2, archive := c.Node(0), c.Node(1), c.Node(2), c.Node(3)
	waitState(t, vm1, archive.ID().String(), node.StateInSync)
	if _, err := apiClient(vm1).Put(ctx, org, "/results/r1", []byte("v")); err != nil {
		t.Fatal(err)
	}
	waitState(t, vm1, vm2.ID().String(), node.StateInSync)
	c.Cluster.Partition(1, 2)
	waitState(t, vm1, vm2.ID().String(), node.StateDisconnected)
	if _, err := apiClient(vm1).Put(ctx, org, "/results/r2", []byte("v")); err != nil {
		t.Fatal(err)
	}
	waitState(t, vm1, central.ID().String(), node.StateInSync)

	artifacts := os.Getenv("EXAMNODE_UI_ARTIFACTS")
	if artifacts == "" {
		artifacts = t.ArtifactDir()
	} else if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	url := "http://" + vm1.APIAddr() + "/ui?token=" + vm1.Token()
	browser := func(extra ...string) ([]byte, error) {
		ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
			"--disable-component-update", "--disable-sync", "--no-first-run", "--user-data-dir=" + t.TempDir(),
			"--virtual-time-budget=5000"}, extra...)
		cmd := exec.CommandContext(ctx, chromium, append(args, url)...)
		out, err := cmd.Output()
		if err != nil {
			var stderr []byte
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = ee.Stderr
			}
			return nil, fmt.Errorf("chromium: %v: %s", err, stderr)
		}
		return out, nil
	}
	// peerState is the state, role, delta lag and height of peer id's node in the graph.
	peerState := func(dom []byte, id string) string {
		re := regexp.MustCompile(`<g class="peer [^"]*" data-peer="` + regexp.QuoteMeta(id) + `" data-state="([^"]+)" data-role="([^"]+)" data-behind="(\d+)"[^>]*>(?:<title>[^<]*</title>)?<circle cx="[^"]+" cy="([^"]+)"`)
		if m := re.FindSubmatch(dom); m != nil {
			return fmt.Sprintf("%s %s behind=%s y=%s", m[1], m[2], m[3], m[4])
		}
		return ""
	}
	var dom []byte
	err = cluster.WaitFor(ctx, 2*time.Minute, func() (bool, error) {
		var err error
		if dom, err = browser("--dump-dom"); err != nil {
			return false, err
		}
		if !regexp.MustCompile(`<body data-loaded="1"`).Match(dom) {
			return false, fmt.Errorf("page did not load its data")
		}
		if s := peerState(dom, central.ID().String()); s != "in sync central behind=0 y=60" {
			return false, fmt.Errorf("central drawn %q", s)
		}
		if s := peerState(dom, vm2.ID().String()); s != "disconnected vm behind=1 y=370" {
			return false, fmt.Errorf("vm2 drawn %q", s)
		}
		if s := peerState(dom, archive.ID().String()); s != "in sync archive behind=0 y=60" {
			return false, fmt.Errorf("archive drawn %q", s)
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("status page: %v\n%s", err, dom)
	}
	for _, want := range []string{`data-peer="` + vm1.ID().String() + `"`, `data-verdict="in sync"`, `data-org="` + org + `" data-lag="1" data-queued="0"`, `data-bundle-org="` + org + `" data-pending="0"`, `data-event="disconnected"`, `test centre ` + org} {
		if !regexp.MustCompile(regexp.QuoteMeta(want)).Match(dom) {
			t.Errorf("page lacks %s", want)
		}
	}
	if regexp.MustCompile(`token=`).Match(dom) {
		t.Error("the page shows the token")
	}
	screenshot := func(name string) {
		shot := filepath.Join(artifacts, name)
		if _, err := browser("--window-size=1200,1400", "--screenshot="+shot); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(shot); err != nil || fi.Size() == 0 {
			t.Fatalf("screenshot: %v", err)
		}
		t.Logf("screenshot: %s", shot)
	}
	screenshot("status-page.png")

	// Central and the archive cut off as well: the verdict says so.
	c.Cluster.Partition(0, 1)
	c.Cluster.Partition(3, 1)
	err = cluster.WaitFor(ctx, 2*time.Minute, func() (bool, error) {
		var err error
		if dom, err = browser("--dump-dom"); err != nil {
			return false, err
		}
		if !regexp.MustCompile(`data-verdict="isolated from central"`).Match(dom) {
			return false, fmt.Errorf("verdict not isolated from central")
		}
		if s := peerState(dom, central.ID().String()); !strings.HasPrefix(s, "disconnected central") {
			return false, fmt.Errorf("central drawn %q", s)
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("status page with central cut off: %v\n%s", err, dom)
	}
	screenshot("status-page-isolated.png")
}
