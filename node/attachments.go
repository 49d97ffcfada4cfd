package node

// Attachments: files an exam platform adds to an execution's bundle (an
// essay upload, a scan, a recording). They are bulk data, so they never
// enter a replica: the VM keeps them in its own datastore until it seals
// the execution's bundle, which then carries them (attachments/<name>)
// sealed and replicated as blocks like the rest; the VM then deletes its
// plain copy. Write them before the result: the bundle is sealed once the
// result is stored, and an attachment after that is refused.
//
//	PUT /v1/attachments/{org}/{execution}/{name...}   body: the file's bytes
//	GET /v1/attachments/{org}/{execution}             the names and sizes waiting for the bundle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"

	"github.com/examnode/examnode/bundle"
	"github.com/examnode/examnode/crdt"
	"github.com/examnode/examnode/schema"
)

// MaxAttachmentSize bounds one attachment.
const MaxAttachmentSize = 256 << 20

// Attachment errors.
var (
	ErrBundleSealed   = errors.New("node: the execution's bundle is already sealed")
	ErrBadAttachment  = errors.New("node: invalid attachment")
	attachmentsPrefix = ds.NewKey("/node/attachments")
)

// AttachmentInfo names one attachment waiting for its bundle.
type AttachmentInfo struct {
	Name string `json:"name"`
	Size int    `json:"size"`
}

func attachmentsKey(org, exec string) ds.Key {
	return attachmentsPrefix.ChildString(org).ChildString(exec)
}

// PutAttachment stores a file for execution exec's bundle. The execution
// must run on this VM and its bundle must not be sealed yet.
func (n *Node) PutAttachment(ctx context.Context, org, exec, name string, data []byte) error {
	rep, err := n.Replica(org)
	if err != nil {
		return err
	}
	if err := schema.ValidateID(exec); err != nil {
		return err
	}
	path := "attachments/" + name
	probe := schema.Manifest{Entries: []schema.ManifestEntry{{Path: path, SHA256: strings.Repeat("0", 64)}}}
	if err := probe.Validate(); err != nil {
		return fmt.Errorf("%w: name %q: %v", ErrBadAttachment, name, err)
	}
	if len(data) > MaxAttachmentSize {
		return fmt.Errorf("%w: %d bytes; an attachment holds at most %d", ErrBadAttachment, len(data), MaxAttachmentSize)
	}
	ex, err := getRecord(ctx, rep, schema.Key(schema.KindExecutions, exec))
	if errors.Is(err, crdt.ErrNotFound) {
		return fmt.Errorf("%w: execution %q is not stored in %s: write the execution first, then its attachments", errNoExecution, exec, org)
	}
	if err != nil {
		return err
	}
	if b, err := ex.DecodeBody(); err != nil || b.(schema.Execution).VM != n.ID().String() {
		return fmt.Errorf("%w: execution %s does not run on this VM (%s); attach files on the VM that runs it", schema.ErrRoleMayNotWrite, exec, n.ID())
	}
	unlock := n.lockAttachments(org, exec)
	defer unlock()
	if has, err := rep.Has(ctx, schema.Key(schema.KindBundles, exec)); err != nil {
		return err
	} else if has {
		return fmt.Errorf("%w: execution %s's bundle was sealed when its result was stored; attach files before writing the result", ErrBundleSealed, exec)
	}
	if err := n.store.Datastore().Put(ctx, attachmentsKey(org, exec).Child(ds.NewKey(name)), data); err != nil {
		return err
	}
	return n.store.Sync(ctx)
}

// attachments returns exec's attachments as bundle files (values too when
// withData).
func (n *Node) attachments(ctx context.Context, org, exec string, withData bool) ([]bundle.File, error) {
	prefix := attachmentsKey(org, exec)
	res, err := n.store.Datastore().Query(ctx, query.Query{Prefix: prefix.String(), KeysOnly: !withData, ReturnsSizes: true})
	if err != nil {
		return nil, err
	}
	defer res.Close()
	var out []bundle.File
	for e := range res.Next() {
		if e.Error != nil {
			return nil, e.Error
		}
		name := strings.TrimPrefix(e.Key, prefix.String()+"/")
		f := bundle.File{Path: "attachments/" + name, Data: e.Value}
		if !withData {
			f.Data = make([]byte, 0, e.Size)
		}
		out = append(out, f)
	}
	return out, nil
}

// dropAttachments deletes exec's attachments once its bundle holds them.
func (n *Node) dropAttachments(ctx context.Context, org, exec string, files []bundle.File) error {
	prefix := attachmentsKey(org, exec)
	for _, f := range files {
		if err := n.store.Datastore().Delete(ctx, prefix.Child(ds.NewKey(strings.TrimPrefix(f.Path, "attachments/")))); err != nil {
			return err
		}
	}
	return nil
}

func (n *Node) attachmentRoutes(mux *http.ServeMux) {
	mux.HandleFunc("PUT /v1/attachments/{org}/{exec}/{name...}", func(w http.ResponseWriter, r *http.Request) {
		data, err := io.ReadAll(io.LimitReader(r.Body, MaxAttachmentSize+1))
		if err == nil {
			err = n.PutAttachment(r.Context(), r.PathValue("org"), r.PathValue("exec"), r.PathValue("name"), data)
		}
		if err != nil {
			n.writeAttachmentErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, AttachmentInfo{Name: r.PathValue("name"), Size: len(data)})
	})
	mux.HandleFunc("GET /v1/attachments/{org}/{exec}", func(w http.ResponseWriter, r *http.Request) {
		if _, err := n.Replica(r.PathValue("org")); err != nil {
			n.writeAttachmentErr(w, err)
			return
		}
		fs, err := n.attachments(r.Context(), r.PathValue("org"), r.PathValue("exec"), false)
		if err != nil {
			n.writeAttachmentErr(w, err)
			return
		}
		out := []AttachmentInfo{}
		for _, f := range fs {
			out = append(out, AttachmentInfo{Name: strings.TrimPrefix(f.Path, "attachments/"), Size: cap(f.Data)})
		}
		writeJSON(w, http.StatusOK, out)
	})
}

func (n *Node) writeAttachmentErr(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrBundleSealed):
		writeErr(w, http.StatusConflict, "bundle_sealed", err)
	case errors.Is(err, ErrBadAttachment):
		writeErr(w, http.StatusBadRequest, "invalid", err)
	default:
		status, code := statusOf(err)
		writeErr(w, status, code, err)
	}
}

// PutAttachment uploads a file for an execution's bundle.
func (c *Client) PutAttachment(ctx context.Context, org, exec, name string, data []byte) error {
	return c.do(ctx, http.MethodPut, "/v1/attachments/"+url.PathEscape(org)+"/"+url.PathEscape(exec)+"/"+name, data, nil)
}

// Attachments lists the files waiting for exec's bundle.
func (c *Client) Attachments(ctx context.Context, org, exec string) ([]AttachmentInfo, error) {
	var out []AttachmentInfo
	return out, c.do(ctx, http.MethodGet, "/v1/attachments/"+url.PathEscape(org)+"/"+url.PathEscape(exec), nil, &out)
}
