package node

// Sealed results (issue 6, DESIGN data rule 6).
//
// A result's variables are sealed on the VM that writes the result
// through the API (writeChecked), before the record is signed and stored:
// bundle.SealResult encrypts their JSON with age to policy.ResultRecipients,
//
//   - the organisation's central and archive peers this node knows
//     (knownRecipients, which bundles are sealed to as well: remembered
//     under /node/recipients, or in the peer book now; configured peers
//     count once their role is known), and
//   - the writing node itself, so that it can read its own result, build
//     its bundle from it, and tell an identical re-write (a no-op) from a
//     different one (refused: results are append-only). age is randomised,
//     so the comparison is of the plaintext, after opening the stored
//     record.
//
// Execution and Finished stay in clear: receivers' policy and the
// organisation's rules decide on them. Every VM of the centre holds and
// passes on the sealed record; none but the recipients can read it.
//
// Fallback: when no central or archive peer of the organisation is known
// yet (a VM installed and cut off before it ever met one), the result is
// stored in clear rather than refused, so that the exam is not lost: a
// warning is logged, the result is listed under
// /node/unsealed-results/<org>/<id> (local, never replicated), and the
// status counts them per organisation (ReplicaSummary.ResultsUnsealed). A
// result stored in clear stays so: results are append-only. An operator
// who sees the count rise connects the VM to central before exams.
//
// An open node (no authority) has no recipient at all: a role a peer
// announces is vouched for by nobody (any LAN peer may claim to be the
// archive), so every result it writes is stored in clear and counted the
// same way, and it makes no bundle. Gate the mesh before exams.
//
// Reading: every read path of the API serves a RecordView. On a recipient
// a sealed result is served in clear, with stored_sealed set; on any other
// node it is served as stored, with sealed set and no variables, and the
// request never fails on it. The change feed carries no bodies; resume,
// attachments and the bundle worker's bookkeeping read executions, logs
// and bundle records, never result variables; the bundle builder opens
// the result it puts in a bundle (which is sealed as a whole).

import (
	"context"
	"errors"
	"fmt"

	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"

	"github.com/examnode/examnode/bundle"
	"github.com/examnode/examnode/policy"
	"github.com/examnode/examnode/schema"
)

var unsealedPrefix = ds.NewKey("/node/unsealed-results")

// RecordView is a record as the API serves it: the stored record, except
// that a sealed result is served in clear on a node that is one of its
// recipients. StoredSealed says the result is sealed in the store (its
// body then holds either the variables, opened here, or sealed).
type RecordView struct {
	schema.Record
	StoredSealed bool `json:"stored_sealed,omitempty"`
}

// view is rec as this node serves it: a sealed result opened if this node
// is a recipient, else as stored. It never fails: a result that does not
// open for another reason than not being a recipient is served sealed,
// and logged.
func (n *Node) view(rec schema.Record) RecordView {
	if !bundle.IsSealedResult(rec) {
		return RecordView{Record: rec}
	}
	clear, err := bundle.OpenResult(rec, n.key)
	switch {
	case err == nil:
		return RecordView{Record: clear, StoredSealed: true}
	case !errors.Is(err, bundle.ErrNotRecipient):
		n.log.Warn("a sealed result does not open; served sealed", "org", rec.Org, "id", rec.ID, "err", err)
	}
	return RecordView{Record: rec, StoredSealed: true}
}

// views is view over recs.
func (n *Node) views(recs []schema.Record) []RecordView {
	out := make([]RecordView, len(recs))
	for i, r := range recs {
		out[i] = n.view(r)
	}
	return out
}

// openOwn returns rec in clear, for the node's own use (comparing a
// re-write, building a bundle): a result sealed to this node is opened;
// one it cannot open is an error.
func (n *Node) openOwn(rec schema.Record) (schema.Record, error) {
	if !bundle.IsSealedResult(rec) {
		return rec, nil
	}
	clear, err := bundle.OpenResult(rec, n.key)
	if err != nil {
		return schema.Record{}, fmt.Errorf("node: result %s in %s: %w", rec.ID, rec.Org, err)
	}
	return clear, nil
}

// sealResult returns the form in which this node stores rec, a result in
// clear written through its API: sealed to policy.ResultRecipients (the
// organisation's central and archive peers and this node), or, when no
// recipient but this node is known, rec itself (sealed is false; see the
// fallback above).
func (n *Node) sealResult(ctx context.Context, rec schema.Record) (stored schema.Record, sealed bool, err error) {
	members, err := n.knownRecipients(ctx)
	if err != nil {
		return schema.Record{}, false, err
	}
	recips := policy.ResultRecipients(rec.Org, n.ID().String(), members)
	if recips == nil {
		return rec, false, nil
	}
	stored, err = bundle.SealResult(rec, recips)
	if err != nil {
		return schema.Record{}, false, fmt.Errorf("node: sealing result %s in %s: %w", rec.ID, rec.Org, err)
	}
	return stored, true, nil
}

// noteUnsealed records that result id of org was stored in clear.
func (n *Node) noteUnsealed(ctx context.Context, org, id string) error {
	if n.cfg.Authority == "" {
		n.log.Warn("result stored in clear: this node runs open (no authority), and an open mesh seals to no peer, since any peer may claim to be central or an archive; gate the mesh (examnode init --authority) before exams",
			"org", org, "result", id)
		return n.store.Datastore().Put(ctx, unsealedPrefix.ChildString(org).ChildString(id), nil)
	}
	n.log.Warn("result stored in clear: no central or archive peer of the organisation is known yet to seal it to; connect this VM to central before exams",
		"org", org, "result", id)
	return n.store.Datastore().Put(ctx, unsealedPrefix.ChildString(org).ChildString(id), nil)
}

// unsealedResults counts the results of org this node stored in clear.
func (n *Node) unsealedResults(ctx context.Context, org string) (int, error) {
	res, err := n.store.Datastore().Query(ctx, query.Query{Prefix: unsealedPrefix.ChildString(org).String(), KeysOnly: true})
	if err != nil {
		return 0, err
	}
	all, err := res.Rest()
	return len(all), err
}
