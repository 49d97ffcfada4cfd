package crdt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/examnode/examnode/internal/disktest"
	"github.com/examnode/examnode/internal/testwait"
)

func TestSpaceGuardAdmitsUpToTheReserve(t *testing.T) {
	now := time.Unix(0, 0)
	free := uint64(100 << 20)
	g := &spaceGuard{
		dir: "/data", reserve: 20 << 20, now: func() time.Time { return now },
		statfs: func(string) (uint64, uint64, error) { return free, 1 << 30, nil },
	}
	steps := []struct {
		name    string
		advance time.Duration
		free    uint64
		n       uint64
		ok      bool
	}{
		{"room", 0, 100 << 20, 1 << 20, true},
		{"a small write within the recheck interval trusts the last reading", time.Millisecond, 0, 1 << 10, true},
		{"after the recheck interval the disk is read again", spaceRecheck, 0, 1, false},
		{"a large write reads the disk again at once", 0, 100 << 20, 20 << 20, true},
		{"exactly the reserve left", spaceRecheck, 30 << 20, 10 << 20, true},
		{"one byte into the reserve", spaceRecheck, 30 << 20, 10<<20 + 1, false},
		{"space returns", spaceRecheck, 500 << 20, 1 << 20, true},
	}
	for _, s := range steps {
		now = now.Add(s.advance)
		free = s.free
		err := g.admit(s.n, false)
		if (err == nil) != s.ok {
			t.Fatalf("%s: admit(%d) with %d free = %v, want ok=%t", s.name, s.n, free, err, s.ok)
		}
		if err != nil && (!errors.Is(err, ErrDiskFull) || !strings.Contains(err.Error(), "/data") || !strings.Contains(err.Error(), "free space on that disk")) {
			t.Fatalf("%s: the error does not say which disk is full and what to do: %v", s.name, err)
		}
		if g.full.Load() == s.ok {
			t.Fatalf("%s: full = %t after ok=%t", s.name, g.full.Load(), s.ok)
		}
	}
	if g.refused.Load() != 2 {
		t.Fatalf("refused = %d, want 2", g.refused.Load())
	}
}

func TestSizesFollowTheDisk(t *testing.T) {
	for _, c := range []struct {
		total            uint64
		memTable, vlog   int64
		reserveUnderDisk bool
	}{
		{64 << 20, 4 << 20, 8 << 20, true},
		{256 << 20, 16 << 20, 32 << 20, true},
		{1 << 30, 16 << 20, 64 << 20, true},
		{100 << 30, 16 << 20, 64 << 20, true},
	} {
		s := sizeFor(c.total, 0)
		if s.memTable != c.memTable || s.vlogFile != c.vlog {
			t.Errorf("disk %s: memtable %d, value log %d; want %d, %d", mib(c.total), s.memTable, s.vlogFile, c.memTable, c.vlog)
		}
		if used := s.reserve() + uint64(s.ballast()); used >= c.total/2 {
			t.Errorf("disk %s: reserve and ballast take %s, half the disk or more", mib(c.total), mib(used))
		}
	}
}

// mountTmpfs is disktest.Tmpfs.
func mountTmpfs(t *testing.T, size int64) string {
	t.Helper()
	return disktest.Tmpfs(t, size)
}

// TestDiskFullRefusesWritesAndRecovers runs a store on a 64 MiB tmpfs: its
// own writes fill the disk up to the reserve and are then refused with
// ErrDiskFull (the process does not die of SIGBUS in badger's mmapped value
// log); a filler taking every last byte gets the same answer; reads keep
// working; acknowledged data survives a close and a reopen on the full
// disk; and once space returns, writes are accepted again.
func TestDiskFullRefusesWritesAndRecovers(t *testing.T) {
	disk := mountTmpfs(t, 64<<20)
	dir := filepath.Join(disk, "store")
	ctx := context.Background()
	s := openStore(t, dir)
	r := newReplica(t, s, offlineDAG(s), nil, "c1")
	closeAll := func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	}

	// The store's own writes fill the disk: 16 KiB values, 32 to a group.
	value := []byte(strings.Repeat("r", 16<<10))
	acked := 0
	var refused error
	for i := 0; i < 2000 && refused == nil; i++ { // 2000 x 512 KiB is far more than 64 MiB
		ops := make([]Op, 32)
		for j := range ops {
			ops[j] = Op{Key: fmt.Sprintf("/results/r%05d", i*32+j), Value: value}
		}
		if err := r.Apply(ctx, ops); err != nil {
			refused = err
			break
		}
		acked += len(ops)
	}
	if refused == nil || !errors.Is(refused, ErrDiskFull) {
		t.Fatalf("writing far more than the disk holds: %d records acknowledged, then %v (want ErrDiskFull)", acked, refused)
	}
	sp := s.Space()
	t.Logf("own writes: %d records of 16 KiB acknowledged on a 64 MiB disk, then refused: %v; free %s, reserve %s",
		acked, refused, mib(sp.Free), mib(sp.Reserve))
	if !sp.Full && sp.Free >= sp.Reserve+2*writeSize("/results/r00000", value)*32 {
		t.Fatalf("refused with %s free over a reserve of %s", mib(sp.Free), mib(sp.Reserve))
	}
	check := func(when string) {
		t.Helper()
		n, err := r.Count(ctx, "/results")
		if err != nil || n != acked {
			t.Fatalf("%s: %d records readable (err %v), want %d", when, n, err, acked)
		}
		v, err := r.Get(ctx, fmt.Sprintf("/results/r%05d", acked-1))
		if err != nil || string(v) != string(value) {
			t.Fatalf("%s: last acknowledged record: %v", when, err)
		}
	}
	check("full by its own writes")

	// Another process takes every last byte: still refused, not a crash.
	filler := disktest.Fill(t, disk, 1<<32)
	if err := r.Put(ctx, "/results/after-filler", value); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("write with the disk filled by another file: %v, want ErrDiskFull", err)
	}
	check("filled by another file")
	// The monitor gives the ballast back.
	if !waitUntil(t, 10*time.Second, 50*time.Millisecond, func() bool { return !s.ballast.present() }) {
		t.Fatal("the ballast was not given back with the disk full")
	}

	// Close and reopen on the full disk: nothing acknowledged is lost,
	// writes are still refused.
	closeAll()
	s = openStore(t, dir)
	r = newReplica(t, s, offlineDAG(s), nil, "c1")
	check("reopened on the full disk")
	if err := r.Put(ctx, "/results/after-reopen", value); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("write after reopening on the full disk: %v, want ErrDiskFull", err)
	}

	// Space returns: writes are accepted again, without a restart.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var err error
	accepted := waitUntil(t, 200*spaceRecheck, spaceRecheck, func() bool {
		err = r.Put(ctx, "/results/after-space", value)
		return err == nil
	})
	if !accepted {
		t.Fatalf("after the filler was removed: %v", err)
	}
	t.Logf("writes accepted %s after the filler was removed", time.Since(start).Round(time.Millisecond))
	if _, err := r.Get(ctx, "/results/after-filler"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a refused write was stored after all: %v", err)
	}
	closeAll()
}

// waitUntil is testwait.Until.
func waitUntil(t *testing.T, timeout, interval time.Duration, cond func() bool) bool {
	t.Helper()
	return testwait.Until(t, timeout, interval, cond)
}
