package node

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/examnode/examnode/internal/disktest"
	"github.com/examnode/examnode/schema"
)

// TestAPIAnswers507OnAFullDisk runs a node whose data directory is a
// 64 MiB tmpfs, fills the disk with another file, and checks that a write
// is answered 507 disk_full (the daemon stays up), a read still works, and
// the write is accepted once the file is gone.
func TestAPIAnswers507OnAFullDisk(t *testing.T) {
	dir := disktest.Tmpfs(t, 64<<20)
	n := newTestNode(t, dir, schema.RoleVM)
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = n.Close()
		}
	})
	if a := call(t, n, http.MethodPut, "/v1/orgs/C1/raw/notes/before", []byte("kept")); a.status != http.StatusOK {
		t.Fatalf("write before the disk filled: %d %s", a.status, a.body)
	}
	filler := filepath.Join(dir, "filler")
	if out, err := exec.Command("sh", "-c", "dd if=/dev/zero of="+filler+" bs=1M count=100 2>&1; true").CombinedOutput(); err != nil {
		t.Fatalf("fill: %v %s", err, out)
	}
	a := call(t, n, http.MethodPut, "/v1/orgs/C1/raw/notes/during", []byte("refused"))
	if a.status != http.StatusInsufficientStorage || !strings.Contains(string(a.body), `"disk_full"`) || !strings.Contains(string(a.body), "free space on that disk") {
		t.Fatalf("write on a full disk: %d %s, want 507 disk_full saying what to do", a.status, a.body)
	}
	if st, err := n.Status(t.Context()); err != nil || st.Verdict != VerdictErrors || !strings.Contains(strings.Join(st.Problems, "\n"), "writes are refused") {
		t.Fatalf("status on a full disk: %s %q %v", st.Verdict, st.Problems, err)
	}
	if a := call(t, n, http.MethodGet, "/v1/orgs/C1/raw/notes/before", nil); a.status != http.StatusOK || !strings.Contains(string(a.body), "kept") {
		t.Fatalf("read on a full disk: %d %s", a.status, a.body)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if a := call(t, n, http.MethodPut, "/v1/orgs/C1/raw/notes/after", []byte("accepted")); a.status != http.StatusOK {
		t.Fatalf("write after space returned: %d %s", a.status, a.body)
	}
	closed = true
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
}
