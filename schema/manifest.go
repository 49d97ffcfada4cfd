package schema

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// Manifest limits.
const (
	MaxManifestSize = 16 << 20 // bytes of manifest text
	maxManifestPath = 4096     // bytes of one path
)

// ManifestEntry is one file of a result bundle.
type ManifestEntry struct {
	// Path is relative and slash-separated ("result.json",
	// "attachments/essay.pdf"): no leading '/', no empty, "." or ".."
	// components, no backslash and no control characters (so no name ever
	// needs sha256sum's backslash escaping).
	Path string
	// SHA256 is the file's SHA-256 as 64 lowercase hex digits.
	SHA256 string
}

// Manifest lists every file of a result bundle with its SHA-256. Its text
// form is exactly what `sha256sum -c` reads: one "<64 hex>  <path>\n" line
// per file (two spaces: text mode), sorted by path in byte order. The
// producing VM signs that text, so it has one canonical form: ParseManifest
// accepts only what MarshalText writes.
type Manifest struct {
	Entries []ManifestEntry
}

// Lookup returns the SHA-256 listed for path.
func (m Manifest) Lookup(path string) (string, bool) {
	for _, e := range m.Entries {
		if e.Path == path {
			return e.SHA256, true
		}
	}
	return "", false
}

// Validate checks that the manifest lists at least one file, every entry is
// valid and no path appears twice. Entries need not be sorted.
func (m Manifest) Validate() error {
	if len(m.Entries) == 0 {
		return fmt.Errorf("%w: it lists no files; a bundle has at least one", ErrBadManifest)
	}
	seen := make(map[string]bool, len(m.Entries))
	for i, e := range m.Entries {
		if err := checkManifestPath(e.Path); err != nil {
			return fmt.Errorf("%w: entry %d: path %q %s", ErrBadManifest, i, e.Path, err.Error())
		}
		if !isSHA256Hex(e.SHA256) {
			return fmt.Errorf("%w: entry %d (%s): SHA-256 %q is not 64 lowercase hex digits", ErrBadManifest, i, e.Path, e.SHA256)
		}
		if seen[e.Path] {
			return fmt.Errorf("%w: entry %d: path %q is listed twice", ErrBadManifest, i, e.Path)
		}
		seen[e.Path] = true
	}
	return nil
}

// MarshalText validates m and writes it in `sha256sum -c` form, sorted by
// path. m itself is not reordered.
func (m Manifest) MarshalText() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	entries := slices.Clone(m.Entries)
	slices.SortFunc(entries, func(a, b ManifestEntry) int { return strings.Compare(a.Path, b.Path) })
	var buf bytes.Buffer
	for _, e := range entries {
		buf.WriteString(e.SHA256)
		buf.WriteString("  ")
		buf.WriteString(e.Path)
		buf.WriteByte('\n')
	}
	if buf.Len() > MaxManifestSize {
		return nil, fmt.Errorf("%w: manifest is %d bytes; the limit is %d", ErrTooLarge, buf.Len(), MaxManifestSize)
	}
	return buf.Bytes(), nil
}

// UnmarshalText is ParseManifest.
func (m *Manifest) UnmarshalText(text []byte) error {
	p, err := ParseManifest(text)
	if err != nil {
		return err
	}
	*m = p
	return nil
}

// ParseManifest reads a manifest in the canonical form MarshalText writes
// and refuses anything else with an error wrapping ErrBadManifest that
// names the line: blank lines, CR LF line ends, a missing final newline,
// binary-mode '*' markers, uppercase or malformed hex, backslash-escaped
// names, unsafe paths, and paths out of order or listed twice.
func ParseManifest(data []byte) (Manifest, error) {
	switch {
	case len(data) > MaxManifestSize:
		return Manifest{}, fmt.Errorf("%w: manifest is %d bytes; the limit is %d", ErrTooLarge, len(data), MaxManifestSize)
	case len(data) == 0:
		return Manifest{}, fmt.Errorf("%w: it is empty; a bundle lists at least one file", ErrBadManifest)
	case !utf8.Valid(data):
		return Manifest{}, fmt.Errorf("%w: it is not valid UTF-8", ErrBadManifest)
	case data[len(data)-1] != '\n':
		return Manifest{}, fmt.Errorf("%w: the last line does not end in a newline", ErrBadManifest)
	}
	lines := bytes.Split(data[:len(data)-1], []byte("\n"))
	m := Manifest{Entries: make([]ManifestEntry, 0, len(lines))}
	for i, line := range lines {
		n := i + 1
		switch {
		case len(line) == 0:
			return Manifest{}, fmt.Errorf("%w: line %d is blank", ErrBadManifest, n)
		case line[0] == '\\':
			return Manifest{}, fmt.Errorf("%w: line %d has an escaped file name (it starts with \\); bundle paths never contain backslashes or newlines", ErrBadManifest, n)
		case bytes.HasSuffix(line, []byte("\r")):
			return Manifest{}, fmt.Errorf("%w: line %d ends in CR LF; lines end in LF only", ErrBadManifest, n)
		case len(line) < 66 || !isSHA256Hex(string(line[:64])):
			return Manifest{}, fmt.Errorf("%w: line %d does not start with a SHA-256 of 64 lowercase hex digits; lines are \"<sha256>  <path>\"", ErrBadManifest, n)
		case line[64] != ' ' || line[65] == '*':
			return Manifest{}, fmt.Errorf("%w: line %d: separate the SHA-256 from the path with two spaces (text mode, no '*')", ErrBadManifest, n)
		case line[65] != ' ':
			return Manifest{}, fmt.Errorf("%w: line %d: separate the SHA-256 from the path with two spaces", ErrBadManifest, n)
		}
		e := ManifestEntry{SHA256: string(line[:64]), Path: string(line[66:])}
		if err := checkManifestPath(e.Path); err != nil {
			return Manifest{}, fmt.Errorf("%w: line %d: path %q %s", ErrBadManifest, n, e.Path, err.Error())
		}
		if i > 0 {
			switch prev := m.Entries[i-1].Path; strings.Compare(prev, e.Path) {
			case 0:
				return Manifest{}, fmt.Errorf("%w: line %d: path %q is listed twice", ErrBadManifest, n, e.Path)
			case 1:
				return Manifest{}, fmt.Errorf("%w: line %d: path %q comes before %q; lines are sorted by path in byte order", ErrBadManifest, n, e.Path, prev)
			}
		}
		m.Entries = append(m.Entries, e)
	}
	return m, nil
}

// checkManifestPath returns an error whose text completes "path %q ...".
func checkManifestPath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("is empty")
	case len(p) > maxManifestPath:
		return fmt.Errorf("is %d bytes long; the limit is %d", len(p), maxManifestPath)
	case !utf8.ValidString(p):
		return fmt.Errorf("is not valid UTF-8")
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("is absolute; bundle paths are relative to the bundle")
	case strings.ContainsRune(p, '\\'):
		return fmt.Errorf("contains a backslash; use / between components and no backslash in names")
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("contains the control character %q", r)
		}
	}
	for c := range strings.SplitSeq(p, "/") {
		switch c {
		case "":
			return fmt.Errorf("has an empty component (// or a trailing /)")
		case ".", "..":
			return fmt.Errorf("has a %q component; bundle paths stay inside the bundle", c)
		}
	}
	return nil
}
