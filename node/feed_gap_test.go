package node

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/examnode/examnode/crdt"
)

// A feed whose sequence counter points far past its entries (a damaged
// counter, or gaps from unclean stops) answers each read after a bounded
// scan, moving the cursor on, and still finds an entry beyond the gap.
func TestFeedReadSkipsGapsBoundedly(t *testing.T) {
	store, err := crdt.OpenStore("", crdt.StoreOptions{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	fd, err := openFeed(context.Background(), store, time.Now, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer fd.close()
	ctx := context.Background()
	const org = "gappy"
	far := uint64(1) << 62
	beyond := uint64(3*feedGapBudget + 7)
	d := store.Datastore()
	if err := d.Put(ctx, feedSeqPrefix.ChildString(org), []byte("4611686018427387904")); err != nil {
		t.Fatal(err)
	}
	entry, _ := json.Marshal(Change{Seq: beyond, Key: "/results/e1", Kind: "results", ID: "e1", Op: OpPut, At: time.Unix(1e9, 0).UTC()})
	if err := d.Put(ctx, feedKey(org, beyond), entry); err != nil {
		t.Fatal(err)
	}
	if err := fd.register(org); err != nil {
		t.Fatal(err)
	}
	since, reads := uint64(0), 0
	var got []Change
	for len(got) == 0 && reads < 10 {
		changes, next, _, err := fd.read(ctx, org, since, 10)
		if err != nil {
			t.Fatal(err)
		}
		if next <= since || next-since > 10+feedGapBudget || next > far {
			t.Fatalf("read from %d moved the cursor to %d; want a step of 1 to %d", since, next, 10+feedGapBudget)
		}
		got, since = changes, next
		reads++
	}
	if len(got) != 1 || got[0].Seq != beyond {
		t.Fatalf("after %d reads: %+v, want the entry at %d", reads, got, beyond)
	}
}
