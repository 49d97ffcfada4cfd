package crdt

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
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
	r, err := NewReplica(DefaultOptions("bench"), Deps{Store: s, DAG: offlineDAG(s)})
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
