package heads

import (
	"errors"
	"testing"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multihash"
)

func TestRoundTrip(t *testing.T) {
	pre := cid.Prefix{Version: 1, Codec: cid.DagProtobuf, MhType: multihash.SHA2_256, MhLength: -1}
	a, _ := pre.Sum([]byte("a"))
	b0, _ := pre.Sum([]byte("b"))
	in := []cid.Cid{a, b0}
	b, err := Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) {
		t.Fatalf("got %d heads, want %d", len(out), len(in))
	}
	for i := range in {
		if !out[i].Equals(in[i]) {
			t.Fatalf("head %d: got %s, want %s", i, out[i], in[i])
		}
	}
	if none, err := Encode(nil); err != nil || len(none) != 0 {
		t.Fatalf("Encode(nil) = %x, %v", none, err)
	}
}

func TestDecodeRefusesJunk(t *testing.T) {
	for _, junk := range [][]byte{{0xff}, {0x0a, 0x03, 0x0a, 0x01, 0x00}} {
		if _, err := Decode(junk); !errors.Is(err, ErrMalformed) {
			t.Errorf("Decode(%x) = %v, want ErrMalformed", junk, err)
		}
	}
}
