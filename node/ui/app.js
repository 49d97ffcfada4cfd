// examnode status page: fetches /v1/status, /v1/sync and /v1/history with
// the bearer token given as ?token= and redraws every 2 s. No external
// assets.
"use strict";
(function () {
  const params = new URLSearchParams(location.search);
  const token = params.get("token") || sessionStorage.getItem("examnode-token") || "";
  if (params.has("token")) {
    sessionStorage.setItem("examnode-token", token);
    history.replaceState(null, "", location.pathname); // keep the token out of the address bar
  }
  const SVG = "http://www.w3.org/2000/svg";
  const rank = { "error": 5, "disconnected": 4, "behind": 3, "ahead": 2, "unknown": 1, "in sync": 0 };
  const cls = (s) => s.replace(/ /g, "-");
  const short = (id) => id.length > 16 ? id.slice(0, 8) + "…" + id.slice(-6) : id;
  const when = (t) => t ? new Date(t).toLocaleTimeString() : "never";
  const kinds = (m) => m ? Object.entries(m).map(([k, v]) => k + " " + v).join(", ") : "";
  const lag = (p) => p.behind ? p.behind + " behind" : p.missing ? p.missing + " heads ahead" : p.heads_at ? "0" : "?";

  async function get(path) {
    const r = await fetch(path, { headers: { "Authorization": "Bearer " + token }, cache: "no-store" });
    const body = await r.json();
    if (!r.ok) throw new Error(body.error || r.statusText);
    return body;
  }

  function el(tag, attrs, text) {
    const e = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function rows(id, data) {
    const tb = document.querySelector("#" + id + " tbody");
    tb.replaceChildren();
    for (const r of data) {
      const tr = el("tr", r.attrs);
      for (const c of r.cells) tr.appendChild(el("td", c.cls ? { class: c.cls } : {}, String(c.v ?? "")));
      tb.appendChild(tr);
    }
  }

  // One entry per peer: its worst state over the organisations both carry.
  function peersOf(hist) {
    const by = new Map();
    for (const p of hist.peers) {
      const cur = by.get(p.peer);
      if (!cur || rank[p.state] > rank[cur.state]) by.set(p.peer, p);
    }
    return [...by.values()];
  }

  const roleOf = (p) => (p.roles || []).includes("central") ? "central" : (p.roles || []).includes("archive") ? "archive" : (p.roles || []).includes("vm") ? "vm" : "unknown";

  // Spread n points over [x0, x1] at height y.
  const spread = (n, x0, x1, y) => Array.from({ length: n }, (_, i) => [n === 1 ? (x0 + x1) / 2 : x0 + (i * (x1 - x0)) / (n - 1), y]);

  function drawGraph(st, peers) {
    const g = document.getElementById("graph");
    g.replaceChildren();
    const self = [360, 235];
    const top = peers.filter((p) => roleOf(p) === "central" || roleOf(p) === "archive");
    const vms = peers.filter((p) => roleOf(p) === "vm");
    const other = peers.filter((p) => roleOf(p) === "unknown");
    const pos = new Map();
    spread(top.length, 140, 580, 60).forEach((xy, i) => pos.set(top[i].peer, xy));
    const perRow = 6;
    for (let r = 0; r * perRow < vms.length; r++) {
      const row = vms.slice(r * perRow, (r + 1) * perRow);
      spread(row.length, 90, 630, 370 + r * 70).forEach((xy, i) => pos.set(row[i].peer, xy));
    }
    other.forEach((p, i) => pos.set(p.peer, [650, 60 + (i % 3) * 45])); // peers that have not said who they are
    // The centre: this node (when it is a VM) and its VM peers.
    if (st.roles.includes("vm")) {
      g.appendChild(el("svg:rect", { x: 20, y: 170, width: 680, height: Math.max(290, 200 + Math.ceil(vms.length / perRow) * 70), rx: 10, class: "centre" }));
      g.appendChild(el("svg:text", { x: 32, y: 190, class: "centre-label" }, "test centre " + (st.orgs || []).join(",") + " (LAN)"));
    }
    g.appendChild(el("svg:text", { x: 32, y: 22, class: "centre-label" }, "central and archive (WAN)"));
    for (const p of peers) {
      const [x, y] = pos.get(p.peer);
      g.appendChild(el("svg:line", { x1: self[0], y1: self[1], x2: x, y2: y, class: "edge " + cls(p.state), "stroke-dasharray": p.connected ? "" : "6 6" }));
    }
    const me = el("svg:g", { class: "self-node", "data-peer": st.id, "data-role": (st.roles || []).join(",") });
    me.appendChild(el("svg:circle", { cx: self[0], cy: self[1], r: 26, class: "self" }));
    me.appendChild(el("svg:text", { x: self[0], y: self[1] + 42, "text-anchor": "middle", class: "strong" }, "this node (" + st.roles.join(",") + ")"));
    me.appendChild(el("svg:text", { x: self[0], y: self[1] + 56, "text-anchor": "middle" }, st.verdict));
    g.appendChild(me);
    for (const p of peers) {
      const [x, y] = pos.get(p.peer);
      const n = el("svg:g", { class: "peer " + cls(p.state), "data-peer": p.peer, "data-state": p.state, "data-role": roleOf(p),
        "data-behind": String(p.behind || 0), "data-missing": String(p.missing || 0) });
      n.appendChild(el("svg:title", {}, p.peer + ": " + p.state + (p.reason ? " (" + p.reason + ")" : "")));
      n.appendChild(el("svg:circle", { cx: x, cy: y, r: 18, class: cls(p.state) }));
      n.appendChild(el("svg:text", { x, y: y + 32, "text-anchor": "middle", class: "strong" }, roleOf(p) + " " + short(p.peer)));
      let state = p.state;
      if (p.behind) state += " · " + p.behind + " behind";
      if (p.missing) state += " · " + p.missing + " heads ahead";
      n.appendChild(el("svg:text", { x, y: y + 45, "text-anchor": "middle" }, state + (p.connected ? (p.lan ? " · LAN" : " · WAN") : "")));
      g.appendChild(n);
    }
  }

  function orgRows(st, syncs, hist) {
    const bySync = new Map((syncs || []).map((s) => [s.org, s]));
    return (st.replicas || []).map((r) => {
      const ps = hist.peers.filter((p) => p.org === r.org);
      const inSync = ps.filter((p) => p.state === "in sync").length;
      const worst = Math.max(0, ...ps.map((p) => p.behind || 0));
      const ahead = Math.max(0, ...ps.map((p) => p.missing || 0));
      const s = bySync.get(r.org) || {};
      const u = s.unconfirmed;
      const refused = r.refused + (r.refused_by_reason && r.refused ? " (" + Object.entries(r.refused_by_reason).map(([k, v]) => k + ": " + v).join("; ") + ")" : "");
      return { attrs: { "data-org": r.org, "data-lag": String(worst), "data-queued": String(r.queued_jobs) }, cells: [
        { v: r.org }, { v: r.records }, { v: r.dag_size }, { v: (r.heads || []).length }, { v: r.max_height }, { v: r.queued_jobs },
        { v: inSync + " of " + ps.length }, { v: worst ? "up to " + worst + " behind" : ahead ? ahead + " heads ahead" : "0" },
        { v: u ? u.records + (u.records ? " since " + when(u.oldest) : "") : "-" }, { v: refused }, { v: r.dirty }] };
    });
  }

  async function refresh() {
    try {
      const [st, syncs, hist] = await Promise.all([get("/v1/status"), get("/v1/sync"), get("/v1/history")]);
      const v = document.getElementById("verdict");
      v.textContent = st.verdict + (st.problems ? ": " + st.problems.join("; ") : "");
      v.dataset.verdict = st.verdict;
      document.getElementById("node").textContent = st.id + " · " + st.roles.join(",") + " · up " + st.uptime + " · " + st.peers_connected + " peers connected · examnode " + st.version;
      drawGraph(st, peersOf(hist));
      rows("orgs", orgRows(st, syncs, hist));
      rows("bundles", (st.bundles || []).map((b) => ({ attrs: { "data-bundle-org": b.org, "data-pending": String(b.states.pending) }, cells: [
        { v: b.org }, { v: b.states.pending }, { v: b.states.archived }] })));
      rows("peers", hist.peers.map((p) => ({ attrs: { "data-peer": p.peer, "data-state": p.state }, cells: [
        { v: short(p.peer) }, { v: (p.roles || []).join(",") }, { v: p.org }, { v: p.state, cls: "state-" + cls(p.state) }, { v: lag(p) },
        { v: p.reason }, { v: when(p.heads_at) }, { v: p.connected ? (p.lan ? "LAN" : "WAN") : "" }, { v: kinds(p.received) }, { v: kinds(p.offered) }] })));
      rows("events", hist.events.slice(-25).reverse().map((e) => ({ attrs: { "data-event": e.event }, cells: [
        { v: when(e.at) }, { v: e.event }, { v: e.org }, { v: e.peer ? short(e.peer) : (e.via || []).map(short).join(" or ") },
        { v: e.count ? e.count + (e.kinds ? " (" + kinds(e.kinds) + ")" : "") : "" }, { v: e.detail }] })));
      document.getElementById("error").hidden = true;
      document.body.dataset.loaded = "1";
    } catch (err) {
      const e = document.getElementById("error");
      e.textContent = "cannot reach the daemon: " + err.message;
      e.hidden = false;
      document.body.dataset.loaded = "error";
    }
  }
  refresh();
  setInterval(refresh, 2000);
})();
