package bundle

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/examnode/examnode/schema"
)

// Names of the files of a bundle.
const (
	ArchiveName   = "bundle.tar.gz"
	DigestName    = ArchiveName + ".sha256"
	ManifestName  = "MANIFEST.sha256"
	SignatureName = ManifestName + ".sig"
	TSQName       = ArchiveName + ".tsq"
	TSRName       = ArchiveName + ".tsr"
)

// Limits.
const (
	// MaxContentSize bounds the uncompressed size of one bundle's files, so
	// that a crafted archive cannot expand without end.
	MaxContentSize = 4 << 30
	maxSignature   = 4096
)

const signatureHeader = "examnode-bundle-signature v1"

// Errors. Verification failures are *VerifyError, which wraps ErrVerify.
var (
	ErrInvalid = errors.New("bundle: invalid input")
	ErrVerify  = errors.New("bundle: verification failed")
)

// VerifyError names the file that failed verification and why. File is a
// name in the export directory (MANIFEST.sha256, result.json,
// bundle.tar.gz), or, for a file inside the archive, "bundle.tar.gz:" and
// its path there.
type VerifyError struct {
	File   string
	Reason string
}

func (e *VerifyError) Error() string {
	return fmt.Sprintf("%v: %s: %s", ErrVerify, e.File, e.Reason)
}

func (e *VerifyError) Unwrap() error { return ErrVerify }

func failed(file, format string, args ...any) error {
	return &VerifyError{File: file, Reason: fmt.Sprintf(format, args...)}
}

// File is one content file of a bundle.
type File struct {
	// Path is relative and slash-separated (see schema.ManifestEntry).
	Path string
	Data []byte
}

// Input is what goes into a bundle.
type Input struct {
	Execution string
	Created   time.Time
	// Files are the content files, in any order: by convention
	// execution.json, result.json, result-logs/<id>.json and
	// attachments/<name>. MANIFEST.sha256 and its signature are added.
	Files []File
}

// Info describes a bundle.
type Info struct {
	Execution string    `json:"execution"`
	Created   time.Time `json:"created"`
	Signer    string    `json:"signer"`
	// SHA256 and Size are the archive file's.
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	// Files are the content files' paths, in manifest order.
	Files []string `json:"files"`
}

// Build writes the archive of in to w, signed with key (an Ed25519 libp2p
// node key), and returns its description. The output depends only on in
// and key.
func Build(w io.Writer, in Input, key crypto.PrivKey) (Info, error) {
	if err := schema.ValidateID(in.Execution); err != nil {
		return Info{}, fmt.Errorf("%w: execution: %w", ErrInvalid, err)
	}
	if in.Created.IsZero() {
		return Info{}, fmt.Errorf("%w: the creation time is not set", ErrInvalid)
	}
	if key == nil || key.Type() != crypto.Ed25519 {
		return Info{}, fmt.Errorf("%w: the signing key must be the node's Ed25519 key", ErrInvalid)
	}
	signer, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return Info{}, fmt.Errorf("%w: signing key: %w", ErrInvalid, err)
	}
	files := slices.Clone(in.Files)
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	var m schema.Manifest
	var total int64
	for _, f := range files {
		if f.Path == ManifestName || f.Path == SignatureName {
			return Info{}, fmt.Errorf("%w: a content file may not be called %s", ErrInvalid, f.Path)
		}
		sum := sha256.Sum256(f.Data)
		m.Entries = append(m.Entries, schema.ManifestEntry{Path: f.Path, SHA256: hex.EncodeToString(sum[:])})
		total += int64(len(f.Data))
	}
	if total > MaxContentSize {
		return Info{}, fmt.Errorf("%w: the files hold %d bytes; a bundle holds at most %d", ErrInvalid, total, int64(MaxContentSize))
	}
	manifest, err := m.MarshalText()
	if err != nil {
		return Info{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	created := in.Created.UTC()
	sig, err := sign(key, in.Execution, created, signer.String(), manifest)
	if err != nil {
		return Info{}, err
	}
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(w, h)}
	if err := writeArchive(cw, created, manifest, sig, files); err != nil {
		return Info{}, err
	}
	info := Info{
		Execution: in.Execution, Created: created, Signer: signer.String(),
		SHA256: hex.EncodeToString(h.Sum(nil)), Size: cw.n,
	}
	for _, f := range files {
		info.Files = append(info.Files, f.Path)
	}
	return info, nil
}

// writeArchive writes the canonical tar.gz; Verify's canonical check
// rebuilds an archive with it.
func writeArchive(w io.Writer, created time.Time, manifest, sig []byte, files []File) error {
	zw, err := gzip.NewWriterLevel(w, gzip.DefaultCompression)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	put := func(name string, data []byte) error {
		if err := tw.WriteHeader(tarHeader(name, int64(len(data)), created)); err != nil {
			return fmt.Errorf("bundle: write %s: %w", name, err)
		}
		_, err := tw.Write(data)
		return err
	}
	if err := put(ManifestName, manifest); err != nil {
		return err
	}
	if err := put(SignatureName, sig); err != nil {
		return err
	}
	for _, f := range files {
		if err := put(f.Path, f.Data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

// tarHeader is the canonical header of every entry.
func tarHeader(name string, size int64, created time.Time) *tar.Header {
	return &tar.Header{
		Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644,
		ModTime: created.UTC().Truncate(time.Second), Format: tar.FormatPAX,
	}
}

// gzipHeader is the first 10 bytes every archive starts with: the gzip
// magic, deflate, no flags, no time, the level's XFL byte and OS
// "unknown". The reader does not check XFL and OS, so Open does.
var gzipHeader = func() []byte {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.DefaultCompression)
	_ = zw.Close()
	return buf.Bytes()[:10]
}()

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// signedStatement is the header of the signature file (four lines) and the
// manifest after it: the bytes the Ed25519 signature covers.
func signedHeader(execution string, created time.Time, signer string) string {
	return fmt.Sprintf("%s\nexecution: %s\ncreated: %s\nsigner: %s\n",
		signatureHeader, execution, created.UTC().Format(time.RFC3339Nano), signer)
}

func sign(key crypto.PrivKey, execution string, created time.Time, signer string, manifest []byte) ([]byte, error) {
	head := signedHeader(execution, created, signer)
	sig, err := key.Sign(append([]byte(head), manifest...))
	if err != nil {
		return nil, fmt.Errorf("bundle: sign the manifest: %w", err)
	}
	return []byte(head + "signature: " + base64.StdEncoding.EncodeToString(sig) + "\n"), nil
}

// Signature is a parsed signature file.
type Signature struct {
	Execution string
	Created   time.Time
	Signer    string
	Sig       []byte
}

// ParseSignature reads a signature file in the format of the package doc.
func ParseSignature(b []byte) (Signature, error) {
	bad := func(format string, args ...any) (Signature, error) {
		return Signature{}, fmt.Errorf("%w: signature file: %s", ErrInvalid, fmt.Sprintf(format, args...))
	}
	if len(b) > maxSignature {
		return bad("%d bytes; the limit is %d", len(b), maxSignature)
	}
	if len(b) == 0 || b[len(b)-1] != '\n' {
		return bad("it does not end in a newline")
	}
	lines := strings.Split(string(b[:len(b)-1]), "\n")
	if len(lines) != 5 {
		return bad("it has %d lines; it has exactly 5", len(lines))
	}
	if lines[0] != signatureHeader {
		return bad("the first line is %q; want %q", lines[0], signatureHeader)
	}
	field := func(i int, name string) (string, error) {
		v, ok := strings.CutPrefix(lines[i], name+": ")
		if !ok {
			return "", fmt.Errorf("%w: signature file: line %d is not \"%s: …\"", ErrInvalid, i+1, name)
		}
		return v, nil
	}
	var s Signature
	var err error
	if s.Execution, err = field(1, "execution"); err != nil {
		return Signature{}, err
	}
	c, err := field(2, "created")
	if err != nil {
		return Signature{}, err
	}
	if s.Created, err = time.Parse(time.RFC3339Nano, c); err != nil {
		return bad("created: %v", err)
	}
	if s.Signer, err = field(3, "signer"); err != nil {
		return Signature{}, err
	}
	sig, err := field(4, "signature")
	if err != nil {
		return Signature{}, err
	}
	if s.Sig, err = base64.StdEncoding.DecodeString(sig); err != nil {
		return bad("signature: not base64: %v", err)
	}
	if len(s.Sig) != 64 {
		return bad("signature: %d bytes; an Ed25519 signature has 64", len(s.Sig))
	}
	if signedHeader(s.Execution, s.Created, s.Signer)+"signature: "+sig+"\n" != string(b) {
		return bad("it is not in canonical form (created must be RFC 3339 in UTC)")
	}
	return s, nil
}

// Check verifies the signature over manifest with the key in the signer's
// peer ID.
func (s Signature) Check(manifest []byte) error {
	id, err := peer.Decode(s.Signer)
	if err != nil {
		return fmt.Errorf("signer %q is not a peer ID: %w", s.Signer, err)
	}
	pub, err := id.ExtractPublicKey()
	if err != nil {
		return fmt.Errorf("signer %s does not embed its public key: %w", s.Signer, err)
	}
	if pub.Type() != crypto.Ed25519 {
		return fmt.Errorf("signer %s's key is %s; bundles are signed with Ed25519 node keys", s.Signer, pub.Type())
	}
	ok, err := pub.Verify(append([]byte(signedHeader(s.Execution, s.Created, s.Signer)), manifest...), s.Sig)
	if err != nil || !ok {
		return fmt.Errorf("the signature of %s over %s does not verify", s.Signer, ManifestName)
	}
	return nil
}

// Sum returns the SHA-256 of b as 64 lowercase hex digits.
func Sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// DigestLine is the content of DigestName for an archive of SHA-256 sum.
func DigestLine(sum string) []byte { return []byte(sum + "  " + ArchiveName + "\n") }

// Entry is one file read from an archive.
type Entry struct {
	Path string
	Data []byte
}

// Archive is a verified archive's content.
type Archive struct {
	Info      Info
	Manifest  []byte
	Signature []byte
	Files     []Entry // in manifest order; nil when streamed

	entries []schema.ManifestEntry
}

// Open reads and verifies an archive held in memory: the gzip and tar
// structure, the manifest's form, the signature, and that the archive
// holds exactly the files the manifest lists with those SHA-256 sums. On
// failure the error is a *VerifyError naming the file.
func Open(data []byte) (*Archive, error) {
	return readArchive(bufio.NewReader(bytes.NewReader(data)), int64(len(data)), Sum(data), true)
}

// VerifyArchive is Open for an archive read from r; it holds no content
// in memory (only the manifest and signature).
func VerifyArchive(r io.Reader) (Info, error) {
	a, err := streamArchive(r)
	if err != nil {
		return Info{}, err
	}
	return a.Info, nil
}

// streamArchive verifies an archive read from r, keeping only its manifest
// and signature.
func streamArchive(r io.Reader) (*Archive, error) {
	h := sha256.New()
	cr := &countWriter{w: h}
	a, err := readArchive(bufio.NewReaderSize(io.TeeReader(r, cr), 1<<20), 0, "", false)
	if err != nil {
		return nil, err
	}
	a.Info.SHA256, a.Info.Size = hex.EncodeToString(h.Sum(nil)), cr.n
	return a, nil
}

// readArchive reads from r, a bufio.Reader so that gzip reads no further
// than its stream and trailing bytes can be found.
func readArchive(r *bufio.Reader, size int64, sum string, keep bool) (*Archive, error) {
	in := func(p string) string { return ArchiveName + ":" + p }
	if head, err := r.Peek(len(gzipHeader)); err != nil || !bytes.Equal(head, gzipHeader) {
		return nil, failed(ArchiveName, "does not start with the gzip header examnode writes (% x)", gzipHeader)
	}
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, failed(ArchiveName, "not a gzip file: %v", err)
	}
	zr.Multistream(false)
	// The tar stream read must be byte for byte the canonical one (headers,
	// padding, end blocks), which ctw rebuilds from what is read.
	actual, canon := sha256.New(), sha256.New()
	stream := io.TeeReader(zr, actual)
	tr := tar.NewReader(stream)
	ctw := tar.NewWriter(canon)
	next := func() (*tar.Header, error) {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		if err != nil {
			return nil, failed(ArchiveName, "damaged: %v", err)
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil, failed(in(hdr.Name), "is not a regular file (tar type %q)", hdr.Typeflag)
		}
		return hdr, nil
	}
	readSmall := func(name string, limit int64) ([]byte, error) {
		hdr, err := next()
		if errors.Is(err, io.EOF) {
			return nil, failed(in(name), "missing: the archive does not hold it")
		}
		if err != nil {
			return nil, err
		}
		if hdr.Name != name {
			return nil, failed(in(name), "missing: the archive starts with %s, %s comes first", hdr.Name, name)
		}
		if hdr.Size > limit {
			return nil, failed(in(name), "is %d bytes; the limit is %d", hdr.Size, limit)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return nil, failed(ArchiveName, "damaged while reading %s: %v", name, err)
		}
		return b, nil
	}
	a := &Archive{}
	if a.Manifest, err = readSmall(ManifestName, schema.MaxManifestSize); err != nil {
		return nil, err
	}
	m, err := schema.ParseManifest(a.Manifest)
	if err != nil {
		return nil, failed(in(ManifestName), "%v", err)
	}
	if a.Signature, err = readSmall(SignatureName, maxSignature); err != nil {
		return nil, err
	}
	sig, err := ParseSignature(a.Signature)
	if err != nil {
		return nil, failed(in(SignatureName), "%v", err)
	}
	if err := sig.Check(a.Manifest); err != nil {
		return nil, failed(in(SignatureName), "%v", err)
	}
	for _, e := range []Entry{{ManifestName, a.Manifest}, {SignatureName, a.Signature}} {
		_ = ctw.WriteHeader(tarHeader(e.Path, int64(len(e.Data)), sig.Created))
		_, _ = ctw.Write(e.Data)
	}
	var total int64
	i := 0
	for {
		hdr, err := next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if i >= len(m.Entries) || hdr.Name != m.Entries[i].Path {
			if _, listed := m.Lookup(hdr.Name); listed {
				return nil, failed(in(hdr.Name), "is out of place or repeated; files follow the manifest's order once each")
			}
			return nil, failed(in(hdr.Name), "is not listed in %s", ManifestName)
		}
		if total += hdr.Size; total > MaxContentSize {
			return nil, failed(ArchiveName, "its files hold more than %d bytes", int64(MaxContentSize))
		}
		h := sha256.New()
		_ = ctw.WriteHeader(tarHeader(hdr.Name, hdr.Size, sig.Created))
		var buf *bytes.Buffer
		var w io.Writer = io.MultiWriter(h, ctw)
		if keep {
			buf = bytes.NewBuffer(make([]byte, 0, hdr.Size))
			w = io.MultiWriter(h, ctw, buf)
		}
		if _, err := io.Copy(w, tr); err != nil {
			return nil, failed(ArchiveName, "damaged while reading %s: %v", hdr.Name, err)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != m.Entries[i].SHA256 {
			return nil, failed(in(hdr.Name), "SHA-256 is %s; %s lists %s", got, ManifestName, m.Entries[i].SHA256)
		}
		if keep {
			a.Files = append(a.Files, Entry{Path: hdr.Name, Data: buf.Bytes()})
		}
		i++
	}
	if i < len(m.Entries) {
		return nil, failed(in(m.Entries[i].Path), "missing: %s lists it but the archive does not hold it", ManifestName)
	}
	// Drain to the end so the gzip checksum is checked, and refuse trailing data.
	if _, err := io.Copy(io.Discard, stream); err != nil {
		return nil, failed(ArchiveName, "damaged: %v", err)
	}
	_ = ctw.Close()
	if !bytes.Equal(actual.Sum(nil), canon.Sum(nil)) {
		return nil, failed(ArchiveName, "its tar stream is not the one examnode writes for this content: a header, padding or end block was changed")
	}
	if err := zr.Close(); err != nil {
		return nil, failed(ArchiveName, "damaged: %v", err)
	}
	if n, _ := io.Copy(io.Discard, r); n > 0 {
		return nil, failed(ArchiveName, "%d bytes follow the end of its gzip stream", n)
	}
	a.Info = Info{Execution: sig.Execution, Created: sig.Created, Signer: sig.Signer, SHA256: sum, Size: size}
	a.entries = m.Entries
	for _, e := range m.Entries {
		a.Info.Files = append(a.Info.Files, e.Path)
	}
	return a, nil
}

// canonical rebuilds a's archive bytes from its content.
func (a *Archive) canonical() ([]byte, error) {
	files := make([]File, len(a.Files))
	for i, e := range a.Files {
		files[i] = File(e)
	}
	var buf bytes.Buffer
	if err := writeArchive(&buf, a.Info.Created, a.Manifest, a.Signature, files); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
