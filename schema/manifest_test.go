package schema_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/examnode/examnode/schema"
)

var (
	h1 = strings.Repeat("0", 64)
	h2 = strings.Repeat("f", 63) + "0"
)

func TestManifestMarshalText(t *testing.T) {
	m := schema.Manifest{Entries: []schema.ManifestEntry{
		{Path: "result.json", SHA256: h1},
		{Path: "attachments/essay one.pdf", SHA256: h2},
		{Path: "Execution.json", SHA256: h1},
	}}
	got, err := m.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	want := h1 + "  Execution.json\n" + h2 + "  attachments/essay one.pdf\n" + h1 + "  result.json\n"
	if string(got) != want {
		t.Errorf("MarshalText =\n%s\nwant\n%s", got, want)
	}
	if m.Entries[0].Path != "result.json" {
		t.Error("MarshalText reordered the manifest")
	}
	p, err := schema.ParseManifest(got)
	if err != nil {
		t.Fatal(err)
	}
	if sum, ok := p.Lookup("result.json"); !ok || sum != h1 {
		t.Errorf("Lookup = %q, %v", sum, ok)
	}
	if _, ok := p.Lookup("missing"); ok {
		t.Error("Lookup found a missing path")
	}
	var u schema.Manifest
	if err := u.UnmarshalText(got); err != nil || !reflect.DeepEqual(u, p) {
		t.Errorf("UnmarshalText = %v, %v", u, err)
	}
	if err := u.UnmarshalText([]byte("x")); !errors.Is(err, schema.ErrBadManifest) {
		t.Errorf("UnmarshalText(bad) = %v", err)
	}
}

func TestManifestValidate(t *testing.T) {
	e := func(path, sum string) schema.ManifestEntry { return schema.ManifestEntry{Path: path, SHA256: sum} }
	tests := []struct {
		name    string
		entries []schema.ManifestEntry
		inMsg   string
	}{
		{"empty", nil, "no files"},
		{"bad hash", []schema.ManifestEntry{e("a", "xyz")}, "64 lowercase hex"},
		{"upper hash", []schema.ManifestEntry{e("a", strings.ToUpper(h2))}, "64 lowercase hex"},
		{"duplicate", []schema.ManifestEntry{e("a", h1), e("a", h2)}, "listed twice"},
		{"absolute", []schema.ManifestEntry{e("/etc/passwd", h1)}, "absolute"},
		{"dotdot", []schema.ManifestEntry{e("a/../../b", h1)}, `".."`},
		{"newline", []schema.ManifestEntry{e("a\nb", h1)}, "control"},
		{"backslash", []schema.ManifestEntry{e(`a\b`, h1)}, "backslash"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := schema.Manifest{Entries: tt.entries}
			for _, err := range []error{m.Validate(), func() error { _, err := m.MarshalText(); return err }()} {
				if !errors.Is(err, schema.ErrBadManifest) || !strings.Contains(err.Error(), tt.inMsg) {
					t.Errorf("err = %v; want ErrBadManifest containing %q", err, tt.inMsg)
				}
			}
		})
	}
}

func TestParseManifest(t *testing.T) {
	line := func(sum, path string) string { return sum + "  " + path + "\n" }
	valid := []string{
		line(h1, "a"),
		line(h1, "a") + line(h2, "b/c"),
		line(h1, " leading space") + line(h1, "*star") + line(h1, "..a") + line(h1, "a..") + line(h1, "é/ü.txt"),
		line(h1, "A") + line(h1, "B") + line(h1, "a"),
	}
	for _, s := range valid {
		m, err := schema.ParseManifest([]byte(s))
		if err != nil {
			t.Errorf("ParseManifest(%q): %v", s, err)
			continue
		}
		out, err := m.MarshalText()
		if err != nil || string(out) != s {
			t.Errorf("round trip of %q = %q, %v", s, out, err)
		}
	}
	tests := []struct {
		name, in, inMsg string
	}{
		{"empty", "", "empty"},
		{"no final newline", h1 + "  a", "newline"},
		{"blank line", line(h1, "a") + "\n" + line(h1, "b"), "line 2 is blank"},
		{"only newline", "\n", "line 1 is blank"},
		{"crlf", h1 + "  a\r\n", "CR LF"},
		{"uppercase hex", line(strings.ToUpper(h2), "a"), "lowercase hex"},
		{"short hex", line(h1[:63], "a"), "line 1"},
		{"long hex", line(h1+"0", "a"), "two spaces"},
		{"non-hex", line("g"+h1[1:], "a"), "hex"},
		{"binary marker", h1 + " *a\n", "'*'"},
		{"one space", h1 + " a\n", "two spaces"},
		{"tab", h1 + "\ta\n", "two spaces"},
		{"escaped name", `\` + line(h1, `a\\b`), "escaped file name"},
		{"backslash in path", line(h1, `a\b`), "backslash"},
		{"absolute", line(h1, "/etc/passwd"), "absolute"},
		{"dotdot", line(h1, "../x"), `".."`},
		{"dotdot inside", line(h1, "a/../b"), `".."`},
		{"dot", line(h1, "./a"), `"."`},
		{"empty path", h1 + "  \n", "empty"},
		{"double slash", line(h1, "a//b"), "empty component"},
		{"trailing slash", line(h1, "a/"), "empty component"},
		{"control char", line(h1, "a\tb"), "control"},
		{"delete char", line(h1, "a\x7fb"), "control"},
		{"duplicate", line(h1, "a") + line(h2, "a"), "line 2: path \"a\" is listed twice"},
		{"unsorted", line(h1, "b") + line(h1, "a"), "line 2"},
		{"not UTF-8", line(h1, "a\xff"), "UTF-8"},
		{"comment", "# sums\n" + line(h1, "a"), "line 1"},
		{"too long path", line(h1, strings.Repeat("a", 4097)), "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := schema.ParseManifest([]byte(tt.in))
			if !errors.Is(err, schema.ErrBadManifest) || !strings.Contains(err.Error(), tt.inMsg) {
				t.Errorf("err = %v; want ErrBadManifest containing %q", err, tt.inMsg)
			}
		})
	}
	if _, err := schema.ParseManifest(make([]byte, schema.MaxManifestSize+1)); !errors.Is(err, schema.ErrTooLarge) {
		t.Errorf("oversize: %v", err)
	}
}

// TestManifestSha256sum checks the format against the real tool.
func TestManifestSha256sum(t *testing.T) {
	tool, err := exec.LookPath("sha256sum")
	if err != nil {
		t.Skip("sha256sum not installed")
	}
	dir := t.TempDir()
	files := map[string]string{
		"result.json":               `{"score":7.5}`,
		"attachments/essay one.pdf": "%PDF-1.7",
		"logs/0001.json":            "[]",
	}
	var m schema.Manifest
	for path, content := range files {
		full := filepath.Join(dir, filepath.FromSlash(path))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(content))
		m.Entries = append(m.Entries, schema.ManifestEntry{Path: path, SHA256: hex.EncodeToString(sum[:])})
	}
	text, err := m.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "MANIFEST"), text, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(tool, "--check", "--strict", "MANIFEST")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum -c: %v\n%s", err, out)
	}
	// And what sha256sum writes, ParseManifest reads.
	cmd = exec.Command(tool, "attachments/essay one.pdf", "logs/0001.json", "result.json")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	p, err := schema.ParseManifest(out)
	if err != nil {
		t.Fatalf("ParseManifest(sha256sum output): %v\n%s", err, out)
	}
	if string(out) != string(text) || len(p.Entries) != 3 {
		t.Errorf("sha256sum wrote\n%s\nMarshalText wrote\n%s", out, text)
	}
}
