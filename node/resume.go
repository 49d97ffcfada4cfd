package node

// Session failover: a test-taker whose VM died resumes on another VM of
// the centre.
//
// The rules (schema, policy) say an execution is written only by the VM
// named in it, another VM never takes it over, and a proctor's
// reactivation opens a new version (executions/<id>.v<N>, Previous naming
// version N-1) rather than overwriting. Resume is that reactivation, made
// on the VM that takes over: it finds the execution's latest version that
// has reached this VM, and writes the next version naming this VM, active,
// with the same delivery and test-taker. The earlier versions, and their
// result logs so far, stay as they are (they replicated here while the old
// VM was alive) and are returned with the new version, so the platform can
// restore the session's state; logs of the new version go under its own
// ID. A VM that is still connected is alive: resuming its session
// elsewhere needs force, so two VMs do not run one session by mistake.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/examnode/examnode/crdt"
	"github.com/examnode/examnode/mesh"
	"github.com/examnode/examnode/schema"
)

// Errors of Resume.
var (
	ErrStillRunning = errors.New("node: the execution's VM is still connected")
	errNotVM        = errors.New("node: only a VM resumes executions")
)

// maxVersions bounds the search for an execution's latest version.
const maxVersions = 1000

// Resumed answers a resume: the new version, what it continues from, and
// the result logs written so far under every earlier version (oldest
// version first, in key order within one).
type Resumed struct {
	Execution       schema.Record   `json:"execution"`
	ResumedFrom     string          `json:"resumed_from"`
	PreviousVM      string          `json:"previous_vm"`
	PreviousState   string          `json:"previous_state"`
	PreviousVMAlive bool            `json:"previous_vm_connected"`
	AlreadyHere     bool            `json:"already_here,omitempty"`
	Logs            []schema.Record `json:"logs"`
}

// Resume opens the next version of execution id on this VM (see the file
// comment). If the latest version already runs here, it returns it
// unchanged (a retry is safe).
func (n *Node) Resume(ctx context.Context, org, id string, force bool) (Resumed, error) {
	if !n.cfg.Has(schema.RoleVM) {
		return Resumed{}, fmt.Errorf("%w: this node's roles are %v; run resume on the VM where the test-taker sits now", errNotVM, n.cfg.Roles)
	}
	if err := schema.ValidateID(id); err != nil {
		return Resumed{}, err
	}
	rep, err := n.Replica(org)
	if err != nil {
		return Resumed{}, err
	}
	base, _ := schema.SplitExecutionVersionID(id)
	unlock := n.lockResume(org, base)
	defer unlock()

	// The chain of versions that reached this VM.
	var chain []*schema.Record
	for v := 1; v <= maxVersions; v++ {
		rec, err := getRecord(ctx, rep, schema.Key(schema.KindExecutions, schema.ExecutionVersionID(base, v)))
		if errors.Is(err, crdt.ErrNotFound) {
			break
		}
		if err != nil {
			return Resumed{}, err
		}
		chain = append(chain, rec)
	}
	if len(chain) == 0 {
		return Resumed{}, fmt.Errorf("%w: execution %s is not on this VM (org %s): it never replicated here before its VM stopped, so it cannot be resumed here; "+
			"check `examnode held %s %s` on a VM that has it", crdt.ErrNotFound, base, org, org, schema.Key(schema.KindExecutions, base))
	}
	latest := chain[len(chain)-1]
	b, err := latest.DecodeBody()
	if err != nil {
		return Resumed{}, err
	}
	prev := b.(schema.Execution)
	self := n.ID().String()
	out := Resumed{ResumedFrom: latest.ID, PreviousVM: prev.VM, PreviousState: string(prev.State)}
	out.PreviousVMAlive = n.peerConnected(prev.VM)
	if prev.VM == self && !prev.State.Final() {
		out.Execution, out.AlreadyHere = *latest, true
		out.ResumedFrom, out.PreviousVM, out.PreviousState = prev.Previous, "", ""
		if len(chain) > 1 {
			pb, _ := chain[len(chain)-2].DecodeBody()
			if pe, ok := pb.(schema.Execution); ok {
				out.PreviousVM, out.PreviousState = pe.VM, string(pe.State)
			}
		}
		out.PreviousVMAlive = n.peerConnected(out.PreviousVM)
		out.Logs, err = chainLogs(ctx, rep, chain[:len(chain)-1])
		return out, err
	}
	if out.PreviousVMAlive && !force {
		return Resumed{}, fmt.Errorf("%w: execution %s (version %d) runs on VM %s, which is connected to this VM: the session is alive there; "+
			"end it there first, or resume with force if that VM cannot be used", ErrStillRunning, latest.ID, prev.Version, prev.VM)
	}

	next := schema.Execution{
		Delivery: prev.Delivery, TestTaker: prev.TestTaker, State: schema.ExecutionActive,
		Started: n.now().UTC(), VM: self, Version: prev.Version + 1, Previous: latest.ID,
	}
	rec, err := schema.NewRecord(org, schema.ExecutionVersionID(base, next.Version), next)
	if err != nil {
		return Resumed{}, err
	}
	enc, err := schema.Encode(rec)
	if err != nil {
		return Resumed{}, err
	}
	if rec, err = schema.Decode(enc); err != nil {
		return Resumed{}, err
	}
	// Checked, signed on a gated node, and stored like any API write.
	if _, err := n.writeChecked(ctx, rep, rec, enc); err != nil {
		return Resumed{}, err
	}
	out.Execution = rec
	out.Logs, err = chainLogs(ctx, rep, chain)
	return out, err
}

// chainLogs returns the result logs of every execution version in chain.
func chainLogs(ctx context.Context, rep *crdt.Replica, chain []*schema.Record) ([]schema.Record, error) {
	logs := []schema.Record{}
	for _, e := range chain {
		entries, err := rep.List(ctx, "/"+string(schema.KindResultLogs), false, 0, 0)
		if err != nil {
			return nil, err
		}
		for _, en := range entries {
			if !strings.HasPrefix(en.Key, "/"+string(schema.KindResultLogs)+"/"+e.ID+".") {
				continue
			}
			rec, err := decodeStored(rep, en.Value)
			if err != nil {
				continue
			}
			if b, err := rec.DecodeBody(); err == nil {
				if l, ok := b.(schema.ResultLog); ok && l.Execution == e.ID {
					logs = append(logs, rec)
				}
			}
		}
	}
	return logs, nil
}

// peerConnected reports whether the peer with ID id is connected now.
func (n *Node) peerConnected(id string) bool {
	return slices.ContainsFunc(n.mesh.Peers(), func(p mesh.PeerInfo) bool { return p.ID == id && p.Connected })
}

func (n *Node) handleResume(w http.ResponseWriter, r *http.Request) {
	res, err := n.Resume(r.Context(), r.PathValue("org"), r.PathValue("id"), r.URL.Query().Get("force") == "true")
	if err != nil {
		if errors.Is(err, ErrStillRunning) {
			writeErr(w, http.StatusConflict, "still_running", err)
			return
		}
		if errors.Is(err, errNotVM) {
			writeErr(w, http.StatusForbidden, "not_vm", err)
			return
		}
		n.writeRecordError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}
