// examnode status page: fetches /v1/status and /v1/history with the bearer
// token given as ?token= and redraws every 2 s. No external assets.
"use strict";
(function () {
  const params = new URLSearchParams(location.search);
  const token = params.get("token") || sessionStorage.getItem("examnode-token") || "";
  if (params.has("token")) {
    sessionStorage.setItem("examnode-token", token);
    history.replaceState(null, "", location.pathname); // keep the token out of the address bar
  }
  const SVG = "http://www.w3.org/2000/svg";
  const rank = { "error": 3, "disconnected": 2, "behind": 1, "in sync": 0 };
  const cls = (s) => s.replace(/ /g, "-");
  const short = (id) => id.length > 16 ? id.slice(0, 8) + "…" + id.slice(-6) : id;
  const when = (t) => t ? new Date(t).toLocaleTimeString() : "never";
  const kinds = (m) => m ? Object.entries(m).map(([k, v]) => k + " " + v).join(", ") : "";

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
      for (const c of r.cells) {
        const td = el("td", c.cls ? { class: c.cls } : {}, String(c.v ?? ""));
        tr.appendChild(td);
      }
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

  function drawGraph(st, peers) {
    const g = document.getElementById("graph");
    g.replaceChildren();
    const cx = 320, cy = 210, R = 160;
    const pos = peers.map((p, i) => {
      const a = (2 * Math.PI * i) / Math.max(peers.length, 1) - Math.PI / 2;
      return [cx + R * Math.cos(a), cy + R * Math.sin(a)];
    });
    peers.forEach((p, i) => {
      g.appendChild(el("svg:line", { x1: cx, y1: cy, x2: pos[i][0], y2: pos[i][1], class: cls(p.state),
        "stroke-dasharray": p.connected ? "" : "6 6" }));
    });
    const self = el("svg:g", { class: "self-node", "data-peer": st.id });
    self.appendChild(el("svg:circle", { cx, cy, r: 26, class: "self" }));
    self.appendChild(el("svg:text", { x: cx, y: cy + 42, "text-anchor": "middle" }, "this node (" + st.roles.join(",") + ")"));
    g.appendChild(self);
    peers.forEach((p, i) => {
      const n = el("svg:g", { class: "peer " + cls(p.state), "data-peer": p.peer, "data-state": p.state });
      n.appendChild(el("svg:title", {}, p.peer + ": " + p.state + (p.reason ? " (" + p.reason + ")" : "")));
      n.appendChild(el("svg:circle", { cx: pos[i][0], cy: pos[i][1], r: 18, class: cls(p.state) }));
      n.appendChild(el("svg:text", { x: pos[i][0], y: pos[i][1] + 32, "text-anchor": "middle" },
        (p.roles || []).join(",") + " " + short(p.peer)));
      n.appendChild(el("svg:text", { x: pos[i][0], y: pos[i][1] + 45, "text-anchor": "middle" }, p.state));
      g.appendChild(n);
    });
  }

  async function refresh() {
    try {
      const [st, hist] = await Promise.all([get("/v1/status"), get("/v1/history")]);
      const v = document.getElementById("verdict");
      v.textContent = st.verdict + (st.problems ? ": " + st.problems.join("; ") : "");
      v.dataset.verdict = st.verdict;
      document.getElementById("node").textContent = st.id + " · " + st.roles.join(",") + " · up " + st.uptime + " · " + st.peers_connected + " peers connected";
      drawGraph(st, peersOf(hist));
      rows("orgs", (st.replicas || []).map((r) => ({ attrs: { "data-org": r.org }, cells: [
        { v: r.org }, { v: r.records }, { v: (r.heads || []).length }, { v: r.max_height }, { v: r.queued_jobs },
        { v: r.records_written }, { v: (r.peers || []).length }, { v: r.dirty }] })));
      rows("peers", hist.peers.map((p) => ({ attrs: { "data-peer": p.peer, "data-state": p.state }, cells: [
        { v: short(p.peer) }, { v: (p.roles || []).join(",") }, { v: p.org }, { v: p.state, cls: "state-" + cls(p.state) },
        { v: p.reason }, { v: when(p.last_exchange) }, { v: kinds(p.received) }, { v: kinds(p.offered) }] })));
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
