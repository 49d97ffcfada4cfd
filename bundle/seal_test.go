package bundle_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/examnode/examnode/bundle"
	"github.com/examnode/examnode/schema"
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

// TestSealResultOpensOnlyForRecipients seals a result record to an archive
// and the VM that wrote it: both open it to the record in clear, byte for
// byte; another VM of the centre holds a record that validates but cannot
// open it; sealing twice gives different ciphertexts of one plaintext.
func TestSealResultOpensOnlyForRecipients(t *testing.T) {
	arch, writer, other := newKey(t), newKey(t), newKey(t)
	const marker = "SEALED-MARKER-42"
	clear, err := schema.NewRecord("C1", "e1", schema.Result{Execution: "e1", Finished: time.Date(2026, 6, 1, 9, 30, 0, 0, time.UTC),
		Variables: map[string]schema.ResultVariable{
			"SCORE":    {BaseType: "float", Cardinality: "single", Value: []byte("7.5")},
			"RESPONSE": {BaseType: "string", Cardinality: "single", Value: []byte(`"` + marker + `"`)},
		}})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := schema.Encode(clear)
	recips := []string{peerID(t, arch), peerID(t, writer)}
	sealed, err := bundle.SealResult(clear, recips)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := schema.Encode(sealed)
	if err != nil {
		t.Fatalf("the sealed record does not validate: %v", err)
	}
	if bytes.Contains(enc, []byte(marker)) || bytes.Contains(enc, []byte("RESPONSE")) || !bundle.IsSealedResult(sealed) || bundle.IsSealedResult(clear) {
		t.Fatalf("not sealed: %s", enc)
	}
	if !bytes.Contains(enc, []byte(`"execution":"e1"`)) || !bytes.Contains(enc, []byte(`"finished":"2026-06-01T09:30:00Z"`)) {
		t.Fatalf("execution and finish time must stay in clear: %s", enc)
	}
	for _, k := range []crypto.PrivKey{arch, writer} {
		got, err := bundle.OpenResult(sealed, k)
		if err != nil {
			t.Fatal(err)
		}
		if g, _ := schema.Encode(got); !bytes.Equal(g, want) {
			t.Fatalf("opened %s; want %s", g, want)
		}
	}
	if _, err := bundle.OpenResult(sealed, other); !errors.Is(err, bundle.ErrNotRecipient) {
		t.Fatalf("another VM opened the result, or the wrong error: %v", err)
	}
	again, err := bundle.SealResult(clear, recips)
	if err != nil {
		t.Fatal(err)
	}
	if e2, _ := schema.Encode(again); bytes.Equal(e2, enc) {
		t.Fatal("sealing twice gave the same bytes: age is randomised, so idempotence must compare plaintext")
	}
	if got, _ := bundle.OpenResult(again, writer); !bytes.Equal(mustEncode(t, got), want) {
		t.Fatal("the second sealing opens to something else")
	}
	// A result in clear passes through; sealing a sealed one changes nothing.
	if got, err := bundle.OpenResult(clear, other); err != nil || !bytes.Equal(mustEncode(t, got), want) {
		t.Fatalf("OpenResult of a result in clear: %v", err)
	}
	if got, err := bundle.SealResult(sealed, recips); err != nil || !bytes.Equal(mustEncode(t, got), enc) {
		t.Fatalf("SealResult of a sealed result: %v", err)
	}
	// Damaged ciphertext, no recipients, other kinds.
	b, _ := sealed.DecodeBody()
	ct, _ := b.(schema.Result).SealedBytes()
	ct[len(ct)-3] ^= 1
	damaged, err := schema.NewRecord("C1", "e1", b.(schema.Result).WithSealed(ct))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bundle.OpenResult(damaged, arch); err == nil || errors.Is(err, bundle.ErrNotRecipient) {
		t.Fatalf("a damaged result opened, or the wrong error: %v", err)
	}
	if _, err := bundle.SealResult(clear, nil); !errors.Is(err, bundle.ErrInvalid) {
		t.Fatalf("sealing to nobody: %v", err)
	}
	exec, _ := schema.NewRecord("C1", "e1", schema.TestTaker{Login: "tt1"})
	if _, err := bundle.SealResult(exec, recips); !errors.Is(err, bundle.ErrInvalid) {
		t.Fatalf("sealing a test-taker: %v", err)
	}
}

// TestSealResultTooLarge: variables whose sealed form does not fit a
// record are refused with the schema's reason.
func TestSealResultTooLarge(t *testing.T) {
	big := `"` + strings.Repeat("x", schema.MaxSealedResult*3/4) + `"`
	clear, err := schema.NewRecord("C1", "e1", schema.Result{Execution: "e1", Finished: time.Date(2026, 6, 1, 9, 30, 0, 0, time.UTC),
		Variables: map[string]schema.ResultVariable{"ESSAY": {BaseType: "string", Cardinality: "single", Value: []byte(big)}}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = bundle.SealResult(clear, []string{peerID(t, newKey(t))})
	var ve *schema.ValidationError
	if !errors.As(err, &ve) || ve.Field != "body.sealed" || ve.Rule != "length" {
		t.Fatalf("sealing %d bytes of variables: %v; want a body.sealed length error", len(big), err)
	}
}

func mustEncode(t *testing.T, r schema.Record) []byte {
	t.Helper()
	b, err := schema.Encode(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
