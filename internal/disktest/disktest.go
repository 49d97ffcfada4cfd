// Package disktest makes small disks and fills them, for tests of what a
// node does when its data directory has no space left.
package disktest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// Fill writes a file named "filler" in dir until the file system refuses
// more (ENOSPC), writing at most max bytes, and returns the file's path.
// After the first refusal it writes in small pieces, so the last partial
// block is taken too. Any error other than ENOSPC fails the test, and so
// does a disk that is still not full after max bytes.
func Fill(t testing.TB, dir string, max int64) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var written int64
	full := false
	for _, size := range []int{1 << 20, 512} {
		buf := make([]byte, size)
		for written < max {
			k, err := f.Write(buf)
			written += int64(k)
			if errors.Is(err, syscall.ENOSPC) {
				full = true
				break
			}
			if err != nil {
				t.Fatalf("filling %s: %v", dir, err)
			}
		}
	}
	if !full {
		t.Fatalf("%s still had space after %d bytes", dir, written)
	}
	t.Logf("filler: %d bytes", written)
	return p
}

// Tmpfs mounts a tmpfs of size bytes and returns its path, unmounted when
// the test ends; it skips the test where mounting is impossible (not root,
// no mount(8)).
func Tmpfs(t testing.TB, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs (CI runs tests as root)")
	}
	dir := filepath.Join(t.TempDir(), "disk")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0700", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("cannot mount a tmpfs here: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// Allocate writes a file named "filler" of size bytes in dir at once
// (fallocate), so that a test can leave an exact amount of the disk free.
func Allocate(t testing.TB, dir string, size int64) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, size); err != nil {
		t.Fatalf("fallocate %d bytes in %s: %v", size, dir, err)
	}
}
