package node

// Result bundles and archive duties (issue 8). One goroutine, the
// bundler, owned by the node (started by Start, stopped by Close before
// the replicas close), runs a round whenever a relevant record changes and
// every BundleConfig.Interval:
//
//   - on a VM, for every result of an execution this VM ran that has no
//     bundle yet, it builds the bundle (package bundle), seals it with age to
//     the organisation's archive and central peers (policy.SealRecipients
//     over the memberships it has seen, remembered across restarts so a VM
//     cut off from the archive can still seal), stores the sealed payload as
//     a UnixFS DAG of raw blocks in the node's blockstore (served to peers by
//     bitswap), and writes the small BundleMeta record and its own Custody
//     record;
//   - on a VM, for every other bundle of its organisation, it fetches the
//     blocks from whichever peer has them and writes a Custody record: a
//     bundle survives its VM;
//   - on an archive, for every bundle, it fetches the blocks, checks every
//     block against its hash, unseals the payload with its node key,
//     verifies the archive (manifest, checksums, signature with the key in
//     the signer's peer ID) and that it is the bundle BundleMeta describes,
//     written by the VM that ran the execution; then it pins it and writes a
//     BundleReceipt. A bundle failing that is kept aside, with the reason,
//     and not receipted. With a TSA configured it then asks for an RFC 3161
//     token over the archive's SHA-256 and keeps the .tsq and .tsr;
//   - on an archive, retention deletes the payload of expired bundles
//     (blocks and time-stamp files) and writes a RetentionRecord; the
//     BundleMeta stays;
//   - on a VM configured to, a copy is dropped once a receipt for that exact
//     SHA-256 has replicated to it (and on any node once retention deleted
//     the bundle).
//
// What each node did with each bundle (made, held, pinned, failed,
// dropped, time-stamp) is local state under /node/bundles/ in the node's
// datastore, outside every replica.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/boxo/blockservice"
	chunker "github.com/ipfs/boxo/chunker"
	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/boxo/ipld/unixfs/importer/balanced"
	"github.com/ipfs/boxo/ipld/unixfs/importer/helpers"
	uio "github.com/ipfs/boxo/ipld/unixfs/io"
	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/examnode/examnode/bundle"
	"github.com/examnode/examnode/crdt"
	"github.com/examnode/examnode/policy"
	"github.com/examnode/examnode/schema"
)

// Bundle errors.
var (
	ErrNoBundle     = errors.New("node: no such bundle")
	ErrNotReadable  = errors.New("node: this node cannot read the bundle")
	ErrPayloadGone  = errors.New("node: the bundle's payload is not held here")
	errNotAvailable = errors.New("node: bundle blocks not available yet")
)

const chunkSize = 256 << 10

var (
	bundleStatePrefix = ds.NewKey("/node/bundles")
	bundleStampPrefix = ds.NewKey("/node/bundle-stamps")
	recipientPrefix   = ds.NewKey("/node/recipients")
)

// bundleState is what this node did with one bundle.
type bundleState struct {
	Root   string `json:"root,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
	// Made: this node built the bundle. Held: all its blocks are here.
	Made bool `json:"made,omitempty"`
	Held bool `json:"held,omitempty"`
	// Pinned: an archive verified and receipted it.
	Pinned bool `json:"pinned,omitempty"`
	// Failed: an archive's reason for not receipting it (kept aside).
	Failed   string    `json:"failed,omitempty"`
	FailedAt time.Time `json:"failed_at,omitzero"`
	Dropped  time.Time `json:"dropped,omitzero"`
	// Deleted: retention deleted the payload here, under Rule.
	Deleted    time.Time         `json:"deleted,omitzero"`
	Rule       string            `json:"rule,omitempty"`
	Stamp      *bundle.Timestamp `json:"stamp,omitempty"`
	StampError string            `json:"stamp_error,omitempty"`
}

// bundler is the node's bundle worker.
type bundler struct {
	n      *Node
	cfg    BundleConfig
	clock  func() time.Time
	kick   chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	http   *http.Client

	rounds atomic.Uint64

	mu      sync.Mutex
	retry   map[string]time.Time // org/id → next fetch attempt
	waiting map[string]bool      // org/id of bundles waiting for a recipient, logged once
	tries   map[string]int
}

func (n *Node) startBundles() {
	clock := n.deps.BundleClock
	if clock == nil {
		clock = n.now
	}
	ctx, cancel := context.WithCancel(n.ctx)
	b := &bundler{
		n: n, cfg: n.cfg.Bundles, clock: clock, kick: make(chan struct{}, 1),
		ctx: ctx, cancel: cancel, http: &http.Client{Timeout: 30 * time.Second},
		retry: map[string]time.Time{}, tries: map[string]int{}, waiting: map[string]bool{},
	}
	n.bundles.Store(b)
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		b.loop()
	}()
}

// stop ends the worker and waits for it. Safe twice.
func (b *bundler) stop() {
	b.cancel()
	b.wg.Wait()
	b.http.CloseIdleConnections()
}

// kickBundles asks for a round after a change of key (from the replicas'
// hooks: must not block).
func (n *Node) kickBundles(key string) {
	b := n.bundles.Load()
	if b == nil {
		return
	}
	for _, k := range []schema.Kind{schema.KindResults, schema.KindBundles, schema.KindBundleReceipts, schema.KindRetentionRecords, schema.KindExecutions} {
		if strings.HasPrefix(key, "/"+string(k)+"/") {
			b.poke()
			return
		}
	}
}

func (b *bundler) poke() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// loop runs rounds on kicks and ticks, at most one per interval/10 so that
// a burst of replicated records (a catch-up) does not rescan without end.
func (b *bundler) loop() {
	t := time.NewTicker(b.cfg.interval())
	defer t.Stop()
	gap := time.NewTimer(0)
	defer gap.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-gap.C:
		}
		b.round()
		gap.Reset(b.cfg.interval() / 10)
		select {
		case <-b.ctx.Done():
			return
		case <-b.kick:
		case <-t.C:
		}
	}
}

// BundleRounds counts the bundle worker's completed rounds (tests wait
// on it rather than on time).
func (n *Node) BundleRounds() uint64 {
	if b := n.bundles.Load(); b != nil {
		return b.rounds.Load()
	}
	return 0
}

// BundleRecipients lists the peers this node seals org's bundles to now.
func (n *Node) BundleRecipients(ctx context.Context, org string) ([]string, error) {
	return n.sealRecipients(ctx, org)
}

// round does the work each organisation needs now.
func (b *bundler) round() {
	n := b.n
	defer b.rounds.Add(1)
	b.learnRecipients()
	for _, org := range n.Orgs() {
		if b.ctx.Err() != nil {
			return
		}
		rep, err := n.Replica(org)
		if err != nil {
			continue
		}
		if err := b.roundOrg(org, rep); err != nil && b.ctx.Err() == nil {
			n.log.Warn("bundle round failed", "org", org, "err", err)
		}
	}
}

// bundleSnapshot is one round's snapshot of an organisation's bundle
// records (not a "view": that word is the crdt package's verified view).
type bundleSnapshot struct {
	metas     []schema.Record
	holders   map[string][]schema.Custody
	receipts  map[string][]schema.BundleReceipt
	deletions map[string]schema.RetentionRecord
}

func (b *bundler) snapshot(ctx context.Context, rep *crdt.Replica) (bundleSnapshot, error) {
	v := bundleSnapshot{holders: map[string][]schema.Custody{}, receipts: map[string][]schema.BundleReceipt{}, deletions: map[string]schema.RetentionRecord{}}
	var err error
	if v.metas, err = listRecords(ctx, rep, schema.KindBundles); err != nil {
		return v, err
	}
	cs, err := listRecords(ctx, rep, schema.KindCustody)
	if err != nil {
		return v, err
	}
	for _, r := range cs {
		if body, err := r.DecodeBody(); err == nil {
			c := body.(schema.Custody)
			v.holders[c.Bundle] = append(v.holders[c.Bundle], c)
		}
	}
	rs, err := listRecords(ctx, rep, schema.KindBundleReceipts)
	if err != nil {
		return v, err
	}
	for _, r := range rs {
		if body, err := r.DecodeBody(); err == nil {
			c := body.(schema.BundleReceipt)
			v.receipts[c.Bundle] = append(v.receipts[c.Bundle], c)
		}
	}
	ds, err := listRecords(ctx, rep, schema.KindRetentionRecords)
	if err != nil {
		return v, err
	}
	for _, r := range ds {
		if body, err := r.DecodeBody(); err == nil {
			c := body.(schema.RetentionRecord)
			v.deletions[c.Bundle] = c
		}
	}
	return v, nil
}

func (b *bundler) roundOrg(org string, rep *crdt.Replica) error {
	ctx := b.ctx
	cfg := b.n.cfg
	if cfg.Has(schema.RoleVM) {
		if err := b.makeBundles(ctx, org, rep); err != nil {
			return err
		}
	}
	v, err := b.snapshot(ctx, rep)
	if err != nil {
		return err
	}
	// Bundles are handled by up to bundleWorkers at once, so that one whose
	// blocks no reachable peer has (the fetch waits for its timeout) does
	// not hold up the others.
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, bundleWorkers)
	)
	for _, rec := range v.metas {
		body, err := rec.DecodeBody()
		if err != nil {
			continue
		}
		meta, id := body.(schema.BundleMeta), rec.ID
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			err := b.handle(ctx, org, rep, id, meta, v)
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// bundleWorkers bounds the bundles one round handles at once.
const bundleWorkers = 4

// handle does this node's part for one bundle.
func (b *bundler) handle(ctx context.Context, org string, rep *crdt.Replica, id string, meta schema.BundleMeta, v bundleSnapshot) error {
	cfg := b.n.cfg
	st, err := b.state(ctx, org, id)
	if err != nil {
		return err
	}
	if _, deleted := v.deletions[id]; deleted {
		return b.dropCopy(ctx, org, id, &st, "retention deleted it")
	}
	switch {
	case cfg.Has(schema.RoleArchive):
		return errors.Join(b.archive(ctx, org, rep, id, meta, &st), b.retain(ctx, org, rep, id, meta, &st))
	case cfg.Has(schema.RoleVM):
		err := b.custody(ctx, org, rep, id, meta, &st, v.holders[id])
		if cfg.Bundles.DropAfterReceipt && st.Held && slices.ContainsFunc(v.receipts[id], func(r schema.BundleReceipt) bool { return r.SHA256 == meta.SHA256 }) {
			err = errors.Join(err, b.dropCopy(ctx, org, id, &st, "an archive receipted SHA-256 "+meta.SHA256))
		}
		return err
	}
	return nil
}

// ---- local state ----

func stateKey(org, id string) ds.Key { return bundleStatePrefix.ChildString(org).ChildString(id) }

func (b *bundler) state(ctx context.Context, org, id string) (bundleState, error) {
	return loadBundleState(ctx, b.n.store.Datastore(), org, id)
}

func loadBundleState(ctx context.Context, d ds.Datastore, org, id string) (bundleState, error) {
	var st bundleState
	v, err := d.Get(ctx, stateKey(org, id))
	if errors.Is(err, ds.ErrNotFound) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(v, &st)
}

func (b *bundler) save(ctx context.Context, org, id string, st bundleState) error {
	v, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := b.n.store.Datastore().Put(ctx, stateKey(org, id), v); err != nil {
		return err
	}
	return b.n.store.Sync(ctx)
}

func stampKey(org, id, ext string) ds.Key {
	return bundleStampPrefix.ChildString(org).ChildString(id + ext)
}

// due reports whether a fetch of org/id may be tried now; fail pushes the
// next try back (exponentially, up to ten times the interval).
func (b *bundler) due(org, id string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.clock().Before(b.retry[org+"/"+id])
}

func (b *bundler) fail(org, id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := org + "/" + id
	b.tries[k]++
	wait := time.Duration(b.tries[k]) * time.Second
	wait = min(wait, 10*b.cfg.interval())
	b.retry[k] = b.clock().Add(wait)
}

// noteWaiting reports whether org/id was not yet noted as waiting for a
// recipient, and notes it.
func (b *bundler) noteWaiting(org, id string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := org + "/" + id
	first := !b.waiting[k]
	b.waiting[k] = true
	return first
}

func (b *bundler) succeed(org, id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.retry, org+"/"+id)
	delete(b.tries, org+"/"+id)
}

// ---- records ----

// writeOwn writes a record this node makes itself (bundle metadata,
// custody, receipts, retention records), with the checks the record API
// applies; writing the same record again is a no-op.
func (n *Node) writeOwn(ctx context.Context, rep *crdt.Replica, id string, body schema.Body) error {
	rec, err := schema.NewRecord(rep.Org(), id, body)
	if err != nil {
		return err
	}
	enc, err := schema.Encode(rec)
	if err != nil {
		return err
	}
	key := rec.Key()
	unlock := n.lockRecord(rep.Org(), key)
	defer unlock()
	prev, err := getRecord(ctx, rep, key)
	if err != nil && !errors.Is(err, crdt.ErrNotFound) {
		return err
	}
	outcome, err := schema.CheckWrite(prev, rec)
	if err != nil {
		return err
	}
	if outcome == schema.OutcomeNoOp {
		return nil
	}
	// On a gated node the record is signed and checked like one written
	// through the API, with the rules receivers run.
	stored, err := n.signRecord(ctx, enc)
	if err != nil {
		return err
	}
	if err := n.checkSend(ctx, rep, key, stored); err != nil {
		return err
	}
	return rep.Put(ctx, key, stored)
}

// ---- recipients ----

// knownRecipient is a central or archive peer this node has seen, kept so
// that a VM can seal while cut off from them.
type knownRecipient struct {
	Peer    string   `json:"peer"`
	Role    string   `json:"role"`
	Orgs    []string `json:"orgs,omitempty"`
	AllOrgs bool     `json:"all_orgs,omitempty"`
	// Membership is the printable membership, on a gated node.
	Membership string `json:"membership,omitempty"`
}

// learnRecipients records, under /node/recipients/<peer>, the central and
// archive peers of the peer book (and, on a gated node, every verified
// membership), so that they outlive the connection and the process.
func (b *bundler) learnRecipients() {
	d := b.n.store.Datastore()
	for _, kr := range b.n.meshRecipients() {
		v, _ := json.Marshal(kr)
		k := recipientPrefix.ChildString(kr.Peer)
		if old, err := d.Get(b.ctx, k); err == nil && bytes.Equal(old, v) {
			continue
		}
		_ = d.Put(b.ctx, k, v)
	}
}

// meshRecipients lists what the peer book says of possible recipients:
// every verified membership, so an archive can check a bundle's signer
// after its VM is gone (knownRecipients keeps only central and archive
// ones). An open node lists none: a role a peer announces without an
// authority's membership proves nothing (any LAN peer may claim to be the
// archive), so an open mesh never seals to one.
func (n *Node) meshRecipients() []knownRecipient {
	m := n.mesh
	if m == nil || !m.Gated() {
		return nil
	}
	var out []knownRecipient
	for _, p := range m.Peers() {
		if !m.Gated() && !slices.Contains(p.Roles, string(schema.RoleArchive)) && !slices.Contains(p.Roles, string(schema.RoleCentral)) {
			continue
		}
		id, err := peer.Decode(p.ID)
		if err != nil {
			continue
		}
		kr := knownRecipient{Peer: p.ID, Orgs: p.Orgs}
		if m.Gated() {
			mb, ok := m.PeerMembership(id)
			if !ok {
				continue
			}
			kr = knownRecipient{Peer: mb.Peer, Role: string(mb.Role), Orgs: mb.Orgs, AllOrgs: mb.AllOrgs, Membership: mb.String()}
		} else {
			kr.Role = string(schema.RoleArchive)
			if slices.Contains(p.Roles, string(schema.RoleCentral)) {
				kr.Role = string(schema.RoleCentral)
			}
		}
		out = append(out, kr)
	}
	return out
}

// knownMembership is peer p's membership: the one it presented on its
// connection, or the one this node remembers from an earlier one.
func (n *Node) knownMembership(ctx context.Context, p peer.ID) (policy.Membership, bool) {
	if mb, ok := n.mesh.PeerMembership(p); ok {
		return mb, true
	}
	v, err := n.store.Datastore().Get(ctx, recipientPrefix.ChildString(p.String()))
	if err != nil {
		return policy.Membership{}, false
	}
	var kr knownRecipient
	if json.Unmarshal(v, &kr) != nil || kr.Membership == "" {
		return policy.Membership{}, false
	}
	mb, err := policy.ParseMembership(kr.Membership)
	return mb, err == nil
}

// sealRecipients lists the peers org's bundles are sealed to:
// policy.SealRecipients over the central and archive peers this node
// knows (knownRecipients).
func (n *Node) sealRecipients(ctx context.Context, org string) ([]string, error) {
	members, err := n.knownRecipients(ctx)
	if err != nil {
		return nil, err
	}
	return policy.SealRecipients(org, members), nil
}

// knownRecipients returns the memberships of the central and archive peers
// this node knows, for sealing bundles and result bodies: those remembered
// under /node/recipients and those in its peer book now (so that a result
// written just after central connected, before a bundle round remembered
// it, is sealed to central). Only memberships the authority signed and
// that are valid now count: an open node has no recipient at all (it
// stores results in clear, and makes no bundle), whatever roles peers
// announce or it remembers from before.
//
// The peers of the node's configuration (Config.Peers) count once their
// role is known this way, from their membership or hello: the
// configuration names a peer's address and ID but not its role, and
// sealing to a peer of unknown role could hand a result to another VM.
func (n *Node) knownRecipients(ctx context.Context) ([]policy.Membership, error) {
	res, err := n.store.Datastore().Query(ctx, query.Query{Prefix: recipientPrefix.String()})
	if err != nil {
		return nil, err
	}
	defer res.Close()
	known := n.meshRecipients()
	for e := range res.Next() {
		if e.Error != nil {
			return nil, e.Error
		}
		var kr knownRecipient
		if json.Unmarshal(e.Value, &kr) == nil {
			known = append(known, kr)
		}
	}
	trust := n.trust
	if trust == nil {
		return nil, nil
	}
	members := make([]policy.Membership, 0, len(known))
	for _, kr := range known {
		if kr.Role != string(schema.RoleCentral) && kr.Role != string(schema.RoleArchive) {
			continue // not a recipient: skip the signature check (a gated node remembers every VM too)
		}
		mb, err := policy.ParseMembership(kr.Membership)
		if err == nil && policy.Verify(mb, *trust, n.now()) == nil {
			members = append(members, mb)
		}
	}
	return members, nil
}

// ---- making bundles (VM) ----

func (b *bundler) makeBundles(ctx context.Context, org string, rep *crdt.Replica) error {
	n := b.n
	results, err := listRecords(ctx, rep, schema.KindResults)
	if err != nil {
		return err
	}
	var logs map[string][]schema.Record
	var errs []error
	for _, res := range results {
		body, err := res.DecodeBody()
		if err != nil {
			continue
		}
		exID := body.(schema.Result).Execution
		if has, err := rep.Has(ctx, schema.Key(schema.KindBundles, exID)); err != nil || has {
			continue
		}
		exRec, err := getRecord(ctx, rep, schema.Key(schema.KindExecutions, exID))
		if err != nil {
			continue
		}
		eb, err := exRec.DecodeBody()
		if err != nil {
			continue
		}
		ex := eb.(schema.Execution)
		if ex.VM != n.ID().String() || !ex.State.Final() {
			continue
		}
		if logs == nil {
			if logs, err = logsByExecution(ctx, rep); err != nil {
				return err
			}
		}
		// The bundle holds the result in clear (it is sealed as a whole):
		// this VM wrote it, so it is one of its recipients.
		clear, err := n.openOwn(res)
		if err != nil {
			errs = append(errs, fmt.Errorf("bundle of execution %s: %w", exID, err))
			continue
		}
		if err := b.makeBundle(ctx, rep, *exRec, clear, logs[exID]); err != nil {
			errs = append(errs, fmt.Errorf("bundle of execution %s: %w", exID, err))
		}
	}
	return errors.Join(errs...)
}

func logsByExecution(ctx context.Context, rep *crdt.Replica) (map[string][]schema.Record, error) {
	all, err := listRecords(ctx, rep, schema.KindResultLogs)
	if err != nil {
		return nil, err
	}
	out := map[string][]schema.Record{}
	for _, r := range all {
		if body, err := r.DecodeBody(); err == nil {
			e := body.(schema.ResultLog).Execution
			out[e] = append(out[e], r)
		}
	}
	return out, nil
}

// BundleFiles lays out an execution's records as bundle files:
// execution.json, result.json and result-logs/<id>.json, each the record's
// canonical encoding.
func BundleFiles(exec, result schema.Record, logs []schema.Record) ([]bundle.File, error) {
	var files []bundle.File
	add := func(path string, r schema.Record) error {
		enc, err := schema.Encode(r)
		if err != nil {
			return err
		}
		files = append(files, bundle.File{Path: path, Data: enc})
		return nil
	}
	if err := add("execution.json", exec); err != nil {
		return nil, err
	}
	if err := add("result.json", result); err != nil {
		return nil, err
	}
	for _, l := range logs {
		if err := add("result-logs/"+l.ID+".json", l); err != nil {
			return nil, err
		}
	}
	return files, nil
}

func (b *bundler) makeBundle(ctx context.Context, rep *crdt.Replica, exec, result schema.Record, logs []schema.Record) error {
	n := b.n
	org := rep.Org()
	recips, err := n.sealRecipients(ctx, org)
	if err != nil {
		return err
	}
	if len(recips) == 0 {
		switch first := b.noteWaiting(org, exec.ID); {
		case first && n.cfg.Authority == "":
			n.log.Warn("no bundle: this node runs open (no authority) and an open mesh seals to no peer, since any peer may claim to be an archive; gate the mesh (examnode init --authority)", "org", org, "execution", exec.ID)
		case first:
			n.log.Info("bundle waits for a recipient: no archive or central peer of the organisation seen yet", "org", org, "execution", exec.ID)
		}
		return nil
	}
	files, err := BundleFiles(exec, result, logs)
	if err != nil {
		return err
	}
	// No attachment may arrive between reading them and sealing.
	unlock := n.lockAttachments(org, exec.ID)
	defer unlock()
	attached, err := n.attachments(ctx, org, exec.ID, true)
	if err != nil {
		return err
	}
	files = append(files, attached...)
	var plain bytes.Buffer
	info, err := bundle.Build(&plain, bundle.Input{Execution: exec.ID, Created: n.now(), Files: files}, n.key)
	if err != nil {
		return err
	}
	var sealed bytes.Buffer
	if err := bundle.Seal(&sealed, plain.Bytes(), recips); err != nil {
		return err
	}
	root, err := n.storePayload(ctx, org, sealed.Bytes())
	if err != nil {
		return err
	}
	st := bundleState{Root: root.String(), SHA256: info.SHA256, Made: true, Held: true}
	if err := b.save(ctx, org, exec.ID, st); err != nil {
		return err
	}
	meta := schema.BundleMeta{
		Execution: exec.ID, SHA256: info.SHA256, Size: info.Size, Signer: info.Signer,
		Created: info.Created, Root: root.String(),
	}
	if err := n.writeOwn(ctx, rep, exec.ID, meta); err != nil {
		return err
	}
	if err := n.dropAttachments(ctx, org, exec.ID, attached); err != nil {
		return err
	}
	n.log.Info("bundle sealed", "org", org, "execution", exec.ID, "sha256", info.SHA256, "size", info.Size, "root", root, "recipients", recips)
	return n.writeOwn(ctx, rep, schema.CustodyID(exec.ID, n.ID().String()),
		schema.Custody{Bundle: exec.ID, Holder: n.ID().String(), At: n.now()})
}

// storePayload stores data as a balanced UnixFS DAG of raw 256 KiB leaves
// (CIDv1) in org's blockstore; bitswap serves it to peers that may read org.
func (n *Node) storePayload(ctx context.Context, org string, data []byte) (cid.Cid, error) {
	params := helpers.DagBuilderParams{
		Maxlinks: helpers.DefaultLinksPerBlock, RawLeaves: true,
		CidBuilder: merkledag.V1CidPrefix(), Dagserv: n.orgDAG(org),
	}
	db, err := params.New(chunker.NewSizeSplitter(bytes.NewReader(data), chunkSize))
	if err != nil {
		return cid.Undef, err
	}
	nd, err := balanced.Layout(db)
	if err != nil {
		return cid.Undef, fmt.Errorf("node: store bundle blocks: %w", err)
	}
	return nd.Cid(), n.store.Sync(ctx)
}

// ---- fetching, checking, reading and deleting payloads ----

// fetchPayload fetches every block of org's bundle root not yet here (as
// org's) from connected peers (bitswap).
func (b *bundler) fetchPayload(ctx context.Context, org string, root cid.Cid) error {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.fetchTimeout())
	defer cancel()
	if err := merkledag.FetchGraph(ctx, root, b.n.orgDAG(org)); err != nil {
		return fmt.Errorf("%w: %w", errNotAvailable, err)
	}
	return b.n.store.Sync(ctx)
}

// payloadBlocks walks root's DAG in the local blockstore only, checking
// every block against its CID's hash, and lists the blocks.
func (n *Node) payloadBlocks(ctx context.Context, root cid.Cid) ([]cid.Cid, error) {
	bs := n.store.Blockstore()
	var out []cid.Cid
	seen := map[cid.Cid]bool{}
	var walk func(c cid.Cid) error
	walk = func(c cid.Cid) error {
		if seen[c] {
			return nil
		}
		seen[c] = true
		blk, err := bs.Get(ctx, c)
		if err != nil {
			return fmt.Errorf("%w: block %s: %w", ErrPayloadGone, c, err)
		}
		sum, err := c.Prefix().Sum(blk.RawData())
		if err != nil || !sum.Equals(c) {
			return fmt.Errorf("block %s does not match its hash", c)
		}
		out = append(out, c)
		if c.Type() != cid.DagProtobuf {
			return nil
		}
		nd, err := merkledag.DecodeProtobuf(blk.RawData())
		if err != nil {
			return fmt.Errorf("block %s: %w", c, err)
		}
		for _, l := range nd.Links() {
			if err := walk(l.Cid); err != nil {
				return err
			}
		}
		return nil
	}
	return out, walk(root)
}

// readPayload reads root's sealed payload from the local blockstore.
func (n *Node) readPayload(ctx context.Context, root cid.Cid) ([]byte, error) {
	dag := merkledag.NewDAGService(blockservice.New(n.store.Blockstore(), nil)) // local only
	nd, err := dag.Get(ctx, root)
	if err != nil {
		return nil, err
	}
	r, err := uio.NewDagReader(ctx, nd, dag)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

// deletePayload deletes org's copy of root's payload: a block another
// organisation also holds stays for it.
func (n *Node) deletePayload(ctx context.Context, org string, root cid.Cid) error {
	cs, err := n.payloadBlocks(ctx, root)
	if err != nil && !errors.Is(err, ErrPayloadGone) {
		// A damaged block is deleted too: list what is reachable.
		n.log.Warn("deleting a damaged bundle payload", "root", root, "err", err)
	}
	bs := n.store.OrgBlockstore(org)
	for _, c := range cs {
		if err := bs.DeleteBlock(ctx, c); err != nil {
			return err
		}
	}
	return n.store.Sync(ctx)
}

// ---- custody (VM) ----

func (b *bundler) custody(ctx context.Context, org string, rep *crdt.Replica, id string, meta schema.BundleMeta, st *bundleState, holders []schema.Custody) error {
	n := b.n
	if st.Held || !st.Dropped.IsZero() || !b.due(org, id) {
		return nil
	}
	root, err := cid.Decode(meta.Root)
	if err != nil {
		return nil
	}
	if err := b.fetchPayload(ctx, org, root); err != nil {
		b.fail(org, id)
		n.log.Debug("bundle copy not fetched yet", "org", org, "bundle", id, "err", err)
		return nil
	}
	if _, err := n.payloadBlocks(ctx, root); err != nil {
		b.fail(org, id)
		return err
	}
	b.succeed(org, id)
	st.Root, st.SHA256, st.Held = meta.Root, meta.SHA256, true
	if err := b.save(ctx, org, id, *st); err != nil {
		return err
	}
	me := n.ID().String()
	if slices.ContainsFunc(holders, func(c schema.Custody) bool { return c.Holder == me }) {
		return nil
	}
	n.log.Info("holding a copy of a bundle", "org", org, "bundle", id)
	return n.writeOwn(ctx, rep, schema.CustodyID(id, me), schema.Custody{Bundle: id, Holder: me, At: n.now()})
}

// dropCopy deletes this node's copy of a bundle's payload.
func (b *bundler) dropCopy(ctx context.Context, org, id string, st *bundleState, why string) error {
	if !st.Held && !st.Pinned {
		return nil
	}
	root, err := cid.Decode(st.Root)
	if err != nil {
		return nil
	}
	if err := b.n.deletePayload(ctx, org, root); err != nil {
		return err
	}
	st.Held, st.Pinned, st.Dropped = false, false, b.clock()
	b.n.log.Info("dropped a bundle copy", "org", org, "bundle", id, "why", why)
	return b.save(ctx, org, id, *st)
}

// ---- archive ----

func (b *bundler) archive(ctx context.Context, org string, rep *crdt.Replica, id string, meta schema.BundleMeta, st *bundleState) error {
	n := b.n
	if st.Pinned {
		return b.stamp(ctx, org, id, st)
	}
	if st.Failed != "" || !st.Deleted.IsZero() || !b.due(org, id) {
		return nil
	}
	root, err := cid.Decode(meta.Root)
	if err != nil {
		return b.reject(ctx, org, id, st, fmt.Sprintf("root %q is not a CID", meta.Root))
	}
	if err := b.fetchPayload(ctx, org, root); err != nil {
		b.fail(org, id)
		n.log.Debug("bundle not fetched yet", "org", org, "bundle", id, "err", err)
		return nil
	}
	b.succeed(org, id)
	st.Root, st.SHA256, st.Held = meta.Root, meta.SHA256, true
	if reason := b.check(ctx, org, rep, id, meta, root); reason != "" {
		return b.reject(ctx, org, id, st, reason)
	}
	st.Pinned = true
	if err := b.save(ctx, org, id, *st); err != nil {
		return err
	}
	me := n.ID().String()
	if err := n.writeOwn(ctx, rep, schema.ReceiptID(id, me), schema.BundleReceipt{Bundle: id, SHA256: meta.SHA256, Archive: me, At: n.now()}); err != nil {
		return err
	}
	n.log.Info("bundle archived", "org", org, "bundle", id, "sha256", meta.SHA256)
	return b.stamp(ctx, org, id, st)
}

// check verifies an archived bundle; it returns why it fails, or "".
func (b *bundler) check(ctx context.Context, org string, rep *crdt.Replica, id string, meta schema.BundleMeta, root cid.Cid) string {
	n := b.n
	if _, err := n.payloadBlocks(ctx, root); err != nil {
		return "blocks: " + err.Error()
	}
	sealed, err := n.readPayload(ctx, root)
	if err != nil {
		return "payload: " + err.Error()
	}
	plain, err := bundle.Unseal(sealed, n.key)
	if err != nil {
		return "sealing: " + err.Error()
	}
	a, err := bundle.Open(plain)
	if err != nil {
		return err.Error()
	}
	switch {
	case a.Info.SHA256 != meta.SHA256:
		return fmt.Sprintf("the archive's SHA-256 is %s; the bundle record says %s", a.Info.SHA256, meta.SHA256)
	case a.Info.Size != meta.Size:
		return fmt.Sprintf("the archive is %d bytes; the bundle record says %d", a.Info.Size, meta.Size)
	case a.Info.Signer != meta.Signer:
		return fmt.Sprintf("the manifest is signed by %s; the bundle record names %s", a.Info.Signer, meta.Signer)
	case a.Info.Execution != id || meta.Execution != id:
		return fmt.Sprintf("the archive is of execution %s; the bundle record is %s", a.Info.Execution, id)
	}
	if exRec, err := getRecord(ctx, rep, schema.Key(schema.KindExecutions, id)); err == nil {
		if eb, err := exRec.DecodeBody(); err == nil && eb.(schema.Execution).VM != meta.Signer {
			return fmt.Sprintf("execution %s ran on VM %s, but its bundle is signed by %s", id, eb.(schema.Execution).VM, meta.Signer)
		}
	}
	// On a gated node: the signer's membership, if this node ever saw it,
	// must be a vm membership of org, signed by the authority and valid
	// when the bundle was made. A signer never seen here is accepted on
	// the strength of its bundle record, which the replica accepted.
	if trust := n.trust; trust != nil {
		if p, err := peer.Decode(meta.Signer); err == nil {
			if mb, ok := n.knownMembership(ctx, p); ok {
				if err := policy.Verify(mb, *trust, meta.Created); err != nil {
					return fmt.Sprintf("the signer %s's membership was not valid when the bundle was made: %v", meta.Signer, err)
				}
				if mb.Role != schema.RoleVM || !mb.Covers(org) {
					return fmt.Sprintf("the signer %s has no vm membership for %s (%s)", meta.Signer, org, mb.Describe())
				}
			}
		}
	}
	return ""
}

// reject keeps a bundle aside, unreceipted, with the reason.
func (b *bundler) reject(ctx context.Context, org, id string, st *bundleState, reason string) error {
	st.Failed, st.FailedAt = reason, b.n.now()
	b.n.log.Warn("bundle failed verification; kept aside, not receipted", "org", org, "bundle", id, "reason", reason)
	return b.save(ctx, org, id, *st)
}

// ---- retention (archive) ----

func (b *bundler) retain(ctx context.Context, org string, rep *crdt.Replica, id string, meta schema.BundleMeta, st *bundleState) error {
	if !st.Deleted.IsZero() {
		return nil
	}
	rule, err := b.cfg.rule(org)
	if err != nil {
		return err
	}
	now := b.clock()
	if !policy.Expired(meta.Created, rule, now) {
		return nil
	}
	if root, err := cid.Decode(meta.Root); err == nil {
		if err := b.n.deletePayload(ctx, org, root); err != nil {
			return err
		}
	}
	d := b.n.store.Datastore()
	for _, ext := range []string{".tsq", ".tsr"} {
		if err := d.Delete(ctx, stampKey(org, id, ext)); err != nil {
			return err
		}
	}
	st.Held, st.Pinned, st.Deleted, st.Rule = false, false, now, rule.String()
	if err := b.save(ctx, org, id, *st); err != nil {
		return err
	}
	b.n.log.Info("retention deleted a bundle's payload", "org", org, "bundle", id, "rule", rule.String())
	return b.n.writeOwn(ctx, rep, id, schema.RetentionRecord{Bundle: id, Rule: rule.String(), DeletedAt: now})
}
