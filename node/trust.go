package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	ds "github.com/ipfs/go-datastore"

	"github.com/examnode/examnode/crdt"
	"github.com/examnode/examnode/policy"
	"github.com/examnode/examnode/schema"
)

// TrustOpen is Status.Trust for a node without an authority.
const TrustOpen = "open: no authority configured, any peer of the network may connect"

// trustSummary says whether the node checks memberships, and under which
// of its own.
func (n *Node) trustSummary() string {
	if n.cfg.Authority == "" {
		return TrustOpen
	}
	m, err := policy.ParseMembership(n.cfg.Membership)
	if err != nil {
		return "gated by " + n.cfg.Authority + "; own membership unreadable: " + err.Error()
	}
	return "gated by " + n.cfg.Authority + "; " + m.Describe()
}

// Store is the node's shared badger store (every organisation's replica
// and DAG blocks). Tests use it to check what reached the node at the
// block level; do not write through it.
func (n *Node) Store() *crdt.Store { return n.store }

// Signed records and the verified view (issue 6).
//
// A gated node stores every record it writes through the API as a signed
// record (policy.EncodeSigned around schema.Encode), signed with its node
// key under its own membership, with a sequence number from
// policy.NextSeq persisted in the store (/node/trust/seq, local, never
// replicated). Its replicas keep a verified view (crdt.VerifyOptions):
// reads, lists and the change feed follow what policy accepts wherever a
// record came from, and refusals are counted and listed
// (GET /v1/orgs/{org}/refused). Each replica holds, at reserved keys, the
// authority-signed memberships of the nodes that write there (each node
// writes its own into every organisation it holds, so a record relayed
// from a node this one never met can still be checked) and the
// revocations the central operator writes (Revoke). A revocation reaches
// the mesh too, which disconnects the revoked peer.

var trustSeqKey = ds.NewKey("/node/trust/seq")

// gated reports whether the node checks memberships and signs records.
func (n *Node) gated() bool { return n.own != nil }

// verifyOptions are the replicas' view options (nil when open).
func (n *Node) verifyOptions() (*crdt.VerifyOptions, error) {
	tr := n.trust // parsed once, in New
	if tr == nil {
		return nil, nil
	}
	return &crdt.VerifyOptions{Trust: *tr, Now: n.now, OnRevocation: n.onRevocation}, nil
}

func (n *Node) onRevocation(r policy.Revocation) {
	if m := n.Mesh(); m != nil {
		m.AddRevocation(r)
	}
}

// writeOwnMembership stores this node's membership in rep, unless its
// view holds it already.
func (n *Node) writeOwnMembership(ctx context.Context, rep *crdt.Replica) error {
	if n.own == nil {
		return nil
	}
	key := crdt.MembershipKey(n.own.Serial)
	if ok, err := rep.Has(ctx, key); err != nil || ok {
		return err
	}
	if err := rep.Check(ctx, key, n.own.Encode()); err != nil {
		var v *policy.Verdict
		if !errors.As(err, &v) {
			return err
		}
		// Receivers would refuse it (a membership that does not cover
		// the organisation): nothing to send.
		n.log.Warn("this node's membership is not written into an organisation: receivers would refuse it", "org", rep.Org(), "reason", v.Reason, "err", err)
		return nil
	}
	if err := rep.Put(ctx, key, n.own.Encode()); err != nil {
		return fmt.Errorf("node: write this node's membership into %s: %w", rep.Org(), err)
	}
	return nil
}

// signRecord returns what the node stores for the record enc (canonical
// schema encoding): enc itself on an open node, else enc signed.
func (n *Node) signRecord(ctx context.Context, enc []byte) ([]byte, error) {
	if !n.gated() {
		return enc, nil
	}
	seq, err := n.nextSeq(ctx)
	if err != nil {
		return nil, err
	}
	sr, err := policy.Sign(n.key, *n.own, enc, seq, n.now())
	if err != nil {
		return nil, err
	}
	return policy.EncodeSigned(sr), nil
}

// nextSeq takes the next signing sequence number and persists it before
// it is used (the record's group commit fsyncs it).
func (n *Node) nextSeq(ctx context.Context) (uint64, error) {
	n.seqMu.Lock()
	defer n.seqMu.Unlock()
	if !n.seqLoaded {
		v, err := n.store.Datastore().Get(ctx, trustSeqKey)
		switch {
		case errors.Is(err, ds.ErrNotFound):
		case err != nil:
			return 0, fmt.Errorf("node: read the signing sequence: %w", err)
		default:
			if n.seq, err = strconv.ParseUint(string(v), 10, 64); err != nil {
				return 0, fmt.Errorf("node: the signing sequence %q in the store is not a number", v)
			}
		}
		n.seqLoaded = true
	}
	seq := policy.NextSeq(n.seq, n.now())
	if err := n.store.Datastore().Put(ctx, trustSeqKey, []byte(strconv.FormatUint(seq, 10))); err != nil {
		return 0, fmt.Errorf("node: store the signing sequence: %w", err)
	}
	n.seq = seq
	return seq, nil
}

// decodeStored decodes a value a replica serves: a signed record on a
// verified replica, a bare record on an open one.
func decodeStored(rep *crdt.Replica, v []byte) (schema.Record, error) {
	if rep.Verified() {
		return crdt.DecodeRecord(v)
	}
	return schema.Decode(v)
}

// Revoke stores a revocation the authority signed in every organisation
// this node holds, so that it replicates to every member; this node's
// mesh honours it at once.
func (n *Node) Revoke(ctx context.Context, r policy.Revocation) error {
	tr := n.trust // parsed once, in New
	if tr == nil {
		return fmt.Errorf("%w: this node runs open (no authority configured), so it has no use for revocations", ErrConfig)
	}
	if err := policy.VerifyRevocation(r, *tr); err != nil {
		return err
	}
	n.onRevocation(r)
	var errs []error
	for _, org := range n.Orgs() {
		rep, err := n.Replica(org)
		if err == nil {
			err = n.checkSend(ctx, rep, crdt.RevocationKey(r), r.Encode())
		}
		if err == nil {
			err = rep.Put(ctx, crdt.RevocationKey(r), r.Encode())
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// RevokeRequest is the body of POST /v1/revocations.
type RevokeRequest struct {
	Revocation string `json:"revocation"` // examnode-revocation:…
}

// RevokeResult answers it.
type RevokeResult struct {
	Peer      string    `json:"peer"`
	Serial    string    `json:"serial,omitempty"`
	RevokedAt time.Time `json:"revoked_at"`
	Orgs      []string  `json:"orgs"`
}

func (n *Node) handleRevoke(w http.ResponseWriter, r *http.Request) {
	var req RevokeRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, "invalid", fmt.Errorf("the body is {\"revocation\": \"examnode-revocation:…\"}: %w", err))
		return
	}
	rev, err := policy.ParseRevocation(req.Revocation)
	if err == nil {
		err = n.Revoke(r.Context(), rev)
	}
	if err != nil {
		status := http.StatusBadRequest
		if errors.Is(err, crdt.ErrClosed) || errors.Is(err, ErrClosed) {
			status = http.StatusServiceUnavailable
		}
		writeErr(w, status, "invalid", err)
		return
	}
	res := RevokeResult{Peer: rev.Peer, RevokedAt: rev.RevokedAt, Orgs: n.Orgs()}
	if !rev.Serial.IsZero() {
		res.Serial = rev.Serial.String()
	}
	writeJSON(w, http.StatusOK, res)
}

// Refused is the answer of GET /v1/orgs/{org}/refused.
type Refused struct {
	Org      string            `json:"org"`
	Verified bool              `json:"verified"`
	Counts   map[string]uint64 `json:"counts"`
	Parked   int               `json:"parked"`
	Elements []crdt.Refusal    `json:"elements"`
	// Arrived counts what peers sent for the organisation that was
	// refused where it arrived (announcements, blocks, subscriptions), by
	// reason, since start.
	Arrived map[string]uint64 `json:"arrived"`
}

func (n *Node) handleRefused(w http.ResponseWriter, r *http.Request) {
	org := r.PathValue("org")
	rep, err := n.Replica(org)
	if err != nil {
		s, c := statusOf(err)
		writeErr(w, s, c, err)
		return
	}
	limit, err := atoiDefault(r.URL.Query().Get("limit"), 1000)
	if err != nil || limit < 0 {
		writeErr(w, http.StatusBadRequest, "invalid", errors.New("limit is a non-negative integer"))
		return
	}
	els, err := rep.Refusals(r.Context(), limit)
	if err != nil {
		s, c := statusOf(err)
		writeErr(w, s, c, err)
		return
	}
	st := rep.Stats(r.Context())
	out := Refused{Org: org, Verified: st.Verified, Counts: st.RecordsRefused, Parked: st.RecordsParked, Elements: els}
	if out.Counts == nil {
		out.Counts = map[string]uint64{}
	}
	out.Arrived = n.mesh.Refused(org)
	writeJSON(w, http.StatusOK, out)
}

// deleteRecord deletes the record prev at key. A gated node also writes,
// in the same delta, a signed deletion (the record, signed again) at
// crdt.DeletionKey(key): receivers ignore unsigned tombstones.
func (n *Node) deleteRecord(ctx context.Context, rep *crdt.Replica, key string, prev schema.Record) error {
	if !n.gated() {
		return rep.Delete(ctx, key)
	}
	enc, err := schema.Encode(prev)
	if err != nil {
		return err
	}
	sealed, err := n.signRecord(ctx, enc)
	if err != nil {
		return err
	}
	if err := n.checkSend(ctx, rep, crdt.DeletionKey(key), sealed); err != nil {
		return err
	}
	return rep.Apply(ctx, []crdt.Op{{Key: key, Delete: true}, {Key: crdt.DeletionKey(key), Value: sealed}})
}
