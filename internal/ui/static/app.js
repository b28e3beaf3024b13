// lockd dashboard. Talks only to the replica that served the page (same
// origin, URLs relative to it): polls the cell view, the consensus flow,
// sessions and locks, and follows the cell's events as Server-Sent Events.
// When the cell answers 401/403 it asks for an administrator's token, keeps
// it in sessionStorage (this tab only) and sends it as Authorization: Bearer
// on every request, the event stream included (read with fetch, since
// EventSource cannot send headers).
// Everything is built with DOM calls and textContent (labels, paths and
// hosts come from clients), never innerHTML.
"use strict";

(function () {
  const BASE = new URL("../", document.baseURI); // the page is at <base>/ui/
  const CLUSTER_MS = 500, FLOW_MS = 300, TABLES_MS = 1000, TICK_MS = 250;
  const UNREACHABLE_AFTER = 2; // failed cluster polls in a row
  const MAX_EVENTS = 200;

  const $ = (id) => document.getElementById(id);
  const state = {
    reachable: null, failures: 0, lastError: "",
    cluster: null, selfId: "", selfUptime: -1,
    flowSince: 0, cell: "",
    seenSessions: new Set(), seenLocks: new Set(),
    lastEventId: "", sse: null, sseBackoff: 500, sseTimer: null,
  };
  const flow = new window.LockdFlow({
    view: $("flow-view"), ballots: $("flow-ballots").tBodies[0], slots: $("flow-slots").tBodies[0],
    legend: $("flow-legend"),
  });

  // ---- helpers -------------------------------------------------------

  function api(path) { return new URL(path, BASE).toString(); }

  // ---- authentication ------------------------------------------------

  const TOKEN_KEY = "lockd.token";
  function token() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch (e) { return ""; }
  }
  function headers(extra) {
    const h = Object.assign({}, extra || {});
    const t = token();
    if (t) h.Authorization = "Bearer " + t;
    return h;
  }
  // needToken shows the token form after a 401 or 403 (once per kind of
  // refusal, so polling does not keep resetting what is being typed).
  function needToken(status, message) {
    const banner = $("auth-banner");
    const detail = status === 401
      ? (token() ? "The token was not accepted" : "No token yet") + " (401 unauthenticated)."
      : "The token is not an administrator's (403 permission_denied): " + (message || "");
    if (!banner.hidden && $("auth-detail").textContent === detail) return;
    $("auth-detail").textContent = detail;
    banner.hidden = false;
    if (document.activeElement !== $("token-input")) $("token-input").focus();
  }
  function wireTokenForm() {
    const save = () => {
      const v = $("token-input").value.trim();
      try {
        if (v) sessionStorage.setItem(TOKEN_KEY, v); else sessionStorage.removeItem(TOKEN_KEY);
      } catch (e) { console.debug("lockd ui: no sessionStorage", e); }
      $("token-input").value = "";
      $("auth-banner").hidden = true;
      restartSSE(false);
    };
    $("token-save").addEventListener("click", save);
    $("token-input").addEventListener("keydown", (e) => { if (e.key === "Enter") save(); });
    $("token-forget").addEventListener("click", () => {
      try { sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* nothing kept */ }
      $("token-input").value = "";
      needToken(401, "");
    });
  }

  class HTTPError extends Error {
    constructor(status, code, message) {
      super(message || "HTTP " + status);
      this.status = status;
      this.code = code;
    }
  }

  async function getJSON(path, timeoutMs) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), timeoutMs || 2000);
    try {
      const res = await fetch(api(path), { cache: "no-store", signal: ctl.signal, headers: headers({ Accept: "application/json" }) });
      const body = await res.json().catch(() => null);
      if (!res.ok) {
        const e = (body && body.error) || {};
        if (res.status === 401 || res.status === 403) needToken(res.status, e.message);
        throw new HTTPError(res.status, e.code || "", (e.code ? e.code + ": " : "") + (e.message || "HTTP " + res.status));
      }
      return body;
    } finally {
      clearTimeout(timer);
    }
  }

  // loop runs fn every interval ms, never two at once.
  function loop(fn, interval) {
    const run = async () => {
      const start = Date.now();
      try { await fn(); } catch (e) { console.debug("lockd ui:", e); }
      setTimeout(run, Math.max(50, interval - (Date.now() - start)));
    };
    run();
  }

  function h(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) {
      if (attrs[k] === undefined || attrs[k] === null) continue;
      if (k === "class") e.className = attrs[k];
      else e.setAttribute(k, attrs[k]);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    }
    return e;
  }

  function fmtMs(ms) {
    if (ms === undefined || ms === null || ms < 0) return "—";
    if (ms < 1000) return Math.round(ms) + " ms";
    if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
    const m = Math.floor(ms / 60000), s = Math.floor((ms % 60000) / 1000);
    if (m < 60) return m + "m " + String(s).padStart(2, "0") + "s";
    return Math.floor(m / 60) + "h " + String(m % 60).padStart(2, "0") + "m";
  }

  // countdown/countup elements are refreshed by tick() between polls.
  function countdown(e, remainingMs) {
    e.setAttribute("data-deadline", String(Date.now() + Math.max(0, remainingMs)));
    e.removeAttribute("data-since");
    e.textContent = fmtMs(remainingMs);
    return e;
  }
  function countup(e, elapsedMs) {
    e.setAttribute("data-since", String(Date.now() - Math.max(0, elapsedMs)));
    e.removeAttribute("data-deadline");
    e.textContent = fmtMs(elapsedMs);
    return e;
  }
  function tick() {
    const now = Date.now();
    for (const e of document.querySelectorAll("[data-deadline]")) {
      e.textContent = fmtMs(Math.max(0, Number(e.getAttribute("data-deadline")) - now));
    }
    for (const e of document.querySelectorAll("[data-since]")) {
      e.textContent = fmtMs(now - Number(e.getAttribute("data-since")));
    }
  }

  // dashboardURL is a replica's dashboard; an unspecified listen host
  // (0.0.0.0, [::]) is replaced by the host this page was loaded from.
  function dashboardURL(clientURL) {
    try {
      const u = new URL(clientURL);
      if (u.hostname === "0.0.0.0" || u.hostname === "[::]" || u.hostname === "::" || u.hostname === "") {
        u.hostname = location.hostname;
      }
      u.pathname = "/ui/";
      return u.toString();
    } catch (e) {
      return clientURL + "/ui/";
    }
  }

  // ---- cell view ------------------------------------------------------

  async function pollCluster() {
    let c;
    try {
      c = await getJSON("v1/cluster", 2500);
    } catch (e) {
      if (e instanceof HTTPError) { // it answers, but with an error
        setReachable(true, (e.status === 401 || e.status === 403 ? "needs an administrator's token: " : "cell view: ") + e.message);
        return;
      }
      state.failures++;
      state.lastError = e.name === "AbortError" ? "no answer within 2.5 s" : String(e.message || e);
      if (state.failures >= UNREACHABLE_AFTER) setReachable(false, state.lastError);
      return;
    }
    state.failures = 0;
    setReachable(true, "");
    state.cluster = c;
    state.selfId = c.self || "";
    const self = (c.replicas || []).find((r) => r.id === c.self);
    if (self) {
      if (state.selfUptime >= 0 && self.uptime_ms + 1000 < state.selfUptime) {
        // The replica restarted: its flow sequence started again.
        state.flowSince = 0;
        flow.marker("replica " + c.self + " restarted");
      }
      state.selfUptime = self.uptime_ms;
    }
    if (c.cell && c.cell !== state.cell) {
      state.cell = c.cell;
      restartSSE(true);
    }
    renderCluster(c);
  }

  function setReachable(ok, detail) {
    const was = state.reachable;
    state.reachable = ok;
    document.body.setAttribute("data-reachable", String(ok));
    const conn = $("conn");
    conn.setAttribute("data-state", ok ? (detail ? "warn" : "ok") : "error");
    $("conn-text").textContent = ok ? (detail || "live · updated " + window.LockdFlow.hms(Date.now()).slice(0, 8))
      : "unreachable";
    const banner = $("unreachable-banner");
    banner.hidden = ok;
    if (!ok) {
      $("unreachable-detail").textContent = "Replica " + (state.selfId || "?") + " at " + location.host +
        " does not answer (" + detail + "). Retrying every " + CLUSTER_MS / 1000 + " s; the data below is the last seen.";
      renderOtherLinks();
      markSelfDown();
      if (state.sse) state.sse.abort(); // reconnects (with Last-Event-ID) once it answers again
      document.title = "⚠ unreachable · lockd";
    } else if (was === false) {
      // Back: the flow ring may have been reset; uptime tells (pollCluster).
      restartSSE(false);
    }
  }

  function renderOtherLinks() {
    const box = $("other-replicas");
    box.textContent = "";
    const rs = (state.cluster && state.cluster.replicas) || [];
    for (const r of rs) {
      if (r.id === state.selfId) continue;
      box.appendChild(h("a", { href: dashboardURL(r.client_url), "data-replica-link": r.id },
        "replica " + r.id + (r.up ? "" : " (was down)")));
    }
    if (!box.childNodes.length) box.textContent = "none known yet";
  }

  function markSelfDown() {
    for (const card of document.querySelectorAll(".replica")) {
      if (card.getAttribute("data-replica") === state.selfId) {
        card.setAttribute("data-up", "false");
        card.setAttribute("data-role", "down");
        const badge = card.querySelector(".badge.role");
        badge.className = "badge role down";
        badge.textContent = "DOWN";
      } else {
        card.setAttribute("data-stale", "true");
      }
    }
  }

  function renderCluster(c) {
    $("cell-name").textContent = c.cell || "?";
    const leader = $("leader-id");
    leader.textContent = c.leader || "none";
    leader.setAttribute("data-leader", c.leader || "");
    $("ballot").textContent = c.ballot || "—";
    const lease = $("lease-remaining");
    if (c.leader) countdown(lease, c.lease_remaining_ms);
    else { lease.removeAttribute("data-deadline"); lease.textContent = "—"; }
    $("self-id").textContent = c.self ? "replica " + c.self : "?";
    document.title = "lockd · " + (c.cell || "") + " · leader " + (c.leader || "none");

    const box = $("replicas");
    const seen = new Set();
    let leaderCommit = 0;
    for (const r of c.replicas || []) {
      seen.add(r.id);
      let card = box.querySelector(`.replica[data-replica="${CSS.escape(r.id)}"]`);
      if (!card) {
        card = buildCard(r.id);
        box.appendChild(card);
      }
      updateCard(card, r, c);
      if (r.up && r.role === "leader") leaderCommit = r.commit_index;
    }
    for (const card of [...box.children]) {
      if (!seen.has(card.getAttribute("data-replica"))) card.remove();
    }
    flow.setCluster(c.replicas || [], c.self, leaderCommit || ((c.replicas || []).find((r) => r.id === c.self) || {}).commit_index || 0,
      c.ballot || "");
  }

  const FIELDS = [
    ["ballot", "ballot"], ["commit", "commit index"], ["applied", "applied index"], ["lag", "lag"],
    ["snapshot", "snapshot index"], ["contact", "last contact"], ["member", "memberlist"],
    ["knows", "leader it knows"], ["lease", "lease left"], ["uptime", "uptime"],
  ];

  function buildCard(id) {
    const dl = h("dl");
    for (const [k, label] of FIELDS) {
      dl.appendChild(h("dt", null, label));
      dl.appendChild(h("dd", { "data-field": k }, "—"));
    }
    return h("article", { class: "replica", "data-replica": id },
      h("div", { class: "head" }, h("span", { class: "rid" }, id), h("span", { class: "badge role" }, "?"),
        h("span", { class: "badge self", hidden: "" }, "this page")),
      dl, h("a", { class: "link", hidden: "" }, "open its dashboard →"));
  }

  function updateCard(card, r, c) {
    const up = !!r.up;
    const role = up ? (r.recovering ? "recovering" : r.role || "follower") : "down";
    const isSelf = r.id === c.self;
    card.setAttribute("data-role", role);
    card.setAttribute("data-up", String(up));
    card.setAttribute("data-self", String(isSelf));
    card.setAttribute("data-member", r.member_status || "");
    card.removeAttribute("data-stale");
    const badge = card.querySelector(".badge.role");
    badge.className = "badge role " + role;
    badge.textContent = role === "leader" ? "LEADER" : role === "down" ? "DOWN" : role;
    card.querySelector(".badge.self").hidden = !isSelf;
    const f = (k) => card.querySelector(`dd[data-field="${k}"]`);
    const num = (v) => (up ? String(v ?? "—") : "—");
    f("ballot").textContent = up ? r.promised_ballot || "—" : "—";
    f("commit").textContent = num(r.commit_index);
    f("applied").textContent = num(r.applied_index);
    f("lag").textContent = num(r.lag);
    f("lag").classList.toggle("lagging", up && r.lag > 0);
    f("snapshot").textContent = num(r.snapshot_index);
    const contact = f("contact");
    if (isSelf) { contact.removeAttribute("data-since"); contact.textContent = "this replica"; }
    else if (r.last_contact_ms < 0) { contact.removeAttribute("data-since"); contact.textContent = "never"; }
    else countup(contact, r.last_contact_ms);
    const member = f("member");
    member.textContent = r.member_status || "—";
    member.className = "member-" + (r.member_status || "none");
    f("knows").textContent = up ? r.leader || "none" : "—";
    const lease = f("lease");
    if (up && r.role === "leader") countdown(lease, r.lease_remaining_ms);
    else { lease.removeAttribute("data-deadline"); lease.textContent = "—"; }
    const uptime = f("uptime");
    if (up) countup(uptime, r.uptime_ms); else { uptime.removeAttribute("data-since"); uptime.textContent = "—"; }
    const link = card.querySelector("a.link");
    link.hidden = isSelf || !r.client_url;
    if (r.client_url) link.href = dashboardURL(r.client_url);
    link.setAttribute("data-replica-link", r.id);
  }

  // ---- consensus flow ------------------------------------------------

  async function pollFlow() {
    if (state.reachable === false) return;
    const body = await getJSON("v1/cluster/flow?since=" + state.flowSince, 2000);
    const msgs = (body && body.messages) || [];
    if (!msgs.length) return;
    const first = msgs[0].seq;
    if (state.flowSince > 0 && first > state.flowSince) {
      flow.marker((first - state.flowSince) + " messages not shown (overwritten before they were read)");
    }
    state.flowSince = msgs[msgs.length - 1].seq + 1;
    flow.add(msgs);
  }

  function wireFlowControls() {
    const hb = $("flow-heartbeats"), pv = $("flow-prevotes"), pause = $("flow-pause");
    flow.showHeartbeats = hb.checked;
    flow.showPrevotes = pv.checked;
    hb.addEventListener("change", () => { flow.showHeartbeats = hb.checked; flow.dirty = true; flow.render(); });
    pv.addEventListener("change", () => { flow.showPrevotes = pv.checked; flow.dirty = true; flow.render(); });
    pause.addEventListener("click", () => {
      flow.paused = !flow.paused;
      pause.setAttribute("aria-pressed", String(flow.paused));
      pause.textContent = flow.paused ? "resume" : "pause";
      flow.dirty = true;
      flow.render();
    });
    $("flow-clear").addEventListener("click", () => flow.clear());
  }

  // ---- sessions and locks -------------------------------------------

  // readTable reads a linearizable list; when that fails (no leader during
  // an election) it falls back to this replica's applied state.
  async function readTable(path, status) {
    try {
      const body = await getJSON(path, 2500);
      status.textContent = "";
      status.removeAttribute("data-state");
      status.classList.remove("stale");
      return body;
    } catch (e) {
      if (e instanceof HTTPError && (e.status === 401 || e.status === 403)) {
        status.textContent = "not shown: " + e.message;
        status.setAttribute("data-state", "error");
        return null;
      }
      try {
        const body = await getJSON(path + "?stale=true", 2500);
        status.textContent = "stale: this replica's view (" + e.message + ")";
        status.classList.add("stale");
        return body;
      } catch (e2) {
        status.textContent = "not updated: " + e.message;
        status.setAttribute("data-state", "error");
        return null;
      }
    }
  }

  async function pollSessions() {
    if (state.reachable === false) return;
    const body = await readTable("v1/sessions", $("sessions-status"));
    if (!body) return;
    const list = (body.sessions || []).slice().sort((a, b) => (a.created_index || 0) - (b.created_index || 0));
    const tb = $("sessions-table").tBodies[0];
    tb.textContent = "";
    for (const s of list) {
      const fresh = !state.seenSessions.has(s.id);
      state.seenSessions.add(s.id);
      const lease = countdown(h("td", { class: "num" }), s.lease_remaining_ms);
      if (s.ttl_ms && s.lease_remaining_ms < s.ttl_ms / 4) lease.classList.add("expiring");
      tb.appendChild(h("tr", { "data-session": s.id, class: fresh ? "fresh" : null },
        h("td", { class: "nowrap", title: "created at index " + s.created_index }, s.id), h("td", null, s.label || ""),
        h("td", null, s.host || ""), h("td", { class: "num" }, s.pid ? String(s.pid) : ""),
        h("td", { class: "num" }, fmtMs(s.ttl_ms)), lease,
        pathList(s.locks), pathList(s.ephemerals)));
    }
    if (!list.length) tb.appendChild(h("tr", null, h("td", { class: "empty", colspan: "8" }, "no sessions")));
    $("sessions-count").textContent = String(list.length);
  }

  function pathList(paths) {
    const td = h("td");
    for (const p of paths || []) td.appendChild(h("span", { class: "chip" }, p));
    if (!(paths || []).length) td.textContent = "—";
    return td;
  }

  async function pollLocks() {
    if (state.reachable === false) return;
    const body = await readTable("v1/locks", $("locks-status"));
    if (!body) return;
    const list = (body.locks || []).slice().sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    const tb = $("locks-table").tBodies[0];
    tb.textContent = "";
    for (const l of list) {
      const key = l.path + "#" + l.generation;
      const fresh = !state.seenLocks.has(key);
      state.seenLocks.add(key);
      const holders = h("td");
      for (const x of l.holders || []) {
        holders.appendChild(h("span", { class: "chip" + ((x.mode || l.mode) === "exclusive" ? " excl" : ""),
          "data-holder": x.session, title: [x.host, x.pid ? "pid " + x.pid : "", "since index " + x.since_index].filter(Boolean).join(" · ") },
        x.session + (x.label ? " · " + x.label : "")));
      }
      if (!(l.holders || []).length) holders.textContent = "free";
      const waiters = h("td");
      (l.waiters || []).forEach((w, i) => {
        const wait = countup(h("span", { class: "num" }), w.waiting_ms);
        waiters.appendChild(h("span", { class: "chip", "data-waiter": w.session, "data-position": String(i + 1) },
          (i + 1) + ". " + w.session + (w.label ? " · " + w.label : "") + " (" + (w.mode || "exclusive") + ") ", wait));
      });
      if (!(l.waiters || []).length) waiters.textContent = "—";
      const delay = h("td", { class: "num" });
      if (l.lock_delay_remaining_ms > 0) { countdown(delay, l.lock_delay_remaining_ms); delay.classList.add("delayed"); }
      else delay.textContent = "—";
      tb.appendChild(h("tr", { "data-lock": l.path, "data-mode": l.mode || "", class: fresh ? "fresh" : null },
        h("td", { class: "nowrap" }, l.path), h("td", null, (l.holders || []).length ? l.mode || "" : "—"),
        h("td", null, String(l.generation ?? "")), holders, waiters, delay));
    }
    if (!list.length) tb.appendChild(h("tr", null, h("td", { class: "empty", colspan: "6" }, "no locks held or awaited")));
    $("locks-count").textContent = String(list.length);
  }

  // ---- events (SSE over fetch, so any event type, status codes and
  // Last-Event-ID are under our control) -------------------------------

  function restartSSE(fromNow) {
    if (fromNow) state.lastEventId = "";
    const old = state.sse;
    state.sse = null; // its failure must not schedule another connection
    if (old) old.abort();
    clearTimeout(state.sseTimer);
    state.sseBackoff = 500;
    state.sseTimer = setTimeout(connectSSE, 0);
  }

  function eventsStatus(text, st) {
    const e = $("events-status");
    e.textContent = text;
    e.setAttribute("data-state", st);
  }

  async function connectSSE() {
    if (!state.cell || state.reachable === false) { scheduleSSE(); return; }
    const ctl = new AbortController();
    state.sse = ctl;
    const hdrs = headers({ Accept: "text/event-stream" });
    if (state.lastEventId) hdrs["Last-Event-ID"] = state.lastEventId;
    try {
      const res = await fetch(api("v1/watch/ls/" + encodeURIComponent(state.cell) + "?recursive=true"),
        { headers: hdrs, cache: "no-store", signal: ctl.signal });
      if (res.status === 401 || res.status === 403) {
        const body = await res.json().catch(() => null);
        needToken(res.status, body && body.error && body.error.message);
        throw new Error("needs a token (HTTP " + res.status + ")");
      }
      if (res.status === 410) {
        addMarker("event history compacted past index " + state.lastEventId + "; some events were missed, resuming from now");
        state.lastEventId = "";
        throw new Error("compacted");
      }
      if (!res.ok || !res.body) throw new Error("HTTP " + res.status);
      eventsStatus("live" + (state.lastEventId ? " (resumed after index " + state.lastEventId + ")" : ""), "live");
      state.sseBackoff = 500;
      await readStream(res.body.getReader(), ctl);
      throw new Error("stream ended");
    } catch (e) {
      if (state.sse !== ctl) return; // replaced by a newer connection
      state.sse = null;
      eventsStatus("reconnecting… (" + (e.name === "AbortError" ? "aborted" : e.message) + ")", "error");
      scheduleSSE();
    }
  }

  function scheduleSSE() {
    clearTimeout(state.sseTimer);
    state.sseTimer = setTimeout(connectSSE, state.sseBackoff);
    state.sseBackoff = Math.min(state.sseBackoff * 2, 5000);
  }

  // readStream parses the stream until it ends. The server sends a
  // keep-alive comment every 15 s, so 45 s of silence means a dead link.
  async function readStream(reader, ctl) {
    const dec = new TextDecoder();
    let buf = "", ev = { type: "", data: [], id: null };
    let stall = setTimeout(() => ctl.abort(), 45000);
    for (;;) {
      let chunk;
      try { chunk = await reader.read(); } finally { clearTimeout(stall); }
      const { value, done } = chunk;
      if (done) return;
      stall = setTimeout(() => ctl.abort(), 45000);
      buf += dec.decode(value, { stream: true });
      let nl;
      while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + (buf.startsWith("\r\n", nl) ? 2 : 1));
        if (line === "") {
          if (ev.data.length) dispatch(ev);
          ev = { type: "", data: [], id: null };
          continue;
        }
        if (line.startsWith(":")) continue; // comment / keep-alive
        const i = line.indexOf(":");
        const field = i < 0 ? line : line.slice(0, i);
        let val = i < 0 ? "" : line.slice(i + 1);
        if (val.startsWith(" ")) val = val.slice(1);
        if (field === "event") ev.type = val;
        else if (field === "data") ev.data.push(val);
        else if (field === "id") ev.id = val;
      }
    }
  }

  function dispatch(raw) {
    if (raw.id !== null && raw.id !== "") state.lastEventId = raw.id;
    let e;
    try { e = JSON.parse(raw.data.join("\n")); } catch (err) { e = { type: raw.type, path: raw.data.join(" ") }; }
    if (raw.type === "error") {
      // The stream fell behind the retained history (or failed); the server
      // ends it after this. Compacted: resume from now, saying so.
      const body = (e && e.error) || {};
      if (body.code === "compacted") state.lastEventId = "";
      addMarker("stream error: " + (body.code || "") + " " + (body.message || "") +
        (body.code === "compacted" ? " — some events were missed; resuming from now" : ""));
      return;
    }
    e.type = e.type || raw.type || "message";
    addEvent(e);
  }

  function addEvent(e) {
    const list = $("events-list");
    const detail = [e.path, e.child ? "child " + e.child : "", e.session ? "session " + e.session : "",
      e.generation ? "gen " + e.generation : "", e.leader ? "leader " + e.leader : ""].filter(Boolean).join("  ");
    list.insertBefore(h("li", { "data-index": String(e.index ?? ""), "data-type": e.type },
      h("span", { class: "muted" }, window.LockdFlow.hms(Date.now()).slice(0, 12)),
      h("span", { class: "num" }, "#" + (e.index ?? "")), h("span", { class: "etype" }, e.type), h("span", null, detail)),
    list.firstChild);
    while (list.children.length > MAX_EVENTS) list.lastChild.remove();
  }

  function addMarker(text) {
    const list = $("events-list");
    list.insertBefore(h("li", { class: "marker" }, window.LockdFlow.hms(Date.now()).slice(0, 8) + " " + text), list.firstChild);
  }

  // ---- start -----------------------------------------------------------

  wireFlowControls();
  wireTokenForm();
  loop(pollCluster, CLUSTER_MS);
  loop(pollFlow, FLOW_MS);
  loop(pollSessions, TABLES_MS);
  loop(pollLocks, TABLES_MS);
  setInterval(tick, TICK_MS);
  setInterval(() => flow.render(), 200);
  eventsStatus("waiting for the cell name…", "idle");
})();
