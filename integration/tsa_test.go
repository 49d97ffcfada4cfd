package integration

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/digitorus/timestamp"
)

// TSA is a local RFC 3161 time-stamping authority on 127.0.0.1 for tests:
// its own self-signed CA issues the signing certificate (extended key usage
// timeStamping, critical), and github.com/digitorus/timestamp builds the
// responses. `openssl ts -verify -CAfile <CAFile>` accepts its tokens.
type TSA struct {
	URL    string
	CAFile string // PEM of the CA certificate
	// Requests counts the requests answered.
	Requests atomic.Uint64

	srv  *http.Server
	ln   net.Listener
	cert *x509.Certificate
	key  *rsa.PrivateKey
	done chan struct{}
}

// StartTSA starts an authority whose CA certificate is written under dir.
func StartTSA(dir string) (*TSA, error) {
	caKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "examnode test TSA root"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	// RFC 3161 wants the extended key usage timeStamping alone and
	// critical; Go's x509 never marks it critical, so it goes in as is.
	eku, err := asn1.Marshal([]asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 8}})
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "examnode test TSA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 37}, Critical: true, Value: eku}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	if !criticalEKU(cert) {
		return nil, errors.New("integration: the TSA certificate's extended key usage is not critical")
	}
	caFile := filepath.Join(dir, "tsa-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	t := &TSA{URL: "http://" + ln.Addr().String() + "/", CAFile: caFile, ln: ln, cert: cert, key: key, done: make(chan struct{})}
	t.srv = &http.Server{Handler: http.HandlerFunc(t.serve), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		defer close(t.done)
		_ = t.srv.Serve(ln)
	}()
	return t, nil
}

// criticalEKU reports whether the EKU extension is critical; RFC 3161
// requires it and openssl checks it.
func criticalEKU(c *x509.Certificate) bool {
	for _, e := range c.Extensions {
		if e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 37}) {
			return e.Critical
		}
	}
	return false
}

func (t *TSA) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST a time-stamp query", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	req, err := timestamp.ParseRequest(body)
	if err != nil {
		http.Error(w, fmt.Sprintf("bad query: %v", err), http.StatusBadRequest)
		return
	}
	ts := timestamp.Timestamp{
		HashAlgorithm: req.HashAlgorithm, HashedMessage: req.HashedMessage,
		Time: time.Now().UTC(), Nonce: req.Nonce, Policy: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1},
		Accuracy: time.Second, AddTSACertificate: req.Certificates,
	}
	resp, err := ts.CreateResponseWithOpts(t.cert, t.key, crypto.SHA256)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	t.Requests.Add(1)
	w.Header().Set("Content-Type", "application/timestamp-reply")
	_, _ = w.Write(resp)
}

// Close stops the authority. Safe twice.
func (t *TSA) Close() error {
	err := t.srv.Close()
	<-t.done
	return err
}
