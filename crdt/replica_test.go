package crdt

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/boxo/blockservice"
	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/go-datastore/query"
	ipld "github.com/ipfs/go-ipld-format"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreAnyFunction("github.com/ipfs/go-log/v2/writer.(*MirrorWriter).logRoutine"),
	)
}

func openStore(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := OpenStore(dir, StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func offlineDAG(s *Store) ipld.DAGService {
	return merkledag.NewDAGService(blockservice.New(s.Blockstore(), nil))
}

func newReplica(t *testing.T, s *Store, dag ipld.DAGService, bc Broadcaster, org string) *Replica {
	t.Helper()
	r, err := NewReplica(DefaultOptions(org), Deps{Store: s, DAG: dag, Broadcaster: bc})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestGroupCommitGathersConcurrentWrites(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	r := newReplica(t, s, offlineDAG(s), nil, "c1")
	defer r.Close()
	const n = 400
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- r.Put(context.Background(), fmt.Sprintf("/k/%03d", i), []byte("v"))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	st := r.Stats(context.Background())
	if st.Written != n {
		t.Fatalf("written = %d, want %d", st.Written, n)
	}
	if st.Groups >= n {
		t.Fatalf("%d groups for %d concurrent writes: writes were not gathered", st.Groups, n)
	}
	// One delta per group: the DAG is as high as the number of groups.
	if st.MaxHeight != st.Groups {
		t.Fatalf("max height %d != groups %d: not one delta per group", st.MaxHeight, st.Groups)
	}
	if c, _ := r.Count(context.Background(), "/"); c != n {
		t.Fatalf("count = %d, want %d", c, n)
	}
	t.Logf("%d concurrent writes in %d groups", n, st.Groups)
}

func TestAcknowledgedWritesSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	r := newReplica(t, s, offlineDAG(s), nil, "c1")
	ctx := context.Background()
	for i := range 50 {
		if err := r.Put(ctx, fmt.Sprintf("/results/r%02d", i), []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Delete(ctx, "/results/r07"); err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(r.Close(), s.Close()); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir)
	defer s.Close()
	r = newReplica(t, s, offlineDAG(s), nil, "c1")
	defer r.Close()
	for i := range 50 {
		v, err := r.Get(ctx, fmt.Sprintf("/results/r%02d", i))
		if i == 7 {
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("deleted record: err = %v, want ErrNotFound", err)
			}
			continue
		}
		if err != nil || string(v) != fmt.Sprint(i) {
			t.Fatalf("r%02d after reopen = %q, %v", i, v, err)
		}
	}
}

func TestOrganisationsAreSeparateInOneStore(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	dag := offlineDAG(s)
	a := newReplica(t, s, dag, nil, "org-a")
	defer a.Close()
	b := newReplica(t, s, dag, nil, "org-b")
	defer b.Close()
	ctx := context.Background()
	if err := a.Put(ctx, "/x", []byte("a")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, "/x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("org-b sees org-a's record: %v", err)
	}
}

func TestCloseIsSafeTwiceAndRefusesWrites(t *testing.T) {
	s := openStore(t, t.TempDir())
	r := newReplica(t, s, offlineDAG(s), nil, "c1")
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Put(context.Background(), "/a", nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("put after close: %v, want ErrClosed", err)
	}
	if err := errors.Join(s.Close(), s.Close()); err != nil {
		t.Fatal(err)
	}
}

func TestStoreRefusesSecondOpener(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	defer s.Close()
	if _, err := OpenStore(dir, StoreOptions{}); !errors.Is(err, ErrStoreInUse) {
		t.Fatalf("second open: %v, want ErrStoreInUse", err)
	}
}

func TestValidateKeyAndOrg(t *testing.T) {
	for _, tc := range []struct {
		key string
		ok  bool
	}{
		{"/results/e1", true}, {"/a", true}, {"/a.b_c-d/E9", true},
		{"", false}, {"/", false}, {"results", false}, {"/a/", false}, {"//a", false},
		{"/a/../b", false}, {"/a/./b", false}, {"/a b", false}, {"/é", false},
	} {
		if err := ValidateKey(tc.key); (err == nil) != tc.ok {
			t.Errorf("ValidateKey(%q) = %v, want ok=%v", tc.key, err, tc.ok)
		} else if err != nil && !errors.Is(err, ErrBadKey) {
			t.Errorf("ValidateKey(%q) error %v is not ErrBadKey", tc.key, err)
		}
	}
	for _, tc := range []struct {
		org string
		ok  bool
	}{
		{"C1", true}, {"centre-1.fr_2", true},
		{"", false}, {".", false}, {"..", false}, {"a/b", false}, {string(make([]byte, 65)), false},
	} {
		if err := ValidateOrg(tc.org); (err == nil) != tc.ok {
			t.Errorf("ValidateOrg(%q) = %v, want ok=%v", tc.org, err, tc.ok)
		}
	}
}

// chanBroadcaster connects replicas through channels: the seam that mesh
// fills with gossipsub.
type chanBroadcaster struct {
	in    chan []byte
	peers []*chanBroadcaster
	done  chan struct{}
	once  sync.Once
}

func newChanBroadcaster() *chanBroadcaster {
	return &chanBroadcaster{in: make(chan []byte, 1024), done: make(chan struct{})}
}

func (c *chanBroadcaster) Broadcast(_ context.Context, b []byte) error {
	for _, p := range c.peers {
		select {
		case p.in <- b:
		default:
		}
	}
	return nil
}

func (c *chanBroadcaster) Next(ctx context.Context) ([]byte, error) {
	select {
	case b := <-c.in:
		return b, nil
	case <-c.done:
		return nil, ErrNoMoreBroadcast
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *chanBroadcaster) stop() { c.once.Do(func() { close(c.done) }) }

func TestReplicasConvergeThroughABroadcaster(t *testing.T) {
	// Two nodes' stores; blocks travel through a shared DAG service, heads
	// through the channel broadcaster.
	sa, sb := openStore(t, t.TempDir()), openStore(t, t.TempDir())
	defer sa.Close()
	defer sb.Close()
	dag := offlineDAG(sa)
	ba, bb := newChanBroadcaster(), newChanBroadcaster()
	ba.peers, bb.peers = []*chanBroadcaster{bb}, []*chanBroadcaster{ba}
	a := newReplica(t, sa, dag, ba, "c1")
	b := newReplica(t, sb, dag, bb, "c1")
	defer func() {
		ba.stop()
		bb.stop()
		_ = errors.Join(a.Close(), b.Close())
	}()
	ctx := context.Background()
	for i := range 20 {
		if err := a.Put(ctx, fmt.Sprintf("/a/%02d", i), []byte("x")); err != nil {
			t.Fatal(err)
		}
		if err := b.Put(ctx, fmt.Sprintf("/b/%02d", i), []byte("y")); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		ca, _ := a.Count(ctx, "/")
		cb, _ := b.Count(ctx, "/")
		if ca == 40 && cb == 40 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not converged: a holds %d, b holds %d of 40", ca, cb)
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
		}
	}
}

func TestCountMatchesQuery(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	r := newReplica(t, s, offlineDAG(s), nil, "c1")
	defer r.Close()
	ctx := context.Background()
	for i := range 40 {
		if err := r.Put(ctx, fmt.Sprintf("/a/%02d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
		if err := r.Put(ctx, fmt.Sprintf("/ab/%02d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	// Overwrites, deletes, and a delete of a missing key.
	for i := range 10 {
		_ = r.Put(ctx, fmt.Sprintf("/a/%02d", i), []byte("w"))
		_ = r.Delete(ctx, fmt.Sprintf("/ab/%02d", i))
	}
	_ = r.Delete(ctx, "/never/written")
	for _, prefix := range []string{"/", "", "/a", "/ab", "/missing"} {
		fast, err1 := r.Count(ctx, prefix)
		slow, err2 := r.countByQuery(ctx, prefix)
		if err := errors.Join(err1, err2); err != nil {
			t.Fatal(err)
		}
		if fast != slow {
			t.Fatalf("Count(%q) = %d, go-ds-crdt's query counts %d: the store layout changed", prefix, fast, slow)
		}
	}
	if n, _ := r.Count(ctx, "/"); n != 70 {
		t.Fatalf("count = %d, want 70", n)
	}
}

// countByQuery counts through go-ds-crdt's own query (reads values).
func (r *Replica) countByQuery(ctx context.Context, prefix string) (int, error) {
	res, err := r.crdt.Query(ctx, query.Query{Prefix: prefix, KeysOnly: true})
	if err != nil {
		return 0, err
	}
	defer res.Close()
	n := 0
	for e := range res.Next() {
		if e.Error != nil {
			return n, e.Error
		}
		n++
	}
	return n, nil
}
