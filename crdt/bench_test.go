package crdt

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"

	"github.com/examnode/examnode/policy"
	"github.com/examnode/examnode/schema"
)

// BenchmarkDurablePut32 measures durably acknowledged single-record writes
// from 32 concurrent writers on one replica (group commit + one fsync per
// group), on a real badger store on disk.
func BenchmarkDurablePut32(b *testing.B) { benchDurablePut32(b, StoreOptions{}) }

// BenchmarkDurablePut32Encrypted is BenchmarkDurablePut32 on a store
// encrypted at rest (AES-256): the cost of encryption on durable writes.
func BenchmarkDurablePut32Encrypted(b *testing.B) {
	benchDurablePut32(b, StoreOptions{EncryptionKey: bytes.Repeat([]byte{7}, 32)})
}

func benchDurablePut32(b *testing.B, opts StoreOptions) {
	s, err := OpenStore(b.TempDir(), opts)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	// As a node writes: through the organisation's blockstore, which
	// indexes every block in the same batch (blockindex.go).
	r, err := NewReplica(DefaultOptions("bench"), Deps{Store: s, DAG: orgDAG(s, "bench")})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	val := make([]byte, 1024)
	var next atomic.Int64
	b.ResetTimer()
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				if err := r.Put(context.Background(), fmt.Sprintf("/k/%09d", i), val); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	st := r.Stats(context.Background())
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(st.Written)/float64(max(st.Groups, 1)), "records/group")
}

// BenchmarkSignedVerifiedPut32 is BenchmarkDurablePut32 on a gated
// replica: each writer signs its record (policy.Sign, as a gated node's
// API does) and a write is acknowledged once durable and decided by the
// verified view (signature, membership, MayWrite).
func BenchmarkSignedVerifiedPut32(b *testing.B) { benchSignedVerifiedPut32(b, false) }

// BenchmarkSignedCheckedVerifiedPut32 is BenchmarkSignedVerifiedPut32
// with the sender's check (Replica.Check, the receivers' rules on the
// value about to be sent) before each Put, as a gated node writes.
func BenchmarkSignedCheckedVerifiedPut32(b *testing.B) { benchSignedVerifiedPut32(b, true) }

func benchSignedVerifiedPut32(b *testing.B, check bool) {
	w := newTrustWorld(b)
	s, err := OpenStore(b.TempDir(), StoreOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	opts := DefaultOptions(testOrg)
	opts.Verify = &VerifyOptions{Trust: w.Trust, Now: func() time.Time { return tw0.Add(time.Hour) }}
	r, err := NewReplica(opts, Deps{Store: s, DAG: orgDAG(s, testOrg)})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()
	if err := r.Put(ctx, MembershipKey(w.Central.M.Serial), w.Central.M.Encode()); err != nil {
		b.Fatal(err)
	}
	base := delivery(b, "Maths")
	var next atomic.Int64
	b.ResetTimer()
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				rec := base
				rec.ID = fmt.Sprintf("d%09d", i)
				enc, err := schema.Encode(rec)
				if err != nil {
					b.Error(err)
					return
				}
				sr, err := policy.Sign(w.Central.Priv, w.Central.M, enc, uint64(i), tw0)
				if err != nil {
					b.Error(err)
					return
				}
				v := policy.EncodeSigned(sr)
				if check {
					if err := r.Check(ctx, rec.Key(), v); err != nil {
						b.Error(err)
						return
					}
				}
				if err := r.Put(ctx, rec.Key(), v); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	if n, _ := r.Count(ctx, "/deliveries"); n != b.N {
		b.Fatalf("%d records, want %d", n, b.N)
	}
	if st := r.Stats(ctx); len(st.RecordsRefused) != 0 || st.RecordsParked != 0 {
		b.Fatalf("refused %v, parked %d", st.RecordsRefused, st.RecordsParked)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkViewRebuild measures verification alone, as on arrival: n
// signed records are stored, the view is dropped, and the time is that of
// a reopen deciding every record again (decode, verify the signature,
// policy, index).
func BenchmarkViewRebuild(b *testing.B) {
	const n = 5000
	w := newTrustWorld(b)
	s, err := OpenStore(b.TempDir(), StoreOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	opts := DefaultOptions(testOrg)
	opts.Verify = &VerifyOptions{Trust: w.Trust, Now: func() time.Time { return tw0.Add(time.Hour) }}
	r, err := NewReplica(opts, Deps{Store: s, DAG: offlineDAG(s)})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	ops := []Op{{Key: MembershipKey(w.Central.M.Serial), Value: w.Central.M.Encode()}}
	base := delivery(b, "Maths")
	for i := range n {
		rec := base
		rec.ID = fmt.Sprintf("d%09d", i)
		enc, _ := schema.Encode(rec)
		sr, err := policy.Sign(w.Central.Priv, w.Central.M, enc, uint64(i+1), tw0)
		if err != nil {
			b.Fatal(err)
		}
		ops = append(ops, Op{Key: rec.Key(), Value: policy.EncodeSigned(sr)})
		if len(ops) == 500 {
			if err := r.Apply(ctx, ops); err != nil {
				b.Fatal(err)
			}
			ops = nil
		}
	}
	if err := r.Apply(ctx, ops); err != nil {
		b.Fatal(err)
	}
	if err := r.Close(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		res, err := s.Datastore().Query(ctx, query.Query{Prefix: "/view", KeysOnly: true})
		if err != nil {
			b.Fatal(err)
		}
		all, _ := res.Rest()
		for _, e := range all {
			_ = s.Datastore().Delete(ctx, ds.RawKey(e.Key))
		}
		b.StartTimer()
		r, err := NewReplica(opts, Deps{Store: s, DAG: offlineDAG(s)})
		if err != nil {
			b.Fatal(err)
		}
		if err := r.view.wait(ctx); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if c, _ := r.List(ctx, "/deliveries", true, 0, 0); len(c) != n {
			b.Fatalf("rebuilt view holds %d records, want %d", len(c), n)
		}
		_ = r.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkDecideOneRecord is the verified view's CPU cost per record,
// without the store: decode, verify the signature, policy.
func BenchmarkDecideOneRecord(b *testing.B) {
	w := newTrustWorld(b)
	v := w.Central.Sign(b, delivery(b, "Maths"), 0)
	l := policy.Lookups{Org: testOrg, Trust: w.Trust, Now: tw0.Add(time.Hour), Members: w.Members,
		Execution: func(string) (*schema.Record, bool) { return nil, false }}
	elems := []policy.Element{{Block: "a", Priority: 1, Value: v}}
	b.ResetTimer()
	for range b.N {
		if d := policy.Decide("/deliveries/d1", elems, l); d.Value == nil {
			b.Fatal("refused")
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkSignOneRecord is a gated writer's signing cost per record.
func BenchmarkSignOneRecord(b *testing.B) {
	w := newTrustWorld(b)
	enc, err := schema.Encode(delivery(b, "Maths"))
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		if _, err := policy.Sign(w.Central.Priv, w.Central.M, enc, uint64(i+1), tw0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
