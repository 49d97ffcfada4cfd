// Package heads is the one codec of head announcements: a replica's DAG
// heads in go-ds-crdt's broadcast format (pb.CRDTBroadcast). The mesh
// publishes and exchanges them as opaque bytes and decodes them only to
// coalesce a peer's pending announcements (mesh/inbox.go); the crdt
// package makes and reads them (crdt.EncodeHeads, crdt.DecodeHeads, which
// call this package).
package heads

import (
	"errors"
	"fmt"

	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-ds-crdt/pb"
	"google.golang.org/protobuf/proto"
)

// ErrMalformed is wrapped by every error of Decode.
var ErrMalformed = errors.New("bad heads announcement")

// Encode encodes heads in go-ds-crdt's broadcast format.
func Encode(heads []cid.Cid) ([]byte, error) {
	msg := &pb.CRDTBroadcast{}
	for _, h := range heads {
		msg.Heads = append(msg.Heads, &pb.Head{Cid: h.Bytes()})
	}
	return proto.Marshal(msg)
}

// Decode decodes a go-ds-crdt broadcast into its heads.
func Decode(data []byte) ([]cid.Cid, error) {
	msg := &pb.CRDTBroadcast{}
	if err := proto.Unmarshal(data, msg); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	out := make([]cid.Cid, 0, len(msg.Heads))
	for _, h := range msg.Heads {
		c, err := cid.Cast(h.Cid)
		if err != nil {
			return nil, fmt.Errorf("%w: a head: %w", ErrMalformed, err)
		}
		out = append(out, c)
	}
	return out, nil
}
