package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/examnode/examnode/internal/cluster"
	"github.com/examnode/examnode/node"
	"github.com/examnode/examnode/schema"
)

func client(n *node.Node) *node.Client {
	return &node.Client{Addr: n.APIAddr(), Token: n.Token()}
}

// waitForChange follows n's change feed of org from the beginning until a
// change of key appears.
func waitForChange(t *testing.T, n *node.Node, key string) node.Change {
	t.Helper()
	ctx := context.Background()
	cl, since := client(n), "0"
	var found node.Change
	err := cluster.WaitFor(ctx, 30*time.Second, func() (bool, error) {
		page, err := cl.Changes(ctx, org, since, 0, time.Second)
		if err != nil {
			return false, err
		}
		since = page.Next
		for _, c := range page.Changes {
			if c.Key == key {
				found = c
				return true, nil
			}
		}
		return false, fmt.Errorf("%s not in the feed yet (cursor %s)", key, since)
	})
	if err != nil {
		t.Fatalf("change feed of %s: %v", n.ID(), err)
	}
	return found
}

func TestRecordsFlowThroughChangeFeeds(t *testing.T) {
	c := makeN(t, 2, testTuning())
	central, vm := c.Node(0), c.Node(1)
	ctx := context.Background()

	// Central writes a delivery and an eligibility: the VM's feed shows them.
	delivery := `{"label":"Maths 2026","opens":"2026-06-01T08:00:00Z","closes":"2026-06-01T18:00:00Z",` +
		`"package":{"cid":"bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi","sha256":"` +
		"abababababababababababababababababababababababababababababababab" + `","size":1024,"media_type":"application/zip"},"max_attempts":1}`
	if _, err := client(central).PutRecord(ctx, org, "deliveries", "d1", []byte(delivery)); err != nil {
		t.Fatal(err)
	}
	if _, err := client(central).PutRecord(ctx, org, "eligibilities", "el1",
		[]byte(`{"test_center":"c1","delivery":"d1","test_takers":["tt1"],"by_proctor":false}`)); err != nil {
		t.Fatal(err)
	}
	if ch := waitForChange(t, vm, "/deliveries/d1"); ch.Kind != "deliveries" || ch.ID != "d1" || ch.Op != node.OpPut {
		t.Fatalf("VM feed: %+v", ch)
	}
	waitForChange(t, vm, "/eligibilities/el1")

	// The VM runs the exam and writes its result: central's feed shows it.
	exec := fmt.Sprintf(`{"delivery":"d1","test_taker":"tt1","state":"finished","started":"2026-06-01T08:00:00Z",`+
		`"finished":"2026-06-01T09:30:00Z","vm":"%s","version":1}`, vm.ID())
	if _, err := client(vm).PutRecord(ctx, org, "executions", "e1", []byte(exec)); err != nil {
		t.Fatal(err)
	}
	res, err := client(vm).PutRecord(ctx, org, "results", "e1", []byte(`{"execution":"e1","finished":"2026-06-01T09:30:00Z",`+
		`"variables":{"SCORE":{"base_type":"float","cardinality":"single","value":7.5}}}`))
	if err != nil || !res.Durable {
		t.Fatalf("result: %+v %v", res, err)
	}
	if ch := waitForChange(t, central, "/results/e1"); ch.Kind != string(schema.KindResults) || ch.Op != node.OpPut {
		t.Fatalf("central feed: %+v", ch)
	}
	rec, err := client(central).GetRecord(ctx, org, "results", "e1")
	if err != nil || rec.Org != org || rec.Kind != schema.KindResults {
		t.Fatalf("result on central: %+v %v", rec, err)
	}
}
