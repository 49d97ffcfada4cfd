package bundle_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/examnode/examnode/bundle"
)

func peerID(t testing.TB, k crypto.PrivKey) string {
	t.Helper()
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return id.String()
}

func TestSealOpensOnlyForRecipients(t *testing.T) {
	arch, central, vm := newKey(t), newKey(t), newKey(t)
	data, _ := build(t, vm, sampleInput())
	var sealed bytes.Buffer
	if err := bundle.Seal(&sealed, data, []string{peerID(t, arch), peerID(t, central)}); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed.Bytes(), []byte("result.json")) {
		t.Fatal("the sealed payload shows its content")
	}
	for _, k := range []crypto.PrivKey{arch, central} {
		got, err := bundle.Unseal(sealed.Bytes(), k)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("a recipient cannot unseal: %v", err)
		}
	}
	if _, err := bundle.Unseal(sealed.Bytes(), vm); !errors.Is(err, bundle.ErrNotRecipient) {
		t.Fatalf("the VM unsealed, or the wrong error: %v", err)
	}
	b := bytes.Clone(sealed.Bytes())
	b[len(b)-5] ^= 1
	if _, err := bundle.Unseal(b, arch); err == nil {
		t.Fatal("a damaged payload unsealed")
	}
	if err := bundle.Seal(&bytes.Buffer{}, data, nil); !errors.Is(err, bundle.ErrInvalid) {
		t.Fatalf("sealing to nobody: %v", err)
	}
	if err := bundle.Seal(&bytes.Buffer{}, data, []string{"not-a-peer"}); !errors.Is(err, bundle.ErrInvalid) {
		t.Fatalf("sealing to a bad peer ID: %v", err)
	}
}
