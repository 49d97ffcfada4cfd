package crdt

// The block index: which organisations each block belongs to.
//
// Every organisation's blocks share one content-addressed blockstore
// (/blocks/...), so a block's bytes say nothing about whose they are. A
// node may give a block only to a peer allowed to read an organisation the
// block belongs to, and decides that per block; the index is what it
// decides from. An index entry is an empty value at
//
//	/blockorgs/<multihash key>/<org>
//
// (keyed by multihash, as the blockstore is), written in the same badger
// batch as the block by the organisation's blockstore (OrgBlockstore):
// every block that enters a node for an organisation (a local go-ds-crdt
// delta, a bundle payload, a block fetched by bitswap through the
// organisation's blockservice, a block of a bulk pull) goes through it. A
// block with no index entry belongs to no organisation and is served to
// nobody.
//
// Identical content in two organisations is one block with two entries.
// An organisation's Has is true only for blocks indexed for it, so the
// blockservice and the bulk pull fetch (and so index) a block that is
// present for another organisation only. Its Get, though, reads any local
// block without indexing it: a local read gives nothing away, and a block
// the organisation's DAG merely links to (a member of C2 who learnt the
// CID of a block of C1 can write a C2 delta that links to it) must not
// become C2's by being read.
//
// A store written before the index (or a replica opened for the first
// time) is indexed by IndexOrg, which walks the organisation's DAG from
// the roots it is given (the replica's heads, the bundle payloads it
// holds) and then writes /blockindexed/<org>, so it runs once.

import (
	"context"
	"fmt"

	"github.com/ipfs/boxo/blockstore"
	dshelp "github.com/ipfs/boxo/datastore/dshelp"
	"github.com/ipfs/boxo/ipld/merkledag"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
	ipld "github.com/ipfs/go-ipld-format"
)

var (
	blockOrgsPrefix    = ds.NewKey("/blockorgs")
	blockIndexedPrefix = ds.NewKey("/blockindexed")
)

// rawBlockKey is where the shared blockstore keeps c's data.
func rawBlockKey(c cid.Cid) ds.Key {
	return blockstore.BlockPrefix.Child(dshelp.MultihashToDsKey(c.Hash()))
}

func blockOrgsKey(c cid.Cid) ds.Key {
	return blockOrgsPrefix.Child(dshelp.MultihashToDsKey(c.Hash()))
}

func blockOrgKey(c cid.Cid, org string) ds.Key { return blockOrgsKey(c).ChildString(org) }

// BlockInOrg reports whether block c is indexed as belonging to org.
func (s *Store) BlockInOrg(ctx context.Context, c cid.Cid, org string) (bool, error) {
	ok, err := s.ds.Has(ctx, blockOrgKey(c, org))
	return ok, classify(err)
}

// BlockOrgs lists the organisations block c belongs to (none for a block
// this node does not hold, or holds unindexed).
func (s *Store) BlockOrgs(ctx context.Context, c cid.Cid) ([]string, error) {
	prefix := blockOrgsKey(c)
	res, err := s.ds.Query(ctx, query.Query{Prefix: prefix.String(), KeysOnly: true})
	if err != nil {
		return nil, classify(err)
	}
	defer res.Close()
	var orgs []string
	for e := range res.Next() {
		if e.Error != nil {
			return nil, classify(e.Error)
		}
		k := ds.RawKey(e.Key)
		if k.Parent() != prefix {
			continue
		}
		orgs = append(orgs, k.BaseNamespace())
	}
	return orgs, nil
}

// OrgBlockstore is org's view of the shared blockstore: what it puts is
// stored and indexed as org's in one batch, Has is true only for blocks
// indexed for org, Get reads any local block, and DeleteBlock removes
// org's entry and deletes the block once no organisation holds it. See
// the top of this file.
func (s *Store) OrgBlockstore(org string) blockstore.Blockstore {
	return &orgBlockstore{s: s, org: org}
}

type orgBlockstore struct {
	s   *Store
	org string
}

func (b *orgBlockstore) Has(ctx context.Context, c cid.Cid) (bool, error) {
	in, err := b.s.BlockInOrg(ctx, c, b.org)
	if err != nil || !in {
		return false, err
	}
	// Deleted behind the index's back (it should not be): fetch it again.
	return b.s.blocks.Has(ctx, c)
}

func (b *orgBlockstore) Get(ctx context.Context, c cid.Cid) (blocks.Block, error) {
	return b.s.blocks.Get(ctx, c)
}

func (b *orgBlockstore) GetSize(ctx context.Context, c cid.Cid) (int, error) {
	return b.s.blocks.GetSize(ctx, c)
}

func (b *orgBlockstore) Put(ctx context.Context, blk blocks.Block) error {
	return b.PutMany(ctx, []blocks.Block{blk})
}

// PutMany stores the blocks and org's index entries in one batch; a block
// already present (for any organisation) is not written again.
func (b *orgBlockstore) PutMany(ctx context.Context, bs []blocks.Block) error {
	if len(bs) == 0 {
		return nil
	}
	batch, err := b.s.ds.Batch(ctx)
	if err != nil {
		return classify(err)
	}
	for _, blk := range bs {
		c := blk.Cid()
		k := rawBlockKey(c)
		has, err := b.s.ds.Has(ctx, k)
		if err != nil {
			return classify(err)
		}
		if !has {
			if err := batch.Put(ctx, k, blk.RawData()); err != nil {
				return classify(err)
			}
		}
		if err := batch.Put(ctx, blockOrgKey(c, b.org), nil); err != nil {
			return classify(err)
		}
	}
	return classify(batch.Commit(ctx))
}

// DeleteBlock removes org's index entry for c and deletes the block itself
// once no other organisation's entry remains.
func (b *orgBlockstore) DeleteBlock(ctx context.Context, c cid.Cid) error {
	orgs, err := b.s.BlockOrgs(ctx, c)
	if err != nil {
		return err
	}
	others := false
	for _, o := range orgs {
		if o != b.org {
			others = true
		}
	}
	batch, err := b.s.ds.Batch(ctx)
	if err != nil {
		return classify(err)
	}
	if err := batch.Delete(ctx, blockOrgKey(c, b.org)); err != nil {
		return classify(err)
	}
	if !others {
		if err := batch.Delete(ctx, rawBlockKey(c)); err != nil {
			return classify(err)
		}
	}
	return classify(batch.Commit(ctx))
}

// AllKeysChan lists the blocks indexed for org.
func (b *orgBlockstore) AllKeysChan(ctx context.Context) (<-chan cid.Cid, error) {
	all, err := b.s.blocks.AllKeysChan(ctx)
	if err != nil {
		return nil, err
	}
	out := make(chan cid.Cid)
	go func() {
		defer close(out)
		for c := range all {
			if in, err := b.s.BlockInOrg(ctx, c, b.org); err != nil || !in {
				continue
			}
			select {
			case out <- c:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// IndexOrg indexes as org's every local block reachable from roots, once:
// after the first run (even with no roots: a new organisation) it writes a
// marker and later calls do nothing. It returns how many blocks it
// indexed. Blocks not held here are skipped (the replica fetches them
// through OrgBlockstore, which indexes them).
func (s *Store) IndexOrg(ctx context.Context, org string, roots []cid.Cid) (int, error) {
	if err := ValidateOrg(org); err != nil {
		return 0, err
	}
	marker := blockIndexedPrefix.ChildString(org)
	done, err := s.ds.Has(ctx, marker)
	if err != nil || done {
		return 0, classify(err)
	}
	batch, err := s.ds.Batch(ctx)
	if err != nil {
		return 0, classify(err)
	}
	n, pending := 0, 0
	seen := map[cid.Cid]bool{}
	stack := append([]cid.Cid(nil), roots...)
	for len(stack) > 0 {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		c := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[c] {
			continue
		}
		seen[c] = true
		blk, err := s.blocks.Get(ctx, c)
		if ipld.IsNotFound(err) {
			continue
		}
		if err != nil {
			return n, fmt.Errorf("crdt: index %s's blocks: %w", org, classify(err))
		}
		if err := batch.Put(ctx, blockOrgKey(c, org), nil); err != nil {
			return n, classify(err)
		}
		n++
		if pending++; pending >= 1024 {
			if err := batch.Commit(ctx); err != nil {
				return n, classify(err)
			}
			if batch, err = s.ds.Batch(ctx); err != nil {
				return n, classify(err)
			}
			pending = 0
		}
		if c.Type() != cid.DagProtobuf {
			continue
		}
		nd, err := merkledag.DecodeProtobuf(blk.RawData())
		if err != nil {
			continue
		}
		for _, l := range nd.Links() {
			if !seen[l.Cid] {
				stack = append(stack, l.Cid)
			}
		}
	}
	if err := batch.Put(ctx, marker, nil); err != nil {
		return n, classify(err)
	}
	if err := batch.Commit(ctx); err != nil {
		return n, classify(err)
	}
	return n, s.Sync(ctx)
}
