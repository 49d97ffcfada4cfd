package node

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/examnode/examnode/crdt"
	"github.com/examnode/examnode/mesh"
	"github.com/examnode/examnode/policy"
	"github.com/examnode/examnode/schema"
)

// MaxValueSize bounds one raw value written through the API.
const MaxValueSize = 1 << 20

// apiError is the body of every error answer.
type apiError struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeErr(w http.ResponseWriter, status int, code string, err error) {
	writeJSON(w, status, apiError{Error: err.Error(), Code: code})
}

// statusOf maps an error from the node to an HTTP status and code.
func statusOf(err error) (int, string) {
	switch {
	case errors.Is(err, crdt.ErrNotFound):
		return http.StatusNotFound, "not_found"
	case errors.Is(err, ErrUnknownOrg):
		return http.StatusNotFound, "unknown_org"
	case errors.Is(err, crdt.ErrBadKey), errors.Is(err, crdt.ErrBadOrg):
		return http.StatusBadRequest, "invalid"
	case errors.Is(err, crdt.ErrDiskFull):
		return http.StatusInsufficientStorage, "disk_full"
	case errors.Is(err, ErrClosed), errors.Is(err, crdt.ErrClosed):
		return http.StatusServiceUnavailable, "closing"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable, "timeout"
	// The schema's refusals (record routes).
	case errors.Is(err, schema.ErrTooLarge):
		return http.StatusRequestEntityTooLarge, "too_large"
	case errors.Is(err, schema.ErrMalformed):
		return http.StatusBadRequest, "invalid_json"
	case errors.Is(err, schema.ErrUnsupportedVersion):
		return http.StatusBadRequest, "unsupported_version"
	case errors.Is(err, schema.ErrUnknownKind):
		return http.StatusNotFound, "unknown_kind"
	case errors.Is(err, schema.ErrForbiddenProperty):
		return http.StatusBadRequest, "forbidden_property"
	case errors.Is(err, schema.ErrRoleMayNotWrite):
		return http.StatusForbidden, "role_may_not_write"
	case errors.Is(err, schema.ErrNotDeletable):
		return http.StatusForbidden, "not_deletable"
	case errors.Is(err, schema.ErrNotEligible):
		return http.StatusForbidden, "not_eligible"
	case errors.Is(err, schema.ErrAppendOnly):
		return http.StatusConflict, "append_only"
	case errors.Is(err, schema.ErrReactivateInPlace):
		return http.StatusConflict, "reactivate_in_place"
	case errors.Is(err, schema.ErrNotFinished):
		return http.StatusConflict, "not_finished"
	case errors.Is(err, errNoExecution):
		return http.StatusConflict, "no_execution"
	case errors.Is(err, schema.ErrExecutionMismatch):
		return http.StatusBadRequest, "execution_mismatch"
	case errors.Is(err, schema.ErrInvalid), errors.Is(err, schema.ErrBadKey):
		return http.StatusBadRequest, "invalid"
	}
	// A write receivers would refuse (node.sendError): their reason.
	if v := (*policy.Verdict)(nil); errors.As(err, &v) {
		return http.StatusForbidden, v.Reason
	}
	return http.StatusInternalServerError, "internal"
}

// Handler returns the local API's HTTP handler.
func (n *Node) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", n.handleStatus)
	mux.HandleFunc("GET /v1/peers", n.handlePeers)
	mux.HandleFunc("GET /v1/sync", n.handleSync)
	// The raw routes, a debugging aid, exist only with "debug": true;
	// without it they answer 404 raw_off (and "raw" is no record kind).
	if n.cfg.Debug {
		mux.HandleFunc("GET /v1/orgs/{org}/raw", n.handleList)
		mux.HandleFunc("GET /v1/orgs/{org}/raw/{key...}", n.handleGet)
		mux.HandleFunc("PUT /v1/orgs/{org}/raw/{key...}", n.observeWrite("raw", n.handlePut))
		mux.HandleFunc("DELETE /v1/orgs/{org}/raw/{key...}", n.observeWrite("raw", n.handleDelete))
	} else {
		mux.HandleFunc("GET /v1/orgs/{org}/raw", n.handleRawOff)
		for _, m := range []string{"GET", "PUT", "DELETE"} {
			mux.HandleFunc(m+" /v1/orgs/{org}/raw/{key...}", n.handleRawOff)
		}
	}
	// Record routes and the change feed (records.go, feed.go). The literal
	// "raw" and "changes" take precedence over {kind}.
	mux.HandleFunc("GET /v1/orgs/{org}/changes", n.handleChanges)
	mux.HandleFunc("GET /v1/orgs/{org}/refused", n.handleRefused) // trust.go
	mux.HandleFunc("POST /v1/revocations", n.handleRevoke)        // trust.go
	mux.HandleFunc("GET /v1/orgs/{org}/held/{key...}", n.handleHeld)
	mux.HandleFunc("POST /v1/orgs/{org}/executions/{id}/resume", n.handleResume)
	mux.HandleFunc("GET /v1/orgs/{org}/{kind}", n.handleRecordList)
	mux.HandleFunc("GET /v1/orgs/{org}/{kind}/{id...}", n.handleRecordGet)
	mux.HandleFunc("PUT /v1/orgs/{org}/{kind}/{id...}", n.observeWrite("record", n.handleRecordPut))
	mux.HandleFunc("DELETE /v1/orgs/{org}/{kind}/{id...}", n.observeWrite("record", n.handleRecordDelete))
	// Observation (observe.go, metrics.go); the status page (ui.go) takes
	// its token as ?token= and so sits in front of auth.
	mux.HandleFunc("GET /v1/history", n.handleHistory)
	n.bundleRoutes(mux) // result bundles (bundles_api.go)
	mux.HandleFunc("GET /metrics", n.handleMetrics)
	n.pprofRoutes(mux) // /debug/pprof/, with "pprof": true (pprof.go)
	return n.withUI(n.auth(mux))
}

func (n *Node) auth(next http.Handler) http.Handler {
	want := []byte("Bearer " + n.token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			refuseConn(w)
			writeErr(w, http.StatusUnauthorized, "unauthorized",
				fmt.Errorf("missing or wrong bearer token: send `Authorization: Bearer <token>` with the token from %s", filepath.Join(n.dir, TokenFile)))
			return
		}
		markAuthenticated(r)
		bodyDeadline(w, r)
		next.ServeHTTP(w, r)
	})
}

func (n *Node) startAPI() error {
	ln, err := net.Listen("tcp", n.cfg.API)
	if err != nil {
		return fmt.Errorf("node: local API on %s: %w (is another examnode running? set \"api\" in %s)", n.cfg.API, err, filepath.Join(n.dir, ConfigFile))
	}
	lim := newConnLimiter(ln, apiMaxConns(n.cfg.APIMaxConnections))
	n.apiLn = lim
	n.api = &http.Server{
		Handler:           n.Handler(),
		ReadHeaderTimeout: apiReadHeaderTimeout,
		IdleTimeout:       apiIdleTimeout,
		MaxHeaderBytes:    apiMaxHeaderBytes,
		ConnState:         lim.connState,
		ConnContext:       connContext,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelDebug),
	}
	ln = lim
	if err := writeFileAtomic(filepath.Join(n.dir, APIAddrFile), []byte(ln.Addr().String()), 0o600); err != nil {
		_ = ln.Close()
		return err
	}
	n.apiWG.Add(1)
	go func() {
		defer n.apiWG.Done()
		if err := n.api.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("local API stopped", "err", err)
		}
	}()
	return nil
}

// APIAddr is the address the local API listens on ("" if it does not).
func (n *Node) APIAddr() string {
	if n.apiLn == nil {
		return ""
	}
	return n.apiLn.Addr().String()
}

// Token is the local API's bearer token.
func (n *Node) Token() string { return n.token }

// Status is what `examnode status` shows.
type Status struct {
	ID         string           `json:"id"`
	Version    string           `json:"version"`
	Protocol   int              `json:"protocol"`
	Schema     int              `json:"schema"`
	Roles      []schema.Role    `json:"roles"`
	Network    string           `json:"network"`
	Trust      string           `json:"trust"`
	Encrypted  bool             `json:"encrypted"`       // the store is encrypted at rest
	PrivateNet bool             `json:"private_network"` // the mesh uses a private-network key
	Orgs       []string         `json:"orgs"`
	Addrs      []string         `json:"addrs"`
	Started    time.Time        `json:"started"`
	Uptime     string           `json:"uptime"`
	StoreBytes uint64           `json:"store_bytes"`
	Peers      int              `json:"peers_connected"`
	Goroutines int              `json:"goroutines"`
	HeapBytes  uint64           `json:"heap_bytes"`
	Pulls      PullCounters     `json:"pulls"`
	Verdict    string           `json:"verdict"`
	Problems   []string         `json:"problems,omitempty"`
	Replicas   []ReplicaSummary `json:"replicas"`
	// Versions of examnode, its protocol and the modules replication rests on.
	Versions map[string]string `json:"versions"`
	// Bundles counts result bundles per organisation and state.
	Bundles []BundleSummary `json:"bundles"`
	// RefusedByReason counts what peers sent that was refused and belongs
	// to no organisation (a stranger's hello, a resource limit), by
	// reason; each organisation's refusals are in its ReplicaSummary.
	RefusedByReason map[string]uint64 `json:"refused_by_reason"`
}

// ReplicaSummary is one organisation's line in Status and Sync.
type ReplicaSummary struct {
	crdt.Stats
	Records       int             `json:"records"`
	Announcements mesh.TopicStats `json:"announcements"`
	Peers         []string        `json:"peers"`
	// DAGSize counts the DAG nodes (deltas) the replica has processed.
	DAGSize int `json:"dag_size"`
	// Refused counts what arrived and was refused since start (head
	// announcements from peers without a membership, malformed ones), and
	// the records a gated replica's view refuses ("record <code>", see
	// GET /v1/orgs/{org}/refused), by reason in RefusedByReason.
	Refused         uint64            `json:"refused"`
	RefusedByReason map[string]uint64 `json:"refused_by_reason"`
	// ResultsUnsealed counts the results this node wrote in clear because
	// it knew no central or archive peer of the organisation to seal them
	// to (results.go).
	ResultsUnsealed int `json:"results_unsealed"`
}

// PullCounters count bulk DAG pulls since the node started.
type PullCounters struct {
	Completed uint64 `json:"completed"`
	Blocks    uint64 `json:"blocks"`
	Failed    uint64 `json:"failed"`
}

// Verdicts of Status.
const (
	VerdictInSync     = "in sync"
	VerdictCatchingUp = "catching up"
	VerdictIsolated   = "isolated from central"
	VerdictErrors     = "errors"
)

// Status reports the node's state and a one-line verdict.
func (n *Node) Status(ctx context.Context) (Status, error) {
	n.mu.Lock()
	started, m := n.started, n.mesh
	n.mu.Unlock()
	if m == nil {
		return Status{}, ErrNotStarted
	}
	st := Status{
		ID: n.ID().String(), Version: Version, Protocol: mesh.ProtocolVersion,
		Roles: n.cfg.Roles, Network: n.cfg.Network, Trust: n.trustSummary(), Orgs: n.Orgs(), Addrs: n.Addrs(),
		Started: started, Uptime: n.now().Sub(started).Round(time.Second).String(),
		Schema: schema.CurrentVersion, Encrypted: n.cfg.Encrypt, PrivateNet: n.cfg.PnetKey != "",
	}
	st.StoreBytes = n.storeBytes() // inspect.go
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	st.Goroutines, st.HeapBytes = runtime.NumGoroutine(), ms.HeapAlloc
	st.Pulls = PullCounters{Completed: n.pulls.Load(), Blocks: n.pulledBlocks.Load(), Failed: n.pullErrors.Load()}
	st.RefusedByReason = m.Refused(mesh.NodeWide)
	centralConnected := false
	for _, p := range m.Peers() {
		if !p.Connected {
			continue
		}
		st.Peers++
		for _, r := range p.Roles {
			if r == string(schema.RoleCentral) {
				centralConnected = true
			}
		}
	}
	if sp := n.store.Space(); sp.Full {
		st.Problems = append(st.Problems, fmt.Sprintf("the data directory's disk has %.1f MiB free, less than the %.1f MiB the store keeps for its own work: writes are refused (507 disk_full) until space is freed; reads work",
			float64(sp.Free)/(1<<20), float64(sp.Reserve)/(1<<20)))
	}
	catching := false
	for _, org := range st.Orgs {
		rs, err := n.replicaSummary(ctx, org)
		if err != nil {
			continue
		}
		if rs.Dirty {
			st.Problems = append(st.Problems, fmt.Sprintf("%s: replica marked dirty (a DAG walk failed; it is repaired on restart or within the hour)", org))
		}
		if rs.WriteErrors > 0 {
			st.Problems = append(st.Problems, fmt.Sprintf("%s: %d writes failed", org, rs.WriteErrors))
		}
		if rs.QueuedJobs > 0 {
			catching = true
		}
		st.Replicas = append(st.Replicas, rs)
	}
	st.Versions = versions()
	st.Bundles = n.bundleSummaries(ctx)
	if !catching {
		catching = catchingUp(n.peerSync(ctx, m, nil))
	}
	switch {
	case len(st.Problems) > 0:
		st.Verdict = VerdictErrors
	case catching:
		st.Verdict = VerdictCatchingUp
	case n.cfg.Has(schema.RoleVM) && !n.cfg.Has(schema.RoleCentral) && !centralConnected:
		st.Verdict = VerdictIsolated
	default:
		st.Verdict = VerdictInSync
	}
	return st, nil
}

func (n *Node) replicaSummary(ctx context.Context, org string) (ReplicaSummary, error) {
	rep, err := n.Replica(org)
	if err != nil {
		return ReplicaSummary{}, err
	}
	rs := ReplicaSummary{Stats: rep.Stats(ctx), Announcements: n.mesh.Stats(org)}
	rs.Records, _ = rep.Count(ctx, "/")
	rs.ResultsUnsealed, _ = n.unsealedResults(ctx, org)
	n.inspectReplica(ctx, rep, &rs)
	for _, p := range n.mesh.PeersOf(org) {
		rs.Peers = append(rs.Peers, p.String())
	}
	return rs, nil
}

func (n *Node) handleStatus(w http.ResponseWriter, r *http.Request) {
	st, err := n.Status(r.Context())
	if err != nil {
		s, c := statusOf(err)
		writeErr(w, s, c, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (n *Node) handlePeers(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, n.mesh.Peers())
}

func (n *Node) handleSync(w http.ResponseWriter, r *http.Request) {
	out, err := n.Sync(r.Context(), r.URL.Query().Get("org"))
	if err != nil {
		s, c := statusOf(err)
		writeErr(w, s, c, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// PutResult answers a write.
type PutResult struct {
	Org     string `json:"org"`
	Key     string `json:"key"`
	Durable bool   `json:"durable"`
}

// Entry is one record of a raw listing.
type Entry struct {
	Key    string `json:"key"`
	Size   int    `json:"size"`
	Value  string `json:"value,omitempty"`
	Binary bool   `json:"binary,omitempty"`
}

func rawKey(r *http.Request) string { return "/" + r.PathValue("key") }

func (n *Node) handlePut(w http.ResponseWriter, r *http.Request) {
	org, key := r.PathValue("org"), rawKey(r)
	rep, err := n.Replica(org)
	if err != nil {
		s, c := statusOf(err)
		writeErr(w, s, c, err)
		return
	}
	if rep.Verified() {
		refuseUnsigned(w, org, "writes")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxValueSize))
	if err != nil {
		writeErr(w, http.StatusRequestEntityTooLarge, "too_large",
			fmt.Errorf("value larger than %d bytes: store large content as a blob", MaxValueSize))
		return
	}
	if err := rep.Put(r.Context(), key, body); err != nil {
		s, c := statusOf(err)
		writeErr(w, s, c, err)
		return
	}
	writeJSON(w, http.StatusOK, PutResult{Org: org, Key: key, Durable: true})
}

// ErrRawOff is the answer of the raw routes on a node without "debug".
var ErrRawOff = errors.New("the raw routes are off")

func (n *Node) handleRawOff(w http.ResponseWriter, r *http.Request) {
	writeErr(w, http.StatusNotFound, "raw_off",
		fmt.Errorf("%w: they bypass the record schema (and, on an open node, every role check), so they exist only for debugging, with \"debug\": true in %s and a restart; exam platforms use /v1/orgs/%s/{kind}/{id}",
			ErrRawOff, filepath.Join(n.dir, ConfigFile), r.PathValue("org")))
}

// refuseUnsigned answers a raw write on a gated node: every peer refuses a
// value that is not a signed record, and the verified view would go on
// serving the old value, so nothing is written.
func refuseUnsigned(w http.ResponseWriter, org, what string) {
	writeErr(w, http.StatusForbidden, "unsigned",
		fmt.Errorf("this node is gated: every peer refuses a value that is not a signed record, so raw %s are off; %s records through /v1/orgs/%s/{kind}/{id}", what, map[string]string{"writes": "write", "deletions": "delete"}[what], org))
}

func (n *Node) handleGet(w http.ResponseWriter, r *http.Request) {
	rep, err := n.Replica(r.PathValue("org"))
	if err == nil {
		var v []byte
		if v, err = rep.Get(r.Context(), rawKey(r)); err == nil {
			w.Header().Set("Content-Type", "application/octet-stream")
			_, _ = w.Write(v)
			return
		}
	}
	s, c := statusOf(err)
	writeErr(w, s, c, err)
}

func (n *Node) handleDelete(w http.ResponseWriter, r *http.Request) {
	org, key := r.PathValue("org"), rawKey(r)
	rep, err := n.Replica(org)
	if err == nil && rep.Verified() {
		refuseUnsigned(w, org, "deletions")
		return
	}
	if err == nil {
		if err = rep.Delete(r.Context(), key); err == nil {
			writeJSON(w, http.StatusOK, PutResult{Org: org, Key: key, Durable: true})
			return
		}
	}
	s, c := statusOf(err)
	writeErr(w, s, c, err)
}

func (n *Node) handleList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	prefix := q.Get("prefix")
	if prefix == "" {
		prefix = "/"
	}
	if !strings.HasPrefix(prefix, "/") {
		writeErr(w, http.StatusBadRequest, "invalid", errors.New("prefix must start with '/'"))
		return
	}
	offset, err1 := atoiDefault(q.Get("offset"), 0)
	limit, err2 := atoiDefault(q.Get("limit"), 1000)
	if err := errors.Join(err1, err2); err != nil || offset < 0 || limit < 0 {
		writeErr(w, http.StatusBadRequest, "invalid", errors.New("offset and limit are non-negative integers"))
		return
	}
	rep, err := n.Replica(r.PathValue("org"))
	if err != nil {
		s, c := statusOf(err)
		writeErr(w, s, c, err)
		return
	}
	entries, err := rep.List(r.Context(), prefix, false, offset, limit)
	if err != nil {
		s, c := statusOf(err)
		writeErr(w, s, c, err)
		return
	}
	out := make([]Entry, 0, len(entries))
	withValues := q.Get("values") == "1"
	for _, e := range entries {
		en := Entry{Key: e.Key, Size: len(e.Value)}
		if withValues {
			if utf8.Valid(e.Value) {
				en.Value = string(e.Value)
			} else {
				en.Binary = true
			}
		}
		out = append(out, en)
	}
	writeJSON(w, http.StatusOK, out)
}

func atoiDefault(s string, d int) (int, error) {
	if s == "" {
		return d, nil
	}
	return strconv.Atoi(s)
}

// apiAddrFromDir finds a running node's API address: the address file
// Start writes, else the configured one.
func apiAddrFromDir(dir string) (string, error) {
	if b, err := os.ReadFile(filepath.Join(dir, APIAddrFile)); err == nil && len(b) > 0 {
		return string(b), nil
	}
	c, err := LoadConfig(dir)
	if err != nil {
		return "", err
	}
	return c.API, nil
}
