package node

// Prometheus metrics at GET /metrics.
//
// Each node has its own registry (an in-process cluster holds several
// nodes). Apart from the write latency histogram, which the write routes
// observe, every metric is collected at scrape time from Status, the
// replicas' Stats and the peer book: no goroutine and no counter of its
// own. /metrics sits behind the API's bearer token like every other route;
// a Prometheus scrape job sends it with
//
//	authorization:
//	  credentials_file: /var/lib/examnode/api.token
//
// Counting records by kind walks the keys of each kind once per scrape
// (keys only, no values).

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/examnode/examnode/mesh"
	"github.com/examnode/examnode/schema"
)

var (
	descUp         = prometheus.NewDesc("examnode_info", "Always 1; labels carry the node's identity and version.", []string{"peer_id", "version", "network"}, nil)
	descVerdict    = prometheus.NewDesc("examnode_verdict", "1 for the node's current verdict (in sync, catching up, isolated from central, errors), 0 for the others.", []string{"verdict"}, nil)
	descUptime     = prometheus.NewDesc("examnode_uptime_seconds", "Seconds since the node started.", nil, nil)
	descStore      = prometheus.NewDesc("examnode_store_bytes", "Size of the badger store on disk.", nil, nil)
	descPeers      = prometheus.NewDesc("examnode_peers_connected", "Peers connected now.", nil, nil)
	descPeersKnown = prometheus.NewDesc("examnode_peers_known", "Peers in the peer book, connected or not.", nil, nil)
	descPeerState  = prometheus.NewDesc("examnode_peer_sync_state", "1 for each peer's sync state per organisation (see GET /v1/history).", []string{"org", "peer", "state"}, nil)
	descRecords    = prometheus.NewDesc("examnode_records", "Records held, per organisation.", []string{"org"}, nil)
	descByKind     = prometheus.NewDesc("examnode_records_by_kind", "Records held, per organisation and kind (keys of the /<kind>/<id> form).", []string{"org", "kind"}, nil)
	descHeads      = prometheus.NewDesc("examnode_heads", "Current DAG heads, per organisation.", []string{"org"}, nil)
	descHeight     = prometheus.NewDesc("examnode_max_height", "Highest DAG height, per organisation.", []string{"org"}, nil)
	descQueued     = prometheus.NewDesc("examnode_queued_dag_jobs", "DAG jobs waiting (this node catching up), per organisation.", []string{"org"}, nil)
	descDirty      = prometheus.NewDesc("examnode_replica_dirty", "1 if the replica is marked dirty (a DAG walk failed).", []string{"org"}, nil)
	descGroups     = prometheus.NewDesc("examnode_group_commits_total", "Group commits (one delta, one fsync) since start.", []string{"org"}, nil)
	descWritten    = prometheus.NewDesc("examnode_records_written_total", "Records written on this node since start.", []string{"org"}, nil)
	descWriteErr   = prometheus.NewDesc("examnode_write_errors_total", "Failed writes since start.", []string{"org"}, nil)
	descAnnounce   = prometheus.NewDesc("examnode_announcements_total", "Head announcements since start, per organisation: published, received (gossipsub), exchanged (direct heads exchange), dropped, rejected.", []string{"org", "event"}, nil)
	descPulls      = prometheus.NewDesc("examnode_pulls_total", "Bulk DAG pulls since start, by result.", []string{"result"}, nil)
	descPullBlocks = prometheus.NewDesc("examnode_pulled_blocks_total", "Blocks fetched by bulk DAG pulls since start.", nil, nil)
	descDAGSize    = prometheus.NewDesc("examnode_dag_nodes", "DAG nodes (deltas) processed, per organisation.", []string{"org"}, nil)
	descRefused    = prometheus.NewDesc("examnode_refused_total", "What arrived and was refused since start, per organisation and reason (see GET /v1/sync refused_by_reason).", []string{"org", "reason"}, nil)
	descPeerBehind = prometheus.NewDesc("examnode_peer_behind_deltas", "Per peer and organisation: heights the peer lacked at its last heads exchange (0: none).", []string{"org", "peer"}, nil)
	descPeerAhead  = prometheus.NewDesc("examnode_peer_missing_heads", "Per peer and organisation: heads the peer sent at its last exchange that this node does not hold (yet).", []string{"org", "peer"}, nil)
	descUnconfirm  = prometheus.NewDesc("examnode_unconfirmed_records", "VMs: records written here that no other machine is known to hold.", []string{"org"}, nil)
	descUnsealed   = prometheus.NewDesc("examnode_results_unsealed", "Results this node wrote in clear because it knew no central or archive peer of the organisation to seal them to.", []string{"org"}, nil)
	descAPIConns   = prometheus.NewDesc("examnode_api_connections", "Local API connections open now (at most api_max_connections).", nil, nil)
	descAPIClosed  = prometheus.NewDesc("examnode_api_connections_closed_total", "Local API connections closed since start to stay within api_max_connections, by reason: evicted (idle, to make room), refused (every connection busy).", []string{"reason"}, nil)
	descBundles    = prometheus.NewDesc("examnode_bundles", "Result bundles per organisation and state (pending: not yet confirmed by an archive receipt).", []string{"org", "state"}, nil)
)

// nodeCollector collects the node's metrics at scrape time.
type nodeCollector struct{ n *Node }

func (c nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUp, descVerdict, descUptime, descStore, descPeers, descPeersKnown, descPeerState,
		descRecords, descByKind, descHeads, descHeight, descQueued, descDirty, descGroups, descWritten, descWriteErr,
		descAnnounce, descPulls, descPullBlocks, descDAGSize, descRefused, descPeerBehind, descPeerAhead, descUnconfirm, descUnsealed, descBundles, descAPIConns, descAPIClosed} {
		ch <- d
	}
}

func (c nodeCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.n
	ctx, cancel := context.WithTimeout(n.ctx, 30*time.Second)
	defer cancel()
	st, err := n.Status(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descUp, err)
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(descUp, 1, st.ID, st.Version, st.Network)
	for _, v := range []string{VerdictInSync, VerdictCatchingUp, VerdictIsolated, VerdictErrors} {
		gauge(descVerdict, b2f(st.Verdict == v), v)
	}
	gauge(descUptime, n.now().Sub(st.Started).Seconds())
	gauge(descStore, float64(st.StoreBytes))
	gauge(descPeers, float64(st.Peers))
	gauge(descPeersKnown, float64(len(n.mesh.Peers())))
	for _, ps := range n.peerSync(ctx, n.mesh, nil) {
		gauge(descPeerState, 1, ps.Org, ps.Peer, ps.State)
		if ps.Org != "" {
			gauge(descPeerBehind, float64(ps.Behind), ps.Org, ps.Peer)
			gauge(descPeerAhead, float64(ps.Missing), ps.Org, ps.Peer)
		}
	}
	if l, ok := n.apiLn.(*connLimiter); ok {
		gauge(descAPIConns, float64(l.Open()))
		counter(descAPIClosed, l.evicted.Load(), "evicted")
		counter(descAPIClosed, l.refused.Load(), "refused")
	}
	for _, b := range st.Bundles {
		for _, s := range BundleStates {
			gauge(descBundles, float64(b.States[s]), b.Org, s)
		}
	}
	if n.cfg.Has(schema.RoleVM) {
		if syncs, err := n.Sync(ctx, ""); err == nil {
			for _, s := range syncs {
				if s.Unconfirmed != nil {
					gauge(descUnconfirm, float64(s.Unconfirmed.Records), s.Org)
				}
			}
		}
	}
	for _, r := range st.Replicas {
		gauge(descRecords, float64(r.Records), r.Org)
		gauge(descUnsealed, float64(r.ResultsUnsealed), r.Org)
		if rep, err := n.Replica(r.Org); err == nil {
			for _, k := range schema.Kinds() {
				if cnt, err := rep.Count(ctx, "/"+string(k)); err == nil && cnt > 0 {
					gauge(descByKind, float64(cnt), r.Org, string(k))
				}
			}
		}
		gauge(descHeads, float64(len(r.Heads)), r.Org)
		gauge(descHeight, float64(r.MaxHeight), r.Org)
		gauge(descQueued, float64(r.QueuedJobs), r.Org)
		gauge(descDirty, b2f(r.Dirty), r.Org)
		counter(descGroups, r.Groups, r.Org)
		counter(descWritten, r.Written, r.Org)
		counter(descWriteErr, r.WriteErrors, r.Org)
		a := r.Announcements
		counter(descAnnounce, a.Published, r.Org, "published")
		counter(descAnnounce, a.Received, r.Org, "received")
		counter(descAnnounce, a.Exchanged, r.Org, "exchanged")
		counter(descAnnounce, a.Dropped, r.Org, "dropped")
		counter(descAnnounce, a.Rejected, r.Org, "rejected")
		gauge(descDAGSize, float64(r.DAGSize), r.Org)
		for _, reason := range []string{mesh.RejectNoMembership, mesh.RejectUnverified, mesh.RejectMalformed} {
			if _, ok := r.RefusedByReason[reason]; !ok {
				counter(descRefused, 0, r.Org, reason) // a series from the start
			}
		}
		for reason, v := range r.RefusedByReason {
			counter(descRefused, v, r.Org, reason)
		}
	}
	for reason, v := range st.RefusedByReason {
		counter(descRefused, v, "", reason) // node-wide: no organisation
	}
	counter(descPulls, st.Pulls.Completed, "completed")
	counter(descPulls, st.Pulls.Failed, "failed")
	counter(descPullBlocks, st.Pulls.Blocks)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (o *observer) registerMetrics() {
	o.reg = prometheus.NewRegistry()
	o.writeLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "examnode_write_duration_seconds",
		Help:    "Time to answer a write through the local API, durable on disk (route raw or record; method PUT or DELETE).",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16), // 0.5 ms to 16 s
	}, []string{"route", "method"})
	o.reg.MustRegister(
		nodeCollector{o.n},
		o.writeLatency,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
}

// Metrics is the node's Prometheus registry (nil before Start).
func (n *Node) Metrics() *prometheus.Registry {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.obs == nil {
		return nil
	}
	return n.obs.reg
}

func (n *Node) handleMetrics(w http.ResponseWriter, r *http.Request) {
	reg := n.Metrics()
	if reg == nil {
		writeErr(w, http.StatusServiceUnavailable, "closing", ErrNotStarted)
		return
	}
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(w, r)
}
