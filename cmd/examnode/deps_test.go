package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The binary links no test kit: no package of integration, no
// internal/clustertest (whose helpers take a testing.TB) nor the other
// test helper packages, and no examnode package imports testing.
func TestBinaryLinksNoTestKit(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const mod = "github.com/examnode/examnode/"
	testKit := []string{mod + "integration", mod + "internal/clustertest", mod + "internal/disktest", mod + "internal/fuzzseed"}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, imports, _ := strings.Cut(line, " ")
		for _, k := range testKit {
			if pkg == k || strings.HasPrefix(pkg, k+"/") {
				t.Errorf("the binary links the test kit package %s", pkg)
			}
		}
		if strings.HasPrefix(pkg, mod) && slices.Contains(strings.Fields(imports), "testing") {
			t.Errorf("%s, linked into the binary, imports testing", pkg)
		}
	}
}
