// lockd dashboard: the consensus flow view. One vertical lane per replica,
// one row per message (oldest at the top, newest at the bottom), an arrow
// from the sender's lane to the receiver's, coloured by type; nacks and
// refused pre-votes are red and dashed; role changes are full-width bands.
// A side table summarises each ballot (Phase 1 counts, Phase 2 counts) and
// the most recent slots, so a leader change reads as: prepares/promises
// once under the new ballot, then accepts/accepteds only.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const MAX_KEPT = 600; // messages retained in memory
  const MAX_BEATS = 150; // of which heartbeats at most
  const ROWS = 44; // rows drawn
  const ROW_H = 19, TOP = 36, PAD_X = 70;
  const PHASE1 = new Set(["prepare", "promise"]);
  const PHASE2 = new Set(["accept", "accepted"]);
  const TYPES = [
    ["prepare", "prepare (1a)"], ["promise", "promise (1b)"], ["accept", "accept (2a)"],
    ["accepted", "accepted (2b)"], ["commit", "commit / heartbeat"], ["nack", "nack / refused"],
    ["prevote", "pre-vote"], ["fetch", "catch-up fetch"], ["rejoin", "rejoin"], ["role", "role change"],
  ];

  function el(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function hms(ms) {
    const d = new Date(ms);
    const p = (n, w) => String(n).padStart(w || 2, "0");
    return p(d.getHours()) + ":" + p(d.getMinutes()) + ":" + p(d.getSeconds()) + "." + p(d.getMilliseconds(), 3);
  }

  function isBeat(m) { return m.type === "commit" || m.type === "commit_ack"; }

  function typeClass(m) {
    if (!m.ok && m.type === "prevote_resp") return "t-nack";
    return "t-" + m.type;
  }

  class Flow {
    constructor(opts) {
      this.view = opts.view;
      this.ballotsBody = opts.ballots;
      this.slotsBody = opts.slots;
      this.legend = opts.legend;
      this.messages = [];
      this.replicas = []; // [{id, role, up}]
      this.self = "";
      this.commitIndex = 0;
      this.leaderBallot = "";
      this.paused = false;
      this.showHeartbeats = false;
      this.showPrevotes = true;
      this.dirty = true;
      this.drawLegend();
    }

    drawLegend() {
      if (!this.legend) return;
      this.legend.textContent = "";
      for (const [t, label] of TYPES) {
        const s = document.createElement("span");
        s.className = "t-" + t;
        s.textContent = label;
        this.legend.appendChild(s);
      }
    }

    setCluster(replicas, self, commitIndex, ballot) {
      const key = JSON.stringify(replicas.map((r) => [r.id, r.role, r.up])) + self;
      if (key !== this.clusterKey) this.dirty = true;
      this.clusterKey = key;
      this.replicas = replicas.map((r) => ({ id: r.id, role: r.role, up: r.up }));
      this.self = self;
      if (commitIndex !== this.commitIndex || ballot !== this.leaderBallot) this.dirty = true;
      this.commitIndex = commitIndex;
      this.leaderBallot = ballot;
    }

    add(msgs) {
      if (!msgs.length) return;
      for (const m of msgs) this.messages.push(m);
      if (this.messages.length > MAX_KEPT) {
        // Heartbeats go first, so Phase 1 of the current ballot stays in view
        // even on a quiet cell whose ring is mostly heartbeats.
        let beats = 0;
        for (const m of this.messages) if (isBeat(m)) beats++;
        let drop = Math.max(0, beats - MAX_BEATS);
        if (drop) this.messages = this.messages.filter((m) => !(isBeat(m) && drop-- > 0));
        if (this.messages.length > MAX_KEPT) this.messages.splice(0, this.messages.length - MAX_KEPT);
      }
      this.dirty = true;
    }

    // marker adds a note row (e.g. "replica restarted"), drawn like a band.
    marker(text) {
      this.add([{ seq: -1, time: Date.now(), type: "marker", text: text }]);
    }

    clear() {
      this.messages = [];
      this.dirty = true;
      this.render();
    }

    visible() {
      const out = [];
      let prevBeat = null;
      for (const m of this.messages) {
        if (isBeat(m)) {
          if (!this.showHeartbeats) continue;
          // Collapse repeated heartbeats that say nothing new.
          const k = m.from + ">" + m.to + ":" + m.slot + ":" + m.ballot;
          if (prevBeat && prevBeat.key === k) { prevBeat.repeat++; continue; }
          prevBeat = { key: k, m: Object.assign({}, m, { repeat: 1 }) };
          out.push(prevBeat.m);
          continue;
        }
        if (!this.showPrevotes && (m.type === "prevote" || m.type === "prevote_resp")) continue;
        out.push(m);
      }
      return out.slice(-ROWS);
    }

    render() {
      if (this.paused || !this.dirty) return;
      this.dirty = false;
      this.renderSVG();
      this.renderBallots();
      this.renderSlots();
    }

    laneIds() {
      const ids = this.replicas.map((r) => r.id);
      // A message may name a replica the cluster view does not (yet) list.
      for (const m of this.messages) {
        for (const id of [m.from, m.to]) if (id && !ids.includes(id)) ids.push(id);
      }
      return ids;
    }

    renderSVG() {
      const ids = this.laneIds();
      const rows = this.visible();
      const width = Math.max(560, PAD_X * 2 + (ids.length - 1) * 200);
      const height = TOP + Math.max(rows.length, 6) * ROW_H + 12;
      const x = {};
      const span = ids.length > 1 ? (width - 2 * PAD_X) / (ids.length - 1) : 0;
      ids.forEach((id, i) => { x[id] = ids.length > 1 ? PAD_X + i * span : width / 2; });
      const svg = el("svg", { id: "flow-svg", viewBox: `0 0 ${width} ${height}`, role: "img",
        "aria-label": "consensus messages between replicas" });
      const defs = el("defs");
      svg.appendChild(defs);
      for (const id of ids) {
        const r = this.replicas.find((q) => q.id === id) || { role: "unknown", up: true };
        const cls = "lane" + (id === this.self ? " self" : "") + (r.up ? "" : " down");
        svg.appendChild(el("line", { class: cls, x1: x[id], y1: TOP - 8, x2: x[id], y2: height - 4, "data-lane": id }));
        const tcls = "lane-title" + (r.role === "leader" ? " leader" : "") + (r.up ? "" : " down");
        const label = "replica " + id + (r.role === "leader" ? " ★" : "") + (r.up ? "" : " (down)") + (id === this.self ? " · this" : "");
        svg.appendChild(el("text", { class: tcls, x: x[id], y: 16 }, label));
      }
      rows.forEach((m, i) => {
        const y = TOP + i * ROW_H + ROW_H / 2;
        if (m.type === "role" || m.type === "marker") {
          svg.appendChild(this.band(m, y, width, x));
          return;
        }
        svg.appendChild(this.arrow(m, y, x));
      });
      if (!rows.length) {
        svg.appendChild(el("text", { x: width / 2, y: TOP + 40, "text-anchor": "middle", class: "lane-title" },
          "waiting for consensus messages…"));
      }
      this.view.textContent = "";
      this.view.appendChild(svg);
    }

    band(m, y, width, x) {
      const g = el("g", { class: "band t-role", "data-type": m.type, "data-seq": m.seq });
      g.appendChild(el("rect", { x: 4, y: y - ROW_H / 2 + 1, width: width - 8, height: ROW_H - 2, rx: 3 }));
      let text = m.text;
      if (m.type === "role") {
        text = "replica " + m.from + " → " + (m.role || "?").toUpperCase() +
          (m.leader ? "  (leader " + m.leader + ")" : "  (no leader)") + (m.ballot ? "  ballot " + m.ballot : "");
        g.setAttribute("data-role", m.role || "");
        g.setAttribute("data-from", m.from);
      }
      g.appendChild(el("text", { x: 12, y: y + 4 }, hms(m.time) + "  " + text));
      return g;
    }

    arrow(m, y, x) {
      const g = el("g", {
        class: "msg " + typeClass(m) + (m.ok ? "" : " notok"), "data-seq": m.seq, "data-type": m.type,
        "data-from": m.from, "data-to": m.to, "data-ok": String(!!m.ok),
      });
      const x1 = x[m.from], x2 = x[m.to];
      if (x1 === undefined || x2 === undefined) return g;
      const dir = x2 >= x1 ? 1 : -1;
      const tip = x2 - dir * 3;
      g.appendChild(el("line", { x1: x1, y1: y, x2: tip - dir * 6, y2: y }));
      g.appendChild(el("polygon", { points: `${tip},${y} ${tip - dir * 8},${y - 4} ${tip - dir * 8},${y + 4}` }));
      let label = m.type;
      if (!m.ok) label += m.type === "nack" ? " ✗" : " (refused)";
      if (m.ballot && m.ballot !== "0.0") label += " b" + m.ballot;
      if (m.type === "commit") label += " ≤" + m.slot;
      else if (m.slots > 1) label += " s" + m.slot + "–" + (m.slot + m.slots - 1);
      else if (m.slots === 1 || m.slot) label += " s" + m.slot;
      if (m.repeat > 1) label += " ×" + m.repeat;
      const mid = (x1 + x2) / 2;
      g.appendChild(el("text", { class: "label", x: mid, y: y - 3, "text-anchor": "middle" }, label));
      const tx = Math.min(x1, x2) - 6;
      g.appendChild(el("text", { class: "time", x: tx, y: y + 4, "text-anchor": "end" }, hms(m.time).slice(3)));
      const title = el("title", {}, `#${m.seq} ${m.type} ${m.from}→${m.to} ballot ${m.ballot} slot ${m.slot}` +
        (m.slots ? ` (${m.slots} slots)` : "") + (m.ok ? "" : " REJECTED") + (m.sent ? " [sent]" : " [received]"));
      g.appendChild(title);
      return g;
    }

    renderBallots() {
      if (!this.ballotsBody) return;
      const by = new Map();
      for (const m of this.messages) {
        if (!m.ballot || m.ballot === "0.0" || m.type === "role" || m.type === "marker") continue;
        if (!PHASE1.has(m.type) && !PHASE2.has(m.type) && m.type !== "nack") continue;
        let b = by.get(m.ballot);
        if (!b) { b = { ballot: m.ballot, prepare: 0, promise: 0, accept: 0, accepted: 0, nack: 0, lo: Infinity, hi: 0 }; by.set(m.ballot, b); }
        b[m.type]++;
        if (PHASE2.has(m.type) && m.slot) {
          b.lo = Math.min(b.lo, m.slot);
          b.hi = Math.max(b.hi, m.slot + Math.max(m.slots, 1) - 1);
        }
      }
      const list = [...by.values()].sort((a, b) => cmpBallot(b.ballot, a.ballot)).slice(0, 8);
      this.ballotsBody.textContent = "";
      for (const b of list) {
        const tr = document.createElement("tr");
        tr.setAttribute("data-ballot", b.ballot);
        if (b.ballot === this.leaderBallot) tr.className = "current";
        cell(tr, b.ballot);
        cell(tr, b.prepare + " / " + b.promise, "p1");
        cell(tr, b.accept + " / " + b.accepted, "p2");
        cell(tr, String(b.nack), b.nack ? "bad" : "");
        cell(tr, !b.hi ? "—" : b.lo === b.hi ? String(b.lo) : b.lo + "–" + b.hi);
        this.ballotsBody.appendChild(tr);
      }
      if (!list.length) emptyRow(this.ballotsBody, 5, "no ballots seen yet");
    }

    renderSlots() {
      if (!this.slotsBody) return;
      const slots = new Map();
      for (const m of this.messages) {
        if (!PHASE2.has(m.type) || !m.slot) continue;
        for (let s = m.slot; s < m.slot + Math.max(m.slots, 1); s++) {
          let e = slots.get(s);
          if (!e) { e = { slot: s, ballot: m.ballot, sent: new Set(), acked: new Set() }; slots.set(s, e); }
          if (cmpBallot(m.ballot, e.ballot) > 0) { e.ballot = m.ballot; e.sent.clear(); e.acked.clear(); }
          if (m.ballot !== e.ballot) continue;
          (m.type === "accept" ? e.sent : e.acked).add(m.from + "→" + m.to);
        }
      }
      const list = [...slots.values()].sort((a, b) => b.slot - a.slot).slice(0, 10);
      this.slotsBody.textContent = "";
      for (const e of list) {
        const tr = document.createElement("tr");
        tr.setAttribute("data-slot", e.slot);
        cell(tr, String(e.slot));
        cell(tr, e.ballot);
        const td = document.createElement("td");
        const a = document.createElement("span");
        a.className = "sent";
        a.textContent = e.sent.size ? "A " + [...e.sent].sort().join(" ") : "";
        const b = document.createElement("span");
        b.className = "ack";
        b.textContent = e.acked.size ? "  ✓ " + [...e.acked].sort().join(" ") : "";
        td.append(a, b);
        tr.appendChild(td);
        const chosen = this.commitIndex >= e.slot;
        cell(tr, chosen ? "chosen" : "in flight", chosen ? "chosen" : "");
        this.slotsBody.appendChild(tr);
      }
      if (!list.length) emptyRow(this.slotsBody, 4, "no phase 2 traffic seen yet");
    }
  }

  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  function emptyRow(body, cols, text) {
    const tr = document.createElement("tr");
    const td = cell(tr, text, "empty");
    td.colSpan = cols;
    body.appendChild(tr);
  }

  // cmpBallot orders "round.node" strings numerically.
  function cmpBallot(a, b) {
    const [ar, an] = String(a).split(".").map(Number);
    const [br, bn] = String(b).split(".").map(Number);
    return ar !== br ? ar - br : an - bn;
  }

  window.LockdFlow = Flow;
  window.LockdFlow.hms = hms;
})();
