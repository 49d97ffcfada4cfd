// Package fuzzseed adds seeds to a fuzz target's corpus and can write them
// out as checked-in corpus files.
package fuzzseed

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Add adds args to f's seed corpus and, with EXAMNODE_WRITE_FUZZ_CORPUS
// set, writes them to testdata/fuzz/<f.Name()>/ in the package under test,
// named by the SHA-256 of the file. Arguments are []byte or string.
func Add(f *testing.F, args ...any) {
	f.Helper()
	f.Add(args...)
	if os.Getenv("EXAMNODE_WRITE_FUZZ_CORPUS") == "" {
		return
	}
	dir := filepath.Join("testdata", "fuzz", f.Name())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		f.Fatal(err)
	}
	body := "go test fuzz v1\n"
	for _, a := range args {
		switch v := a.(type) {
		case []byte:
			body += fmt.Sprintf("[]byte(%q)\n", v)
		case string:
			body += fmt.Sprintf("string(%q)\n", v)
		default:
			f.Fatalf("fuzzseed: unsupported argument %T", a)
		}
	}
	sum := sha256.Sum256([]byte(body))
	if err := os.WriteFile(filepath.Join(dir, "seed-"+hex.EncodeToString(sum[:8])), []byte(body), 0o644); err != nil {
		f.Fatal(err)
	}
}
