package node

// Bundle status, export and RFC 3161 time-stamps (see bundles.go).
//
//	GET /v1/bundles?org=ORG                 every bundle's status (BundleStatus)
//	GET /v1/bundles/{org}/{id}/archive      the unsealed archive (archive and central nodes)
//	GET /v1/bundles/{org}/{id}/tsq|tsr      the time-stamp request and token, if any

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"time"

	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"

	"github.com/examnode/examnode/bundle"
	"github.com/examnode/examnode/crdt"
	"github.com/examnode/examnode/schema"
)

// maxTSR bounds a time-stamp authority's answer.
const maxTSR = 1 << 20

// stamp asks the configured TSA for a token over a pinned bundle that has
// none yet; a failure is kept in the state and retried next round.
func (b *bundler) stamp(ctx context.Context, org, id string, st *bundleState) error {
	if b.cfg.TSA == "" || st.Stamp != nil || !st.Pinned || !b.due(org, id+".tsa") {
		return nil
	}
	tsq, tsr, ts, err := b.requestStamp(ctx, st.SHA256)
	if err != nil {
		b.fail(org, id+".tsa")
		st.StampError = err.Error()
		b.n.log.Warn("time-stamp request failed; retried later", "org", org, "bundle", id, "tsa", b.cfg.TSA, "err", err)
		return b.save(ctx, org, id, *st)
	}
	b.succeed(org, id+".tsa")
	d := b.n.store.Datastore()
	if err := d.Put(ctx, stampKey(org, id, ".tsq"), tsq); err != nil {
		return err
	}
	if err := d.Put(ctx, stampKey(org, id, ".tsr"), tsr); err != nil {
		return err
	}
	st.Stamp, st.StampError = &ts, ""
	b.n.log.Info("bundle time-stamped", "org", org, "bundle", id, "time", ts.Time)
	return b.save(ctx, org, id, *st)
}

func (b *bundler) requestStamp(ctx context.Context, sum string) (tsq, tsr []byte, ts bundle.Timestamp, err error) {
	if tsq, err = bundle.TimestampRequest(sum); err != nil {
		return nil, nil, ts, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.cfg.TSA, bytes.NewReader(tsq))
	if err != nil {
		return nil, nil, ts, err
	}
	req.Header.Set("Content-Type", "application/timestamp-query")
	resp, err := b.http.Do(req)
	if err != nil {
		return nil, nil, ts, err
	}
	defer resp.Body.Close()
	if tsr, err = io.ReadAll(io.LimitReader(resp.Body, maxTSR)); err != nil {
		return nil, nil, ts, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, ts, fmt.Errorf("the authority answered %s", resp.Status)
	}
	ts, err = bundle.CheckTimestamp(tsr, tsq, sum)
	return tsq, tsr, ts, err
}

// BundleStatus is one bundle as this node sees it.
type BundleStatus struct {
	Org       string            `json:"org"`
	ID        string            `json:"id"`
	SHA256    string            `json:"sha256"`
	Size      int64             `json:"size"`
	Signer    string            `json:"signer"`
	Created   time.Time         `json:"created"`
	Root      string            `json:"root"`
	HeldBy    []string          `json:"held_by"`
	Receipts  []Receipt         `json:"receipts"`
	Deleted   time.Time         `json:"deleted,omitzero"`
	Rule      string            `json:"rule,omitempty"`
	Timestamp *bundle.Timestamp `json:"timestamp,omitempty"`
	// Local is what this node did with it.
	Local BundleLocal `json:"local"`
}

// Receipt is an archive's receipt of a bundle.
type Receipt struct {
	Archive string    `json:"archive"`
	SHA256  string    `json:"sha256"`
	At      time.Time `json:"at"`
}

// BundleLocal is this node's part in a bundle.
type BundleLocal struct {
	Made       bool      `json:"made,omitempty"`
	Held       bool      `json:"held"`
	Pinned     bool      `json:"pinned,omitempty"`
	Failed     string    `json:"failed,omitempty"`
	Dropped    time.Time `json:"dropped,omitzero"`
	StampError string    `json:"stamp_error,omitempty"`
}

// Bundles lists the bundles of org ("" for every organisation held).
func (n *Node) Bundles(ctx context.Context, org string) ([]BundleStatus, error) {
	orgs := n.Orgs()
	if org != "" {
		if _, err := n.Replica(org); err != nil {
			return nil, err
		}
		orgs = []string{org}
	}
	out := []BundleStatus{}
	b := &bundler{n: n}
	for _, o := range orgs {
		rep, err := n.Replica(o)
		if err != nil {
			continue
		}
		v, err := b.snapshot(ctx, rep)
		if err != nil {
			return nil, err
		}
		for _, rec := range v.metas {
			body, err := rec.DecodeBody()
			if err != nil {
				continue
			}
			m := body.(schema.BundleMeta)
			st, err := loadBundleState(ctx, n.store.Datastore(), o, rec.ID)
			if err != nil {
				return nil, err
			}
			s := BundleStatus{
				Org: o, ID: rec.ID, SHA256: m.SHA256, Size: m.Size, Signer: m.Signer, Created: m.Created, Root: m.Root,
				HeldBy: []string{}, Receipts: []Receipt{}, Timestamp: st.Stamp,
				Local: BundleLocal{Made: st.Made, Held: st.Held, Pinned: st.Pinned, Failed: st.Failed, Dropped: st.Dropped, StampError: st.StampError},
			}
			for _, c := range v.holders[rec.ID] {
				s.HeldBy = append(s.HeldBy, c.Holder)
			}
			slices.Sort(s.HeldBy)
			for _, r := range v.receipts[rec.ID] {
				s.Receipts = append(s.Receipts, Receipt{Archive: r.Archive, SHA256: r.SHA256, At: r.At})
			}
			if d, ok := v.deletions[rec.ID]; ok {
				s.Deleted, s.Rule = d.DeletedAt, d.Rule
			}
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Org != out[j].Org {
			return out[i].Org < out[j].Org
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// BundleArchive returns a bundle's unsealed archive, verified. Only a
// recipient (an archive or central node of the organisation) can read it.
// Central holds no copies of bundles: asked for one it does not hold, it
// fetches the payload from the peers that do (the VMs of the centre, an
// archive), reads it, and deletes its copy again.
func (n *Node) BundleArchive(ctx context.Context, org, id string) ([]byte, error) {
	rep, err := n.Replica(org)
	if err != nil {
		return nil, err
	}
	rec, err := getRecord(ctx, rep, schema.Key(schema.KindBundles, id))
	if errors.Is(err, crdt.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s in %s (see `examnode bundle ls`)", ErrNoBundle, id, org)
	}
	if err != nil {
		return nil, err
	}
	body, err := rec.DecodeBody()
	if err != nil {
		return nil, err
	}
	meta := body.(schema.BundleMeta)
	root, err := cid.Decode(meta.Root)
	if err != nil {
		return nil, err
	}
	b := n.bundles.Load()
	onDemand := b != nil && n.cfg.Has(schema.RoleCentral) && !n.cfg.Has(schema.RoleArchive)
	if onDemand {
		// One export at a time per bundle: another would delete the copy
		// this one reads.
		unlock := n.lockExport(root.String())
		defer unlock()
	}
	if _, err := n.payloadBlocks(ctx, root); err != nil {
		if !onDemand {
			return nil, fmt.Errorf("%w: %s in %s: %v (not fetched yet, dropped, or deleted by retention)", ErrPayloadGone, id, org, err)
		}
		if ferr := b.fetchPayload(ctx, org, root); ferr != nil {
			return nil, fmt.Errorf("%w: %s in %s: central holds no copy and no peer gave one: %v", ErrPayloadGone, id, org, ferr)
		}
		defer func() {
			if err := n.deletePayload(context.WithoutCancel(ctx), org, root); err != nil {
				n.log.Warn("could not delete a bundle copy fetched for export", "org", org, "bundle", id, "err", err)
			}
		}()
		if _, err := n.payloadBlocks(ctx, root); err != nil {
			return nil, fmt.Errorf("%w: %s in %s: %v", ErrPayloadGone, id, org, err)
		}
	}
	sealed, err := n.readPayload(ctx, root)
	if err != nil {
		return nil, err
	}
	plain, err := bundle.Unseal(sealed, n.key)
	if errors.Is(err, bundle.ErrNotRecipient) {
		return nil, fmt.Errorf("%w: bundle %s is sealed to the archive and central peers of %s; export it on one of them", ErrNotReadable, id, org)
	}
	if err != nil {
		return nil, err
	}
	if _, err := bundle.Open(plain); err != nil {
		return nil, err
	}
	if sum := bundle.Sum(plain); sum != meta.SHA256 {
		return nil, fmt.Errorf("%w: the archive's SHA-256 is %s; the bundle record says %s", bundle.ErrVerify, sum, meta.SHA256)
	}
	return plain, nil
}

// BundleStamp returns a bundle's .tsq or .tsr (ext ".tsq" or ".tsr"),
// or crdt.ErrNotFound.
func (n *Node) BundleStamp(ctx context.Context, org, id, ext string) ([]byte, error) {
	v, err := n.store.Datastore().Get(ctx, stampKey(org, id, ext))
	if errors.Is(err, ds.ErrNotFound) {
		return nil, fmt.Errorf("%w: bundle %s in %s has no %s time-stamp file", crdt.ErrNotFound, id, org, ext)
	}
	return v, err
}

func (n *Node) bundleRoutes(mux *http.ServeMux) {
	n.attachmentRoutes(mux)
	mux.HandleFunc("GET /v1/bundles", func(w http.ResponseWriter, r *http.Request) {
		out, err := n.Bundles(r.Context(), r.URL.Query().Get("org"))
		if err != nil {
			n.writeBundleErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /v1/bundles/{org}/{id}/{file}", func(w http.ResponseWriter, r *http.Request) {
		org, id := r.PathValue("org"), r.PathValue("id")
		if err := schema.ValidateOrgID(org); err != nil {
			n.writeBundleErr(w, err)
			return
		}
		if err := schema.ValidateID(id); err != nil {
			n.writeBundleErr(w, err)
			return
		}
		var b []byte
		var err error
		switch f := r.PathValue("file"); f {
		case "archive":
			b, err = n.BundleArchive(r.Context(), org, id)
		case "tsq", "tsr":
			b, err = n.BundleStamp(r.Context(), org, id, "."+f)
		default:
			err = fmt.Errorf("%w: bundle file %q; ask for archive, tsq or tsr", crdt.ErrNotFound, f)
		}
		if err != nil {
			n.writeBundleErr(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(b)
	})
}

func (n *Node) writeBundleErr(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrNoBundle):
		writeErr(w, http.StatusNotFound, "no_bundle", err)
	case errors.Is(err, ErrPayloadGone):
		writeErr(w, http.StatusGone, "payload_gone", err)
	case errors.Is(err, ErrNotReadable):
		writeErr(w, http.StatusForbidden, "not_recipient", err)
	case errors.Is(err, bundle.ErrVerify):
		writeErr(w, http.StatusConflict, "verification_failed", err)
	default:
		status, code := statusOf(err)
		writeErr(w, status, code, err)
	}
}

// Bundles lists bundle status ("" for every organisation).
func (c *Client) Bundles(ctx context.Context, org string) ([]BundleStatus, error) {
	var out []BundleStatus
	p := "/v1/bundles"
	if org != "" {
		p += "?org=" + url.QueryEscape(org)
	}
	return out, c.do(ctx, http.MethodGet, p, nil, &out)
}

// BundleFile fetches a bundle's archive ("archive"), "tsq" or "tsr".
func (c *Client) BundleFile(ctx context.Context, org, id, file string) ([]byte, error) {
	var b []byte
	return b, c.do(ctx, http.MethodGet, "/v1/bundles/"+url.PathEscape(org)+"/"+url.PathEscape(id)+"/"+file, nil, &b)
}

// ExportBundle writes bundle id of org into dir with its time-stamp files
// (bundle.Export).
func (c *Client) ExportBundle(ctx context.Context, org, id, dir string) (bundle.Info, error) {
	archive, err := c.BundleFile(ctx, org, id, "archive")
	if err != nil {
		return bundle.Info{}, err
	}
	extras := map[string][]byte{}
	for _, f := range []struct{ api, name string }{{"tsq", bundle.TSQName}, {"tsr", bundle.TSRName}} {
		b, err := c.BundleFile(ctx, org, id, f.api)
		var ae *APIError
		if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
			continue
		}
		if err != nil {
			return bundle.Info{}, err
		}
		extras[f.name] = b
	}
	return bundle.Export(archive, dir, extras)
}
