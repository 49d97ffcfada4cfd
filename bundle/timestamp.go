package bundle

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"

	"github.com/digitorus/timestamp"
)

// TimestampRequest makes an RFC 3161 time-stamp request (DER, the .tsq
// file) over an archive whose SHA-256 is sum: SHA-256 message imprint, a
// random nonce, and the authority's certificate asked for in the token (so
// `openssl ts -verify -CAfile` needs only the root).
func TimestampRequest(sum string) ([]byte, error) {
	digest, err := hex.DecodeString(sum)
	if err != nil || len(digest) != 32 {
		return nil, fmt.Errorf("%w: %q is not a SHA-256 of 64 hex digits", ErrInvalid, sum)
	}
	nonce, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return nil, err
	}
	req := timestamp.Request{HashAlgorithm: crypto.SHA256, HashedMessage: digest, Certificates: true, Nonce: nonce}
	return req.Marshal()
}

// Timestamp is what a time-stamp token says.
type Timestamp struct {
	Time   string `json:"time"` // RFC 3339
	Serial string `json:"serial"`
	// Authority is the subject of the certificate that signed the token.
	Authority string `json:"authority,omitempty"`
}

// CheckTimestamp parses an RFC 3161 response (the .tsr file), checks its
// signature against the certificate it carries, that it answers tsq (if
// given: same imprint and nonce) and that it is over the archive of SHA-256
// sum. It does not check the authority's certificate chain: that is
// `openssl ts -verify -CAfile`'s job, with the authority's root.
func CheckTimestamp(tsr, tsq []byte, sum string) (Timestamp, error) {
	ts, err := timestamp.ParseResponse(tsr)
	if err != nil {
		return Timestamp{}, fmt.Errorf("not a valid time-stamp response: %w", err)
	}
	if ts.HashAlgorithm != crypto.SHA256 {
		return Timestamp{}, fmt.Errorf("the token's imprint uses %v; bundles are stamped with SHA-256", ts.HashAlgorithm)
	}
	if got := hex.EncodeToString(ts.HashedMessage); got != sum {
		return Timestamp{}, fmt.Errorf("the token is over SHA-256 %s, not the archive's %s", got, sum)
	}
	if tsq != nil {
		req, err := timestamp.ParseRequest(tsq)
		if err != nil {
			return Timestamp{}, fmt.Errorf("%s is not a valid time-stamp request: %w", TSQName, err)
		}
		if !bytes.Equal(req.HashedMessage, ts.HashedMessage) {
			return Timestamp{}, fmt.Errorf("%s asks for SHA-256 %x, the token is over %x", TSQName, req.HashedMessage, ts.HashedMessage)
		}
		if req.Nonce != nil && (ts.Nonce == nil || req.Nonce.Cmp(ts.Nonce) != 0) {
			return Timestamp{}, fmt.Errorf("the token's nonce does not answer %s", TSQName)
		}
	}
	out := Timestamp{Time: ts.Time.UTC().Format("2006-01-02T15:04:05.999999999Z07:00")}
	if ts.SerialNumber != nil {
		out.Serial = ts.SerialNumber.String()
	}
	if len(ts.Certificates) > 0 {
		out.Authority = ts.Certificates[0].Subject.String()
	}
	return out, nil
}

// CheckRequest parses a time-stamp request (the .tsq file) and checks that
// it asks for a SHA-256 imprint of the archive of SHA-256 sum.
func CheckRequest(tsq []byte, sum string) (*timestamp.Request, error) {
	req, err := timestamp.ParseRequest(tsq)
	if err != nil {
		return nil, fmt.Errorf("not a valid time-stamp request: %w", err)
	}
	if req.HashAlgorithm != crypto.SHA256 || hex.EncodeToString(req.HashedMessage) != sum {
		return nil, fmt.Errorf("it asks for %v %x, not the archive's SHA-256 %s", req.HashAlgorithm, req.HashedMessage, sum)
	}
	return req, nil
}
