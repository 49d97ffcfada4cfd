package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestKeptSections(t *testing.T) {
	p := filepath.Join(t.TempDir(), "B.md")
	if keptSections(p) != nil {
		t.Fatal("a missing file keeps something")
	}
	os.WriteFile(p, []byte("# old run\n\n## raw\n\n"+keepMarker+"\n## bundles\n\nfigures\n"), 0o644)
	if got := string(keptSections(p)); got != "\n"+keepMarker+"\n## bundles\n\nfigures\n" {
		t.Fatalf("kept %q", got)
	}
	os.WriteFile(p, []byte("# no marker\n"), 0o644)
	if keptSections(p) != nil {
		t.Fatal("kept without a marker")
	}
}
