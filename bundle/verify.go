package bundle

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Report is what Verify checked.
type Report struct {
	Info
	// Dir is set when an export directory was checked (not only an archive).
	Dir bool `json:"dir"`
	// Checked lists every file checked, by name in the directory.
	Checked []string `json:"checked"`
	// Timestamp is the time-stamp token's content, if the bundle has one.
	Timestamp *Timestamp `json:"timestamp,omitempty"`
}

// Verify checks a bundle offline: an export directory, an archive file
// inside one (the whole directory is then checked), or a lone archive
// file. Every failure is a *VerifyError naming the file that failed:
//
//   - the archive: gzip and tar structure, the manifest's form, the
//     signature with the signer's key (from its peer ID), every file's
//     SHA-256, no file unlisted or missing, and that its tar stream is the
//     canonical one Build writes;
//   - bundle.tar.gz.sha256 against the archive's SHA-256;
//   - MANIFEST.sha256 and its signature in the directory equal those in the
//     archive, each content file in the directory matches the manifest,
//     and no other file is there;
//   - the time-stamp request and token, if present, are over the archive's
//     SHA-256 (the token's signature is checked against the certificate it
//     carries; its chain is `openssl ts -verify -CAfile`'s job).
func Verify(path string) (Report, error) {
	st, err := os.Stat(path)
	if err != nil {
		return Report{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if !st.IsDir() {
		dir := filepath.Dir(path)
		if filepath.Base(path) == ArchiveName && exists(filepath.Join(dir, ManifestName)) {
			return verifyDir(dir)
		}
		return verifyFile(path)
	}
	return verifyDir(path)
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// verifyFile checks a lone archive (and, beside it under its own name plus
// ".sha256", ".tsq" and ".tsr", its recorded SHA-256 and time-stamp, if
// present). The archive is streamed, not held in memory.
func verifyFile(path string) (Report, error) {
	a, err := streamFile(path, filepath.Base(path))
	if err != nil {
		return Report{}, err
	}
	r := Report{Info: a.Info, Checked: []string{filepath.Base(path)}}
	if b, err := os.ReadFile(path + ".sha256"); err == nil {
		if err := checkDigest(path, a, b, filepath.Base(path)+".sha256", filepath.Base(path)); err != nil {
			return r, err
		}
		r.Checked = append(r.Checked, filepath.Base(path)+".sha256")
	}
	return r, checkStamps(&r, path+".tsq", path+".tsr")
}

// streamFile verifies the archive at path, naming it name on failure.
func streamFile(path, name string) (*Archive, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, failed(name, "missing")
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	defer f.Close()
	return streamArchive(f)
}

// hashFile returns the SHA-256 of the file at path.
func hashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func verifyDir(dir string) (Report, error) {
	at := func(name string) string { return filepath.Join(dir, filepath.FromSlash(name)) }
	a, err := streamFile(at(ArchiveName), ArchiveName)
	if err != nil {
		return Report{}, err
	}
	r := Report{Info: a.Info, Dir: true, Checked: []string{ArchiveName}}
	digest, err := os.ReadFile(at(DigestName))
	if err != nil {
		return r, failed(DigestName, "cannot be read: %v", err)
	}
	if err := checkDigest(at(ArchiveName), a, digest, DigestName, ArchiveName); err != nil {
		return r, err
	}
	r.Checked = append(r.Checked, DigestName)
	for _, f := range []struct {
		name string
		want []byte
	}{{ManifestName, a.Manifest}, {SignatureName, a.Signature}} {
		b, err := os.ReadFile(at(f.name))
		if err != nil {
			return r, failed(f.name, "cannot be read: %v", err)
		}
		if !bytes.Equal(b, f.want) {
			return r, failed(f.name, "differs from the %s inside %s", f.name, ArchiveName)
		}
		r.Checked = append(r.Checked, f.name)
	}
	for _, e := range a.entries {
		sum, err := hashFile(at(e.Path))
		if err != nil {
			return r, failed(e.Path, "listed in %s but cannot be read: %v", ManifestName, err)
		}
		if sum != e.SHA256 {
			return r, failed(e.Path, "SHA-256 is %s; %s lists %s", sum, ManifestName, e.SHA256)
		}
		r.Checked = append(r.Checked, e.Path)
	}
	known := map[string]bool{ArchiveName: true, DigestName: true, ManifestName: true, SignatureName: true, TSQName: true, TSRName: true}
	for _, f := range a.Info.Files {
		known[f] = true
	}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel != "." && !slices.ContainsFunc(a.Info.Files, func(f string) bool { return strings.HasPrefix(f, rel+"/") }) {
				return failed(rel+"/", "is not part of the bundle")
			}
			return nil
		}
		if !known[rel] {
			return failed(rel, "is not part of the bundle (%s does not list it)", ManifestName)
		}
		return nil
	})
	if err != nil {
		return r, err
	}
	return r, checkStamps(&r, at(TSQName), at(TSRName))
}

// checkDigest compares the recorded SHA-256 (a sha256sum line) with the
// archive's, and names which of the two changed.
func checkDigest(path string, a *Archive, line []byte, name, archive string) error {
	s := string(line)
	if len(s) < 67 || s[64:66] != "  " || s[66:] != archive+"\n" {
		return failed(name, "is not one line \"<sha256>  %s\"", archive)
	}
	recorded := s[:64]
	if recorded == a.Info.SHA256 {
		return nil
	}
	// The archive's content verified; decide whether its bytes or the
	// recorded sum changed by rebuilding the canonical archive.
	data, err := os.ReadFile(path)
	if err == nil {
		a, err = Open(data)
	}
	var canon []byte
	if err == nil {
		canon, err = a.canonical()
	}
	switch {
	case err == nil && Sum(canon) == recorded:
		return failed(ArchiveName, "SHA-256 is %s; %s records %s (its content is intact, its bytes were changed)", a.Info.SHA256, name, recorded)
	case err == nil && Sum(canon) == a.Info.SHA256:
		return failed(name, "records SHA-256 %s, but %s (which verifies) has %s", recorded, ArchiveName, a.Info.SHA256)
	}
	return failed(ArchiveName+" or "+name, "the archive's SHA-256 is %s; %s records %s", a.Info.SHA256, name, recorded)
}

func checkStamps(r *Report, tsqPath, tsrPath string) error {
	tsq, err := os.ReadFile(tsqPath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return failed(filepath.Base(tsqPath), "cannot be read: %v", err)
	}
	if tsq != nil {
		if _, err := CheckRequest(tsq, r.SHA256); err != nil {
			return failed(filepath.Base(tsqPath), "%v", err)
		}
		r.Checked = append(r.Checked, filepath.Base(tsqPath))
	}
	tsr, err := os.ReadFile(tsrPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return failed(filepath.Base(tsrPath), "cannot be read: %v", err)
	}
	ts, err := CheckTimestamp(tsr, tsq, r.SHA256)
	if err != nil {
		return failed(filepath.Base(tsrPath), "%v", err)
	}
	r.Timestamp = &ts
	r.Checked = append(r.Checked, filepath.Base(tsrPath))
	return nil
}

// Export writes archive (verified first) and its files into dir, which
// must be empty or not exist yet, with extra files beside it: only
// TSQName and TSRName are allowed as extras.
func Export(archive []byte, dir string, extras map[string][]byte) (Info, error) {
	a, err := Open(archive)
	if err != nil {
		return Info{}, err
	}
	for name := range extras {
		if name != TSQName && name != TSRName {
			return Info{}, fmt.Errorf("%w: export extra %q; only %s and %s go beside a bundle", ErrInvalid, name, TSQName, TSRName)
		}
	}
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return Info{}, fmt.Errorf("%w: %s is not empty; export into a new or empty directory", ErrInvalid, dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Info{}, err
	}
	write := func(name string, b []byte) error {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		return os.WriteFile(p, b, 0o644)
	}
	files := map[string][]byte{
		ArchiveName: archive, DigestName: DigestLine(a.Info.SHA256),
		ManifestName: a.Manifest, SignatureName: a.Signature,
	}
	for _, e := range a.Files {
		files[e.Path] = e.Data
	}
	for k, v := range extras {
		files[k] = v
	}
	for name, b := range files {
		if err := write(name, b); err != nil {
			return Info{}, err
		}
	}
	return a.Info, nil
}
