package integration

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/examnode/examnode/internal/cluster"
	"github.com/examnode/examnode/node"
	"github.com/examnode/examnode/policy"
	"github.com/examnode/examnode/schema"
)

// TestSessionResumesOnAnotherVM: a test-taker's session runs on VM 1,
// which writes the execution and its logs, then VM 1 stops; the proctor
// resumes the session on VM 2. VM 2 refuses while VM 1 is connected (the
// session is alive there), then opens the execution's next version naming
// itself, with every log written so far; the session continues and
// finishes there, and central ends with the whole chain.
func TestSessionResumesOnAnotherVM(t *testing.T) { resumeOnAnotherVM(t, testTuning()) }

// TestSessionResumesOnAnotherVMGated: the same on a gated mesh, where the
// new version is checked by policy and signed like any other write, and
// the logs so far are read through the verified view.
func TestSessionResumesOnAnotherVMGated(t *testing.T) {
	auth, err := policy.GenerateAuthority()
	if err != nil {
		t.Fatal(err)
	}
	opts := testTuning()
	opts.Authority = auth
	resumeOnAnotherVM(t, opts)
}

func resumeOnAnotherVM(t *testing.T, opts cluster.Options) {
	c := makeN(t, 3, opts)
	ctx := context.Background()
	central, vm1, vm2 := c.Node(0), c.Node(1), c.Node(2)
	if _, err := client(central).PutRecord(ctx, org, "eligibilities", "el1",
		[]byte(`{"test_center":"c1","delivery":"d1","test_takers":["tt1"],"by_proctor":false}`)); err != nil {
		t.Fatal(err)
	}
	waitForChange(t, vm1, "/eligibilities/el1")
	waitForChange(t, vm2, "/eligibilities/el1")

	exec := fmt.Sprintf(`{"delivery":"d1","test_taker":"tt1","state":"active","started":"2026-06-01T08:00:00Z","vm":"%s","version":1}`, vm1.ID())
	if _, err := client(vm1).PutRecord(ctx, org, "executions", "e1", []byte(exec)); err != nil {
		t.Fatal(err)
	}
	const logs = 6
	for s := range logs {
		body := fmt.Sprintf(`{"execution":"e1","seq":%d,"at":"2026-06-01T08:%02d:00Z","event":"response","data":{"item":"i%d","answer":"B"}}`, s, s+1, s)
		if _, err := client(vm1).PutRecord(ctx, org, "result-logs", schema.LogID("e1", uint64(s)), []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	// The writer can tell when its session is held by the others.
	last := "/result-logs/" + schema.LogID("e1", logs-1)
	if err := cluster.WaitFor(ctx, 10*time.Second, func() (bool, error) {
		h, err := vm1.HeldBy(ctx, org, last)
		return err == nil && h.HeldBy == 2, nil
	}); err != nil {
		t.Fatalf("the last log is not held by the other two nodes: %v", err)
	}

	// VM 1 is alive: resuming elsewhere is refused.
	if _, err := client(vm2).Resume(ctx, org, "e1", false); !isCode(err, "still_running") {
		t.Fatalf("resume while VM 1 is connected: %v, want still_running", err)
	}

	if err := c.Stop(1); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	var res node.Resumed
	if err := cluster.WaitFor(ctx, 15*time.Second, func() (bool, error) {
		var err error
		res, err = client(vm2).Resume(ctx, org, "e1", false)
		if isCode(err, "still_running") {
			return false, nil // VM 2 has not noticed the disconnection yet
		}
		return err == nil, err
	}); err != nil {
		t.Fatal(err)
	}
	took := time.Since(stopped)
	b, err := res.Execution.DecodeBody()
	if err != nil {
		t.Fatal(err)
	}
	e := b.(schema.Execution)
	if res.Execution.ID != "e1.v2" || e.Version != 2 || e.Previous != "e1" || e.VM != vm2.ID().String() || e.State != schema.ExecutionActive ||
		e.TestTaker != "tt1" || e.Delivery != "d1" {
		t.Fatalf("resumed execution: %s %+v", res.Execution.ID, e)
	}
	if res.ResumedFrom != "e1" || res.PreviousVM != vm1.ID().String() || res.PreviousState != "active" || res.PreviousVMAlive {
		t.Fatalf("resumed from: %+v", res)
	}
	if len(res.Logs) != logs {
		t.Fatalf("%d logs so far on VM 2, want %d", len(res.Logs), logs)
	}
	for i, l := range res.Logs {
		if l.ID != schema.LogID("e1", uint64(i)) {
			t.Fatalf("log %d is %s", i, l.ID)
		}
	}
	// A retry answers the same version.
	again, err := client(vm2).Resume(ctx, org, "e1", false)
	if err != nil || !again.AlreadyHere || again.Execution.ID != "e1.v2" || len(again.Logs) != logs {
		t.Fatalf("resume retried: %+v %v", again, err)
	}

	// The session continues and finishes on VM 2.
	if _, err := client(vm2).PutRecord(ctx, org, "result-logs", schema.LogID("e1.v2", 0),
		[]byte(`{"execution":"e1.v2","seq":0,"at":"2026-06-01T08:30:00Z","event":"response","data":{"item":"i6"}}`)); err != nil {
		t.Fatal(err)
	}
	fin := fmt.Sprintf(`{"delivery":"d1","test_taker":"tt1","state":"finished","started":%q,"finished":"2099-01-01T00:00:00Z","vm":"%s","version":2,"previous":"e1"}`,
		e.Started.Format(time.RFC3339Nano), vm2.ID())
	if _, err := client(vm2).PutRecord(ctx, org, "executions", "e1.v2", []byte(fin)); err != nil {
		t.Fatal(err)
	}
	if _, err := client(vm2).PutRecord(ctx, org, "results", "e1.v2", []byte(`{"execution":"e1.v2","finished":"2099-01-01T00:00:00Z",`+
		`"variables":{"SCORE":{"base_type":"float","cardinality":"single","value":9}}}`)); err != nil {
		t.Fatal(err)
	}
	waitForChange(t, central, "/results/e1.v2")
	rep, err := central.Replica(org)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"/executions/e1", "/executions/e1.v2", last, "/result-logs/" + schema.LogID("e1.v2", 0)} {
		if ok, err := rep.Has(ctx, k); err != nil || !ok {
			t.Fatalf("central lacks %s: %v", k, err)
		}
	}
	t.Logf("MEASURED session failover: VM 1 stopped; the session resumed on VM 2 %s later as e1.v2 with %d of %d logs so far; records lost 0",
		took.Round(time.Millisecond), len(res.Logs), logs)
}

func isCode(err error, code string) bool {
	var ae *node.APIError
	return errors.As(err, &ae) && ae.Code == code
}
