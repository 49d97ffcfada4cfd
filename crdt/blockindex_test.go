package crdt

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/ipfs/boxo/blockservice"
	chunker "github.com/ipfs/boxo/chunker"
	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/boxo/ipld/unixfs/importer/balanced"
	"github.com/ipfs/boxo/ipld/unixfs/importer/helpers"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
)

// orgDAG is the DAG service a node gives org's replica: over org's
// blockstore, so that every block it writes is indexed as org's.
func orgDAG(s *Store, org string) ipld.DAGService {
	return merkledag.NewDAGService(blockservice.New(s.OrgBlockstore(org), nil))
}

func blockOrgs(t *testing.T, s *Store, c cid.Cid) []string {
	t.Helper()
	orgs, err := s.BlockOrgs(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(orgs)
	return orgs
}

func allBlocks(t *testing.T, s *Store) []cid.Cid {
	t.Helper()
	ch, err := s.Blockstore().AllKeysChan(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out []cid.Cid
	for c := range ch {
		out = append(out, c)
	}
	return out
}

// A block put through an organisation's blockstore is stored and indexed
// as that organisation's only; another organisation's Has says no (so its
// blockservice fetches and indexes it) while its Get reads it.
func TestOrgBlockstorePutIndexes(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	defer s.Close()
	c1, c2 := s.OrgBlockstore("C1"), s.OrgBlockstore("C2")
	blk := blocks.NewBlock([]byte("marker-C1-secret"))
	if err := c1.Put(ctx, blk); err != nil {
		t.Fatal(err)
	}
	if got := blockOrgs(t, s, blk.Cid()); !slices.Equal(got, []string{"C1"}) {
		t.Fatalf("BlockOrgs = %v, want [C1]", got)
	}
	if in, _ := s.BlockInOrg(ctx, blk.Cid(), "C1"); !in {
		t.Fatal("BlockInOrg(C1) = false")
	}
	if in, _ := s.BlockInOrg(ctx, blk.Cid(), "C2"); in {
		t.Fatal("BlockInOrg(C2) = true for a block put only as C1's")
	}
	if has, _ := c1.Has(ctx, blk.Cid()); !has {
		t.Fatal("C1's Has = false")
	}
	if has, _ := c2.Has(ctx, blk.Cid()); has {
		t.Fatal("C2's Has = true for a block not indexed for C2")
	}
	if has, _ := s.Blockstore().Has(ctx, blk.Cid()); !has {
		t.Fatal("the shared blockstore lacks the block")
	}
	got, err := c2.Get(ctx, blk.Cid())
	if err != nil || !bytes.Equal(got.RawData(), blk.RawData()) {
		t.Fatalf("C2's Get = %v, %v", got, err)
	}
	// Reading did not make it C2's.
	if got := blockOrgs(t, s, blk.Cid()); !slices.Equal(got, []string{"C1"}) {
		t.Fatalf("after C2's Get, BlockOrgs = %v, want [C1]", got)
	}
	// A block of no organisation.
	other := blocks.NewBlock([]byte("unindexed"))
	if err := s.Blockstore().Put(ctx, other); err != nil {
		t.Fatal(err)
	}
	if got := blockOrgs(t, s, other.Cid()); len(got) != 0 {
		t.Fatalf("BlockOrgs of an unindexed block = %v", got)
	}
	// C1's listing holds its own block only.
	ch, err := c1.AllKeysChan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var listed []cid.Cid
	for c := range ch {
		listed = append(listed, c)
	}
	if len(listed) != 1 || !bytes.Equal(listed[0].Hash(), blk.Cid().Hash()) {
		t.Fatalf("C1's AllKeysChan = %v, want [%s]", listed, blk.Cid())
	}
}

// Identical content in two organisations is one block indexed for both: a
// blockservice over the second organisation's blockstore does not skip it
// because the first holds it, and deleting it for one keeps it for the other.
func TestOrgBlockstoreSharedBlock(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	defer s.Close()
	blk := blocks.NewBlock([]byte("the same revocation in every organisation"))
	for _, org := range []string{"C1", "C2"} {
		if err := blockservice.New(s.OrgBlockstore(org), nil).AddBlock(ctx, blk); err != nil {
			t.Fatal(err)
		}
	}
	if got := blockOrgs(t, s, blk.Cid()); !slices.Equal(got, []string{"C1", "C2"}) {
		t.Fatalf("BlockOrgs = %v, want [C1 C2]", got)
	}
	if err := s.OrgBlockstore("C1").DeleteBlock(ctx, blk.Cid()); err != nil {
		t.Fatal(err)
	}
	if got := blockOrgs(t, s, blk.Cid()); !slices.Equal(got, []string{"C2"}) {
		t.Fatalf("after C1's delete, BlockOrgs = %v, want [C2]", got)
	}
	if has, _ := s.OrgBlockstore("C2").Has(ctx, blk.Cid()); !has {
		t.Fatal("C1's delete removed C2's block")
	}
	if err := s.OrgBlockstore("C2").DeleteBlock(ctx, blk.Cid()); err != nil {
		t.Fatal(err)
	}
	if has, _ := s.Blockstore().Has(ctx, blk.Cid()); has {
		t.Fatal("the block outlived its last organisation")
	}
	// PutMany indexes every block in one batch.
	bs := []blocks.Block{blocks.NewBlock([]byte("a")), blocks.NewBlock([]byte("b")), blocks.NewBlock([]byte("a"))}
	if err := s.OrgBlockstore("C3").PutMany(ctx, bs); err != nil {
		t.Fatal(err)
	}
	for _, b := range bs {
		if got := blockOrgs(t, s, b.Cid()); !slices.Equal(got, []string{"C3"}) {
			t.Fatalf("PutMany: BlockOrgs(%s) = %v", b.Cid(), got)
		}
	}
}

// A replica over its organisation's DAG service indexes every block it
// writes, and only as its own.
func TestReplicaBlocksIndexed(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	defer s.Close()
	r1 := newReplica(t, s, orgDAG(s, "C1"), nil, "C1")
	defer r1.Close()
	r2 := newReplica(t, s, orgDAG(s, "C2"), nil, "C2")
	defer r2.Close()
	for i := range 5 {
		if err := r1.Put(ctx, fmt.Sprintf("/k/%d", i), []byte("C1-value")); err != nil {
			t.Fatal(err)
		}
		if err := r2.Put(ctx, fmt.Sprintf("/k/%d", i), []byte("C2-value")); err != nil {
			t.Fatal(err)
		}
	}
	all := allBlocks(t, s)
	if len(all) < 10 {
		t.Fatalf("%d blocks for 10 writes", len(all))
	}
	count := map[string]int{}
	for _, c := range all {
		orgs := blockOrgs(t, s, c)
		if len(orgs) != 1 {
			t.Fatalf("block %s belongs to %v, want one organisation", c, orgs)
		}
		count[orgs[0]]++
	}
	if count["C1"] == 0 || count["C2"] == 0 {
		t.Fatalf("blocks by organisation: %v", count)
	}
	for _, h := range r1.Heads(ctx) {
		if got := blockOrgs(t, s, h); !slices.Equal(got, []string{"C1"}) {
			t.Fatalf("C1 head %s belongs to %v", h, got)
		}
	}
}

// A store written before the index (blocks through the shared blockstore)
// is indexed on open by walking each organisation's DAG from its heads,
// once; a block outside the walk stays unindexed.
func TestIndexOrgOnOpen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, dir)
	r := newReplica(t, s, offlineDAG(s), nil, "C1") // the old layout
	for i := range 20 {
		if err := r.Put(ctx, fmt.Sprintf("/k/%d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	stray := blocks.NewBlock([]byte("not in C1's DAG"))
	if err := s.Blockstore().Put(ctx, stray); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, dir)
	defer s.Close()
	r = newReplica(t, s, orgDAG(s, "C1"), nil, "C1")
	defer r.Close()
	all := allBlocks(t, s)
	for _, c := range all {
		if got := blockOrgs(t, s, c); len(got) != 0 {
			t.Fatalf("block %s indexed as %v before IndexOrg", c, got)
		}
	}
	n, err := s.IndexOrg(ctx, "C1", r.Heads(ctx))
	if err != nil {
		t.Fatal(err)
	}
	if n != len(all)-1 {
		t.Fatalf("IndexOrg indexed %d blocks, want %d (every block but the stray one)", n, len(all)-1)
	}
	for _, c := range all {
		got := blockOrgs(t, s, c)
		if bytes.Equal(c.Hash(), stray.Cid().Hash()) { // the listing gives raw CIDs of the multihashes
			if len(got) != 0 {
				t.Fatalf("the stray block was indexed as %v", got)
			}
			continue
		}
		if !slices.Equal(got, []string{"C1"}) {
			t.Fatalf("block %s indexed as %v, want [C1]", c, got)
		}
	}
	// Once only.
	if n, err := s.IndexOrg(ctx, "C1", r.Heads(ctx)); err != nil || n != 0 {
		t.Fatalf("second IndexOrg = %d, %v; want 0, nil", n, err)
	}
	// A new organisation: nothing to walk, marked done.
	if n, err := s.IndexOrg(ctx, "C2", nil); err != nil || n != 0 {
		t.Fatalf("IndexOrg of a new organisation = %d, %v", n, err)
	}
}

// IndexOrg walks a bundle payload's shape too: a balanced UnixFS DAG of
// raw leaves (CIDv1), as the node stores one.
func TestIndexOrgWalksRawLeaves(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	defer s.Close()
	dag := offlineDAG(s) // the old layout: nothing indexed
	params := helpers.DagBuilderParams{Maxlinks: helpers.DefaultLinksPerBlock, RawLeaves: true,
		CidBuilder: merkledag.V1CidPrefix(), Dagserv: dag}
	data := bytes.Repeat([]byte("sealed payload "), 3000) // 45 kB: several 4 kB leaves
	db, err := params.New(chunker.NewSizeSplitter(bytes.NewReader(data), 4096))
	if err != nil {
		t.Fatal(err)
	}
	root, err := balanced.Layout(db)
	if err != nil {
		t.Fatal(err)
	}
	all := allBlocks(t, s)
	if len(all) < 3 {
		t.Fatalf("%d blocks; want a root and leaves", len(all))
	}
	n, err := s.IndexOrg(ctx, "C1", []cid.Cid{root.Cid()})
	if err != nil || n != len(all) {
		t.Fatalf("IndexOrg = %d, %v; want %d", n, err, len(all))
	}
	for _, c := range all {
		if got := blockOrgs(t, s, c); !slices.Equal(got, []string{"C1"}) {
			t.Fatalf("block %s indexed as %v", c, got)
		}
	}
}
