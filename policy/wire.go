package policy

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// The binary encodings (see the package documentation, "Encodings").
// Every statement starts with a 4-byte magic naming what it is, so a
// signature over one kind of statement is never valid for another, then a
// big-endian uint16 format version. Integers are big-endian and of fixed
// width, strings carry a uint16 length, times are int64 Unix nanoseconds,
// lists are sorted: every value has exactly one encoding.
const (
	magicMembership = "EXMB"
	magicRevocation = "EXRV"
	magicSigned     = "EXSR"

	sigSize = ed25519.SignatureSize
)

var magicNames = map[string]string{
	magicMembership: "a membership",
	magicRevocation: "a revocation",
	magicSigned:     "a signed record",
}

// Serial identifies one membership: 16 random bytes chosen by Grant. The
// zero Serial is no membership; in a revocation it means "every membership
// of the peer".
type Serial [16]byte

// String is the serial as 32 lowercase hex digits.
func (s Serial) String() string { return hex.EncodeToString(s[:]) }

// IsZero reports whether s is the zero serial.
func (s Serial) IsZero() bool { return s == Serial{} }

// ParseSerial reads 32 lowercase hex digits, as String writes them.
func ParseSerial(text string) (Serial, error) {
	var s Serial
	if len(text) != 2*len(s) || strings.ToLower(text) != text {
		return s, fmt.Errorf("%w serial %q: a serial is 32 lowercase hex digits", ErrMalformed, text)
	}
	if _, err := hex.Decode(s[:], []byte(text)); err != nil {
		return Serial{}, fmt.Errorf("%w serial %q: a serial is 32 lowercase hex digits", ErrMalformed, text)
	}
	return s, nil
}

type encoder struct{ b []byte }

func (e *encoder) raw(p []byte)     { e.b = append(e.b, p...) }
func (e *encoder) u8(v uint8)       { e.b = append(e.b, v) }
func (e *encoder) u16(v uint16)     { e.b = binary.BigEndian.AppendUint16(e.b, v) }
func (e *encoder) u32(v uint32)     { e.b = binary.BigEndian.AppendUint32(e.b, v) }
func (e *encoder) u64(v uint64)     { e.b = binary.BigEndian.AppendUint64(e.b, v) }
func (e *encoder) time(t time.Time) { e.u64(uint64(t.UnixNano())) }

// str writes a uint16 length and the bytes. Values longer than the format
// allows are cut, which no decoder accepts and no signature covers: the
// validating constructors never produce them.
func (e *encoder) str(s string) {
	if len(s) > math.MaxUint16 {
		s = s[:math.MaxUint16]
	}
	e.u16(uint16(len(s)))
	e.b = append(e.b, s...)
}

func (e *encoder) bool(v bool) {
	if v {
		e.u8(1)
	} else {
		e.u8(0)
	}
}

// decoder reads what encoder writes. The first error sticks; every read
// after it returns a zero value.
type decoder struct {
	b    []byte
	off  int
	what string // "membership", for messages
	err  error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w %s: %s", ErrMalformed, d.what, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) take(n int, field string) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || len(d.b)-d.off < n {
		d.fail("truncated at %s (byte %d)", field, d.off)
		return nil
	}
	p := d.b[d.off : d.off+n]
	d.off += n
	return p
}

func (d *decoder) u8(field string) uint8 {
	if p := d.take(1, field); p != nil {
		return p[0]
	}
	return 0
}

func (d *decoder) u16(field string) uint16 {
	if p := d.take(2, field); p != nil {
		return binary.BigEndian.Uint16(p)
	}
	return 0
}

func (d *decoder) u32(field string) uint32 {
	if p := d.take(4, field); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}

func (d *decoder) u64(field string) uint64 {
	if p := d.take(8, field); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}

func (d *decoder) time(field string) time.Time {
	return time.Unix(0, int64(d.u64(field))).UTC()
}

func (d *decoder) bool(field string) bool {
	switch d.u8(field) {
	case 0:
		return false
	case 1:
		return true
	}
	d.fail("%s is neither 0 nor 1", field)
	return false
}

func (d *decoder) str(field string, max int) string {
	n := int(d.u16(field))
	if d.err == nil && n > max {
		d.fail("%s is %d bytes long; the limit is %d", field, n, max)
		return ""
	}
	return string(d.take(n, field))
}

func (d *decoder) serial(field string) Serial {
	var s Serial
	copy(s[:], d.take(len(s), field))
	return s
}

// header checks the magic and reads the format version; a version other
// than want is refused before anything else is read, since a newer layout
// may differ in every other way.
func (d *decoder) header(magic string, want int) int {
	m := d.take(len(magic), "magic")
	if d.err != nil {
		return 0
	}
	if string(m) != magic {
		if name, ok := magicNames[string(m)]; ok {
			d.fail("this is %s, not %s", name, magicNames[magic])
		} else {
			d.fail("does not start with %q: this is not %s", magic, magicNames[magic])
		}
		return 0
	}
	v := int(d.u16("version"))
	if d.err == nil && v != want {
		d.err = versionErr(d.what+" format", v, want)
	}
	return v
}

// finish refuses trailing bytes.
func (d *decoder) finish() error {
	if d.err == nil && d.off != len(d.b) {
		d.fail("%d bytes of trailing data after byte %d", len(d.b)-d.off, d.off)
	}
	return d.err
}

func versionErr(what string, got, want int) error {
	if got > want {
		return fmt.Errorf("%w: %s version %d is not supported by this node (it reads version %d); upgrade examnode on this node",
			ErrUnsupportedVersion, what, got, want)
	}
	return fmt.Errorf("%w: %s version %d is not supported by this node (it reads version %d); re-issue it with this version of examnode",
		ErrUnsupportedVersion, what, got, want)
}

// splitSig splits an encoding into its statement and its trailing
// signature.
func splitSig(b []byte) (stmt, sig []byte) {
	if len(b) < sigSize {
		return b, nil
	}
	return b[:len(b)-sigSize], bytes.Clone(b[len(b)-sigSize:])
}

// Printable forms: a prefix naming the thing, then unpadded base64url.

func printable(prefix string, b []byte) string {
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

// parsePrintable strips prefix and decodes strictly: only the base64url
// alphabet, no padding, no whitespace, no stray bits, so that every value
// has exactly one printable form.
func parsePrintable(text, prefix, what string) ([]byte, error) {
	rest, ok := strings.CutPrefix(text, prefix)
	if !ok {
		return nil, fmt.Errorf("%w %s: %q does not start with %q", ErrMalformed, what, abbreviate(text), prefix)
	}
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return nil, fmt.Errorf("%w %s: character %q at %d is not base64url; copy the whole value without spaces or line breaks",
				ErrMalformed, what, c, len(prefix)+i)
		}
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(rest)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %v; copy the whole value", ErrMalformed, what, err)
	}
	return b, nil
}

func abbreviate(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// Field rules shared by the statements.

const (
	maxName   = 64  // network and organisation IDs
	maxPeerID = 128 // text form of a peer ID
	maxReason = 512 // revocation reason, bytes
)

// checkName: a network name, 1 to 64 of A-Z a-z 0-9 . _ - (the rule of
// organisation IDs: network names appear in topic names).
func checkName(field, v string) error {
	if v == "" || len(v) > maxName || v == "." || v == ".." {
		return fmt.Errorf("%w %s %q: use 1 to %d characters of A-Z a-z 0-9 . _ -", ErrInvalid, field, v, maxName)
	}
	for _, c := range []byte(v) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%w %s %q: use 1 to %d characters of A-Z a-z 0-9 . _ -", ErrInvalid, field, v, maxName)
		}
	}
	return nil
}

// checkPeer: a libp2p peer ID in its canonical text form (as
// peer.ID.String writes it) that embeds an Ed25519 public key, so that
// signatures can be checked from the ID alone.
func checkPeer(field, v string) error {
	if _, err := peerKey(v); err != nil {
		return fmt.Errorf("%w %s: %w", ErrInvalid, field, err)
	}
	return nil
}

// peerKey returns the Ed25519 public key embedded in a canonical peer ID.
func peerKey(v string) (crypto.PubKey, error) {
	if v == "" || len(v) > maxPeerID {
		return nil, fmt.Errorf("peer ID %q: use the peer ID `examnode id` prints (12D3KooW…)", abbreviate(v))
	}
	id, err := peer.Decode(v)
	if err != nil {
		return nil, fmt.Errorf("peer ID %q: %v", abbreviate(v), err)
	}
	if id.String() != v {
		return nil, fmt.Errorf("peer ID %q: write it as %s", abbreviate(v), id)
	}
	pk, err := id.ExtractPublicKey()
	if err != nil || pk.Type() != crypto.Ed25519 {
		return nil, fmt.Errorf("peer ID %s does not embed an Ed25519 key; examnode nodes use Ed25519 identities", v)
	}
	return pk, nil
}

// checkText: printable UTF-8 of at most max bytes, no control characters.
func checkText(field, v string, max int) error {
	if len(v) > max || !utf8.ValidString(v) {
		return fmt.Errorf("%w %s: use at most %d bytes of UTF-8 text", ErrInvalid, field, max)
	}
	for _, r := range v {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w %s: contains the control character %q; use printable text", ErrInvalid, field, r)
		}
	}
	return nil
}

// checkTime: a time the encoding can carry (int64 Unix nanoseconds: the
// years 1678 to 2262) and not the zero time.
func checkTime(field string, t time.Time) error {
	if t.IsZero() || !time.Unix(0, t.UnixNano()).Equal(t) {
		return fmt.Errorf("%w %s: %s is not a time between the years 1678 and 2262", ErrInvalid, field, t.Format(time.RFC3339))
	}
	return nil
}

// utc drops the monotonic reading and the location, as a decoder would.
func utc(t time.Time) time.Time { return t.Round(0).UTC() }
