package crdt

// Which peers hold a record, judged from the heads they reported.
//
// A go-ds-crdt record is carried by the delta block that added it; the
// set keeps, per key, one element per such block (<ns>/s/s/<key>/<block>).
// A peer that reported heads H (in its last heads exchange, the newest it
// built: mesh.HeadsOf) has processed every block that is an ancestor of, or equal
// to, a head in H: go-ds-crdt makes a block a head only after walking down
// from it to blocks it already had. So a peer holds a record when every
// live element block of the record is reachable downwards from one of the
// peer's heads in this node's own copy of the DAG. The walk reads local
// blocks only (never the network), prunes below the lowest target's
// priority (a block's priority is one more than its highest child's, so no
// ancestor of a block has a higher priority), and gives up, saying "not
// held", after maxWalk blocks.
//
// How many records written here no peer holds yet is Unconfirmed
// (inspect.go), from the same heads.

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	dshelp "github.com/ipfs/boxo/datastore/dshelp"
	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
)

// maxWalk bounds one walk down the DAG from a peer's heads.
const maxWalk = 100_000

// reached returns which targets (by multihash) lie at or below heads in
// the local DAG. targets maps a block's multihash to its priority.
func (r *Replica) reached(ctx context.Context, heads []cid.Cid, targets map[string]uint64) map[string]bool {
	out := map[string]bool{}
	if len(targets) == 0 {
		return out
	}
	low := uint64(1<<63 - 1)
	for _, p := range targets {
		low = min(low, p)
	}
	seen := map[string]bool{}
	stack := slices.Clone(heads)
	for walked := 0; len(stack) > 0 && walked < maxWalk && len(out) < len(targets); walked++ {
		c := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		k := string(c.Hash())
		if seen[k] {
			continue
		}
		seen[k] = true
		if _, ok := targets[k]; ok {
			out[k] = true
		}
		prio, links, err := r.delta(ctx, c)
		if err != nil || prio <= low {
			continue // not here yet, or nothing below can be a target
		}
		stack = append(stack, links...)
	}
	return out
}

// elements returns the live element blocks of key (those not tombstoned)
// with their priorities.
func (r *Replica) elements(ctx context.Context, key string) (map[string]uint64, error) {
	set := Namespace(r.org).ChildString("s")
	live := map[string]uint64{}
	for _, ns := range []string{"s", "t"} {
		prefix := set.ChildString(ns).Child(ds.NewKey(key)).String() + "/"
		res, err := r.store.Datastore().Query(ctx, query.Query{Prefix: prefix, KeysOnly: true})
		if err != nil {
			return nil, err
		}
		for e := range res.Next() {
			if e.Error != nil {
				res.Close()
				return nil, e.Error
			}
			id := strings.TrimPrefix(e.Key, prefix)
			if strings.Contains(id, "/") {
				continue // an element of a longer key
			}
			h, err := dshelp.DsKeyToMultihash(ds.NewKey(id))
			if err != nil {
				continue
			}
			if ns == "t" {
				delete(live, string(h))
				continue
			}
			c := cid.NewCidV1(cid.DagProtobuf, h)
			prio, _, err := r.delta(ctx, c)
			if err != nil {
				res.Close()
				return nil, fmt.Errorf("crdt: %s: element block of %s: %w", r.org, key, err)
			}
			live[string(h)] = prio
		}
		res.Close()
	}
	return live, nil
}

// HeldBy returns the peers, of those in heads (peer → its last reported
// heads), that hold key as this node has it. It returns ErrNotFound if
// this node does not hold key.
func (r *Replica) HeldBy(ctx context.Context, key string, heads map[string][]cid.Cid) ([]string, error) {
	if err := ValidateKey(key); err != nil {
		return nil, err
	}
	if ok, err := r.Has(ctx, key); err != nil {
		return nil, err
	} else if !ok {
		return nil, fmt.Errorf("%w: %s in %s", ErrNotFound, key, r.org)
	}
	targets, err := r.elements(ctx, key)
	if err != nil {
		return nil, err
	}
	out := []string{}
	for p, hs := range heads {
		if len(targets) > 0 && len(r.reached(ctx, hs, targets)) == len(targets) {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out, nil
}
