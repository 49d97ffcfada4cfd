package bundle_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/examnode/examnode/bundle"
)

func newKey(t testing.TB) crypto.PrivKey {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var created = time.Date(2026, 6, 1, 9, 30, 0, 123, time.UTC)

func sampleInput() bundle.Input {
	return bundle.Input{
		Execution: "e1",
		Created:   created,
		Files: []bundle.File{
			{Path: "result.json", Data: []byte(`{"execution":"e1","variables":{"SCORE":{"base_type":"float","cardinality":"single","value":7.5}}}`)},
			{Path: "execution.json", Data: []byte(`{"delivery":"d1","test_taker":"tt1","state":"finished"}`)},
			{Path: "result-logs/e1.000001.json", Data: []byte(`{"execution":"e1","seq":1,"event":"start"}`)},
			{Path: "result-logs/e1.000002.json", Data: []byte(`{"execution":"e1","seq":2,"event":"end"}`)},
			{Path: "attachments/essay.txt", Data: bytes.Repeat([]byte("An essay about sync. "), 40)},
		},
	}
}

func build(t testing.TB, key crypto.PrivKey, in bundle.Input) ([]byte, bundle.Info) {
	t.Helper()
	var buf bytes.Buffer
	info, err := bundle.Build(&buf, in, key)
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), info
}

func export(t *testing.T, data []byte, extras map[string][]byte) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "out")
	if _, err := bundle.Export(data, dir, extras); err != nil {
		t.Fatal(err)
	}
	return dir
}

func runTool(t *testing.T, dir, name string, args ...string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s is not installed (Debian: apt-get install coreutils/openssl; .ci/run installs it): %v", name, err)
	}
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v in %s: %v\n%s", name, args, dir, err, out)
	}
	t.Logf("%s %s:\n%s", name, strings.Join(args, " "), out)
}

func TestBuildIsDeterministicAndDescribed(t *testing.T) {
	key := newKey(t)
	a, info := build(t, key, sampleInput())
	b, info2 := build(t, key, sampleInput())
	if !bytes.Equal(a, b) || info.SHA256 != info2.SHA256 {
		t.Fatal("the same input gave two different archives")
	}
	if info.SHA256 != bundle.Sum(a) || info.Size != int64(len(a)) || info.Execution != "e1" || !info.Created.Equal(created) {
		t.Fatalf("info %+v does not describe the archive (sha %s, %d bytes)", info, bundle.Sum(a), len(a))
	}
	want := []string{"attachments/essay.txt", "execution.json", "result-logs/e1.000001.json", "result-logs/e1.000002.json", "result.json"}
	if strings.Join(info.Files, ",") != strings.Join(want, ",") {
		t.Fatalf("files %v; want %v", info.Files, want)
	}
	got, err := bundle.VerifyArchive(bytes.NewReader(a))
	if err != nil || got.SHA256 != info.SHA256 || got.Signer != info.Signer {
		t.Fatalf("VerifyArchive: %+v, %v", got, err)
	}
}

func TestBuildRefusesBadInput(t *testing.T) {
	key := newKey(t)
	for name, in := range map[string]bundle.Input{
		"no files":      {Execution: "e1", Created: created},
		"no time":       {Execution: "e1", Files: []bundle.File{{Path: "a", Data: nil}}},
		"bad path":      {Execution: "e1", Created: created, Files: []bundle.File{{Path: "../a"}}},
		"twice":         {Execution: "e1", Created: created, Files: []bundle.File{{Path: "a"}, {Path: "a"}}},
		"reserved name": {Execution: "e1", Created: created, Files: []bundle.File{{Path: bundle.ManifestName}}},
		"bad execution": {Execution: "e/1", Created: created, Files: []bundle.File{{Path: "a"}}},
	} {
		if _, err := bundle.Build(&bytes.Buffer{}, in, key); !errors.Is(err, bundle.ErrInvalid) {
			t.Errorf("%s: err %v; want ErrInvalid", name, err)
		}
	}
	rsa, _, _ := crypto.GenerateECDSAKeyPair(rand.Reader)
	if _, err := bundle.Build(&bytes.Buffer{}, sampleInput(), rsa); !errors.Is(err, bundle.ErrInvalid) {
		t.Errorf("non-Ed25519 key: %v", err)
	}
}

func TestExportPassesSha256sum(t *testing.T) {
	data, info := build(t, newKey(t), sampleInput())
	dir := export(t, data, nil)
	runTool(t, dir, "sha256sum", "--strict", "-c", bundle.ManifestName)
	runTool(t, dir, "sha256sum", "--strict", "-c", bundle.DigestName)
	for _, p := range []string{dir, filepath.Join(dir, bundle.ArchiveName)} {
		r, err := bundle.Verify(p)
		if err != nil {
			t.Fatalf("Verify(%s): %v", p, err)
		}
		if !r.Dir || r.SHA256 != info.SHA256 || len(r.Checked) != 4+len(info.Files) {
			t.Fatalf("Verify(%s) = %+v", p, r)
		}
	}
	// A lone archive verifies by itself.
	lone := filepath.Join(t.TempDir(), "x.tar.gz")
	if err := os.WriteFile(lone, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if r, err := bundle.Verify(lone); err != nil || r.Dir || r.SHA256 != info.SHA256 {
		t.Fatalf("Verify(lone) = %+v, %v", r, err)
	}
}

// wantFailure checks that Verify(path) fails naming file (exactly, or as a
// prefix when prefix is set).
func wantFailure(t *testing.T, path, file string, prefix bool) {
	t.Helper()
	_, err := bundle.Verify(path)
	var ve *bundle.VerifyError
	if !errors.As(err, &ve) || !errors.Is(err, bundle.ErrVerify) {
		t.Fatalf("Verify after changing %s: err %v; want a VerifyError", file, err)
	}
	if ve.File != file && !(prefix && strings.HasPrefix(ve.File, file)) {
		t.Fatalf("Verify after changing %s names %q: %v", file, ve.File, err)
	}
}

func flip(t *testing.T, path string, i int, mask byte) func() {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	orig := bytes.Clone(b)
	b[i] ^= mask
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := os.WriteFile(path, orig, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestVerifyNamesTheChangedFile(t *testing.T) {
	data, info := build(t, newKey(t), sampleInput())
	dir := export(t, data, nil)
	files := append([]string{bundle.ManifestName, bundle.SignatureName, bundle.DigestName}, info.Files...)
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f))
		st, _ := os.Stat(p)
		for _, i := range []int{0, int(st.Size()) / 2, int(st.Size()) - 2} {
			undo := flip(t, p, i, 0x01)
			wantFailure(t, dir, f, false)
			undo()
		}
	}
	// Every byte of the archive, each bit pattern that matters: the
	// failure names the archive (or a file inside it).
	p := filepath.Join(dir, bundle.ArchiveName)
	for i := range data {
		for _, mask := range []byte{0x01, 0x80} {
			undo := flip(t, p, i, mask)
			wantFailure(t, dir, bundle.ArchiveName, true)
			undo()
		}
	}
	if _, err := bundle.Verify(dir); err != nil {
		t.Fatalf("after restoring: %v", err)
	}
}

func TestVerifyRefusesExtraOrMissingFiles(t *testing.T) {
	data, _ := build(t, newKey(t), sampleInput())
	dir := export(t, data, nil)
	extra := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(extra, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	wantFailure(t, dir, "notes.txt", false)
	os.Remove(extra)
	p := filepath.Join(dir, "result.json")
	b, _ := os.ReadFile(p)
	os.Remove(p)
	wantFailure(t, dir, "result.json", false)
	os.WriteFile(p, b, 0o644)
	if _, err := bundle.Verify(dir); err != nil {
		t.Fatal(err)
	}
}

func TestSignatureFromAnotherKeyFails(t *testing.T) {
	// A bundle whose signature file names a signer other than the key that
	// signed: the signature does not verify.
	data, _ := build(t, newKey(t), sampleInput())
	a, err := bundle.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := build(t, newKey(t), sampleInput())
	b, _ := bundle.Open(other)
	sig, _ := bundle.ParseSignature(a.Signature)
	sigB, _ := bundle.ParseSignature(b.Signature)
	sig.Signer = sigB.Signer
	if err := sig.Check(a.Manifest); err == nil {
		t.Fatal("a signature verified under another signer's key")
	}
}

func TestExportRefusesNonEmptyDir(t *testing.T) {
	data, _ := build(t, newKey(t), sampleInput())
	dir := export(t, data, nil)
	if _, err := bundle.Export(data, dir, nil); !errors.Is(err, bundle.ErrInvalid) {
		t.Fatalf("export into a full directory: %v", err)
	}
	if _, err := bundle.Export(data, t.TempDir(), map[string][]byte{"x": nil}); !errors.Is(err, bundle.ErrInvalid) {
		t.Fatalf("export with an unknown extra: %v", err)
	}
}

func FuzzOpen(f *testing.F) {
	data, _ := build(f, newKey(f), sampleInput())
	f.Add(data)
	f.Add([]byte{0x1f, 0x8b})
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := bundle.Open(b)
		if err == nil && a.Info.SHA256 != bundle.Sum(b) {
			t.Fatal("an opened archive reports another SHA-256")
		}
	})
}

func FuzzParseSignature(f *testing.F) {
	data, _ := build(f, newKey(f), sampleInput())
	a, _ := bundle.Open(data)
	f.Add(a.Signature)
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := bundle.ParseSignature(b)
		if err != nil {
			return
		}
		_ = s.Check([]byte("x"))
	})
}
