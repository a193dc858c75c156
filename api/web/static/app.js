// transferd dashboard: reads the /v1 query API and its Server-Sent Events
// with the sign-in cookie (HttpOnly: this script never sees the token).
// Every node is built with createElement and text nodes; no data is ever
// parsed as HTML, so nothing a payload holds can become markup.
"use strict";

(() => {
  const body = document.body;
  const PHASES = (body.dataset.phases || "").split(" ").filter(Boolean);
  const KINDS = (body.dataset.kinds || "").split(" ").filter(Boolean);
  const FILTERS = ["phase", "needsAction", "cloudUrl", "migrationId", "tenant"];

  // ---- building blocks -------------------------------------------------

  // el returns a new element with attributes set as attributes (strings,
  // never markup) and children appended as nodes or text.
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.className = v;
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      e.append(c instanceof Node ? c : String(c));
    }
    return e;
  }

  function clear(node) {
    node.replaceChildren();
    return node;
  }

  const byId = (id) => document.getElementById(id);

  // clip shows text cut to its column's width, whole in its title.
  function clip(text, cls, title) {
    return el("span", { class: "clip " + (cls || ""), title: title || text }, text);
  }

  function transferHref(id) {
    return "/transfers/" + encodeURIComponent(id);
  }

  function phaseLabel(p) {
    return String(p || "unknown").replaceAll("_", " ");
  }

  function phasePill(p) {
    return el("span", { class: "phase", "data-phase": p }, phaseLabel(p));
  }

  function actionBadge(v) {
    return v.needsAction ? el("span", { class: "badge action", title: "The partner must " + v.needsAction + " this transfer" }, "needs action · " + v.needsAction) : null;
  }

  // ---- time ------------------------------------------------------------

  function absolute(iso) {
    const d = new Date(iso);
    if (isNaN(d)) return String(iso);
    return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z").replace("Z", " UTC");
  }

  function relative(iso, now) {
    const ms = new Date(iso).getTime() - now;
    if (isNaN(ms)) return "";
    const abs = Math.abs(ms);
    let text;
    if (abs < 45e3) return ms >= 0 ? "in a moment" : "just now";
    if (abs < 90 * 60e3) text = Math.round(abs / 60e3) + " min";
    else if (abs < 48 * 3600e3) text = Math.round(abs / 3600e3) + " h";
    else text = Math.round(abs / 86400e3) + " days";
    return ms >= 0 ? "in " + text : text + " ago";
  }

  // when shows a time as relative text with the absolute time as its
  // title; tick() keeps the relative part current.
  function when(iso) {
    if (!iso) return el("span", { class: "muted" }, "—");
    return el("time", { datetime: iso, title: absolute(iso), "data-rel": "" }, relative(iso, Date.now()));
  }

  // both shows the absolute time and, after it, the relative one.
  function both(iso) {
    return el("span", {}, el("time", { datetime: iso }, absolute(iso)), " ",
      el("span", { class: "rel", "data-rel-of": iso }, "(" + relative(iso, Date.now()) + ")"));
  }

  function tick() {
    const now = Date.now();
    for (const t of document.querySelectorAll("time[data-rel]")) t.textContent = relative(t.dateTime, now);
    for (const s of document.querySelectorAll("[data-rel-of]")) s.textContent = "(" + relative(s.dataset.relOf, now) + ")";
  }
  setInterval(tick, 30e3);

  // ---- the API ---------------------------------------------------------

  class APIError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  let signedOut = false;

  // workText describes an upload's import as reported (uploads[].work).
  function workText(w) {
    if (!w) return "waiting";
    let s = w.status === "failed" && w.final ? "dead letter" : w.status === "failed" ? "failed, will retry" :
      w.status === "progress" ? "importing, " + (w.percent || 0) + " %" : w.status;
    s += " (attempt " + w.attempt + ")";
    if (w.message) s += ": " + w.message;
    return s;
  }

  // api reads (GET) path, or sends body (JSON) with method. A write
  // carries X-Requested-With: the server refuses a write signed in with
  // the cookie without it (another site's page cannot set it: CSRF).
  async function api(path, method, body) {
    const init = { headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store" };
    if (method && method !== "GET") {
      init.method = method;
      init.headers["X-Requested-With"] = "transferd";
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body || {});
    }
    let resp;
    try {
      resp = await fetch(path, init);
    } catch (e) {
      throw new APIError(0, "network", "the server cannot be reached");
    }
    let data = null;
    try {
      data = await resp.json();
    } catch (e) {
      data = null;
    }
    if (!resp.ok) {
      const err = (data && data.error) || {};
      const e = new APIError(resp.status, err.code || "", err.message || resp.statusText);
      if (resp.status === 401) showSignedOut();
      throw e;
    }
    return data;
  }

  function notice(text, link) {
    const n = byId("notice");
    clear(n).append(text);
    if (link) n.append(" ", el("a", { href: link.href }, link.text));
    n.hidden = false;
  }

  function clearNotice() {
    byId("notice").hidden = true;
  }

  function showSignedOut() {
    if (signedOut) return;
    signedOut = true;
    for (const s of streams) s.close();
    setLive("offline", "signed out");
    notice("You are signed out: the token is no longer accepted.", { href: location.pathname, text: "Sign in again" });
  }

  function showError(e) {
    if (e instanceof APIError && e.status === 401) return;
    notice(e instanceof APIError ? "The server answered: " + e.message : "Something went wrong: " + e);
  }

  // ---- live updates ----------------------------------------------------

  const streams = [];

  function setLive(state, text) {
    const l = byId("live");
    l.dataset.state = state;
    l.textContent = text || state;
  }

  function updateLive() {
    if (signedOut) return;
    const states = streams.map((s) => s.state);
    if (states.every((s) => s === "live")) setLive("live", "live");
    else if (states.includes("offline")) setLive("offline", "offline: retrying");
    else if (states.includes("reconnecting")) setLive("reconnecting", "reconnecting…");
    else setLive("connecting", "connecting…");
  }

  // Stream is an EventSource that calls onOpen whenever it (re)connects, so
  // the page reloads what it may have missed, and comes back by itself
  // after the server refused it (a restart: 503), unless signed out.
  class Stream {
    constructor(url, names, onOpen, onData) {
      this.url = url;
      this.names = names;
      this.onOpen = onOpen;
      this.onData = onData;
      this.state = "connecting";
      this.delay = 1000;
      streams.push(this);
      this.open();
    }

    open() {
      if (signedOut) return;
      const es = new EventSource(this.url);
      this.es = es;
      es.addEventListener("open", () => {
        this.state = "live";
        this.delay = 1000;
        updateLive();
        this.onOpen();
      });
      const handle = (ev) => {
        let data;
        try {
          data = JSON.parse(ev.data);
        } catch (e) {
          return;
        }
        this.onData(data, ev);
      };
      for (const n of this.names) es.addEventListener(n, handle);
      es.addEventListener("message", handle);
      es.addEventListener("error", () => {
        if (es.readyState === EventSource.CLOSED) {
          this.state = "offline";
          updateLive();
          this.retry();
        } else {
          this.state = "reconnecting";
          updateLive();
        }
      });
    }

    retry() {
      clearTimeout(this.timer);
      this.timer = setTimeout(async () => {
        try {
          await api("/v1/transfers?limit=1"); // a 401 signs out instead
        } catch (e) {
          if (signedOut) return;
        }
        this.delay = Math.min(this.delay * 2, 30e3);
        this.open();
      }, this.delay);
    }

    close() {
      clearTimeout(this.timer);
      if (this.es) this.es.close();
    }
  }

  // debounce runs fn once after calls stop for ms.
  function debounce(fn, ms) {
    let t = null;
    return () => {
      clearTimeout(t);
      t = setTimeout(fn, ms);
    };
  }

  // ---- the transfers list ----------------------------------------------

  function listPage() {
    const form = byId("filters");
    const rows = byId("rows");
    const params = new URLSearchParams(location.search);
    for (const name of [...FILTERS, "limit"]) {
      if (params.get(name)) form.elements[name].value = params.get(name);
    }
    let cursor = "";
    let nextCursor = "";
    let back = []; // the cursors of the pages before this one
    const shown = new Map(); // transferId -> {tr, version}

    function filter() {
      const f = {};
      for (const name of FILTERS) {
        const v = form.elements[name].value.trim();
        if (v) f[name] = v;
      }
      return f;
    }

    function matches(v, f) {
      const m = v.migration || {};
      if (f.phase && v.phase !== f.phase) return false;
      if (f.needsAction === "true" && !v.needsAction) return false;
      if (f.needsAction === "false" && v.needsAction) return false;
      if (f.migrationId && m.migrationId !== f.migrationId) return false;
      if (f.cloudUrl && m.cloudUrl !== f.cloudUrl) return false;
      if (f.tenant && v.issuer !== f.tenant) return false;
      return true;
    }

    function deadline(v) {
      const d = v.deadlines || {};
      if (v.needsAction && d.settleBy) {
        const late = new Date(d.settleBy).getTime() < Date.now();
        return el("span", { class: late ? "overdue" : "" }, "settle ", when(d.settleBy));
      }
      if (!v.settled && d.timesOutAt) return el("span", { class: "muted" }, "times out ", when(d.timesOutAt));
      return el("span", { class: "muted" }, "—");
    }

    function row(v) {
      const m = v.migration || {};
      const tr = el("tr", { "data-transfer-id": v.transferId },
        el("td", { class: "nowrap" }, el("a", { href: transferHref(v.transferId) }, v.transferId),
          v.originalTransferId ? el("span", { class: "sub" }, "re-run of ", clip(v.originalTransferId, "mono")) : null),
        el("td", {}, phasePill(v.phase)),
        el("td", {}, actionBadge(v) || el("span", { class: "muted" }, "—")),
        el("td", {}, clip(m.name || m.migrationId || "", "", m.migrationId ? "migration " + m.migrationId : ""),
          el("span", { class: "sub" }, clip((m.cloudUrl || "").replace(/^https:\/\//, ""), "", m.cloudUrl))),
        el("td", {}, clip(v.issuer || "", "mono")),
        el("td", { class: "num" }, String((v.uploads || []).length)),
        el("td", { class: "nowrap" }, deadline(v)),
        el("td", { class: "nowrap" }, when(v.lastReceivedAt)));
      return tr;
    }

    function show(v, where) {
      const old = shown.get(v.transferId);
      const tr = row(v);
      if (old) old.tr.replaceWith(tr);
      else if (where === "top") rows.prepend(tr);
      else rows.append(tr);
      shown.set(v.transferId, { tr, version: v.version });
      return tr;
    }

    function counts() {
      byId("empty").hidden = shown.size > 0;
      byId("count").textContent = shown.size === 1 ? "1 transfer" : shown.size + " transfers";
      byId("page").textContent = "page " + (back.length + 1);
      byId("first").disabled = back.length === 0;
      byId("prev").disabled = back.length === 0;
      byId("next").disabled = !nextCursor;
    }

    let generation = 0; // of the newest load: an older answer is dropped

    async function load() {
      const q = new URLSearchParams(filter());
      q.set("limit", form.elements.limit.value);
      if (cursor) q.set("cursor", cursor);
      const gen = ++generation;
      try {
        const page = await api("/v1/transfers?" + q);
        if (gen !== generation) return;
        clear(rows);
        shown.clear();
        for (const v of page.transfers) show(v, "bottom");
        nextCursor = page.nextCursor || "";
        clearNotice();
      } catch (e) {
        showError(e);
      }
      counts();
    }

    function apply() {
      const q = new URLSearchParams(filter());
      if (form.elements.limit.value !== "50") q.set("limit", form.elements.limit.value);
      const s = q.toString();
      history.replaceState(null, "", s ? "/?" + s : "/");
      cursor = "";
      back = [];
      load();
    }

    form.addEventListener("submit", (e) => {
      e.preventDefault();
      apply();
    });
    form.addEventListener("change", (e) => {
      if (e.target.tagName === "SELECT") apply();
    });
    byId("clear").addEventListener("click", () => {
      form.reset();
      apply();
    });
    byId("first").addEventListener("click", () => {
      cursor = "";
      back = [];
      load();
    });
    byId("prev").addEventListener("click", () => {
      cursor = back.pop() || "";
      load();
    });
    byId("next").addEventListener("click", () => {
      if (!nextCursor) return;
      back.push(cursor);
      cursor = nextCursor;
      load();
    });

    // Parked events: stored but not foldable (GET /v1/parked). Shown only
    // when there are some.
    async function loadParked() {
      try {
        const p = await api("/v1/parked?limit=20");
        const panel = byId("parked-panel");
        panel.hidden = !p.total;
        if (!p.total) return;
        byId("parked-count").textContent = p.total === 1 ? "1 event parked" : p.total + " events parked";
        const body = byId("parked-rows");
        clear(body);
        for (const e of p.parked) {
          body.append(el("tr", {},
            el("td", { class: "num" }, String(e.seq)),
            el("td", { class: "nowrap" }, el("a", { href: transferHref(e.transferId) }, e.transferId)),
            el("td", {}, e.kind),
            el("td", {}, clip(e.issuer || "", "mono")),
            el("td", {}, e.reason)));
        }
      } catch (e) {
        // The list itself reports errors; the panel stays as it was.
      }
    }
    loadParked();

    // Dead letters: uploads whose import failed for good (GET
    // /v1/dead-letters; 404 when serve runs without --work). Shown only
    // when there are some.
    // A refresh that brings the same list leaves the rows alone: a row
    // replaced between a click's press and release loses the click.
    let deadShown = null;
    async function loadDead() {
      try {
        const d = await api("/v1/dead-letters");
        const list = d.deadLetters || [];
        const sig = JSON.stringify(list);
        if (sig === deadShown) return;
        deadShown = sig;
        const panel = byId("dead-panel");
        panel.hidden = list.length === 0;
        if (!list.length) return;
        byId("dead-count").textContent = list.length === 1 ? "1 dead letter" : list.length + " dead letters";
        const body = clear(byId("dead-rows"));
        for (const x of list) {
          body.append(el("tr", {},
            el("td", { class: "nowrap" }, el("a", { href: transferHref(x.transferId) }, x.transferId)),
            el("td", {}, clip((x.label ? x.label + " · " : "") + x.key, "mono")),
            el("td", {}, clip(x.tenant || "", "mono")),
            el("td", { class: "num" }, String(x.work.attempt)),
            el("td", { class: "nowrap" }, both(x.work.at)),
            el("td", {}, x.work.message || ""),
            el("td", {}, requeueButton(x))));
        }
      } catch (e) {
        // Importer work is off, or the list failed: the panel stays hidden.
      }
    }

    // requeueButton puts a dead letter back to work (POST
    // …/uploads/{key}/requeue with the session), then reloads the list.
    function requeueButton(x) {
      const b = el("button", { type: "button", class: "small requeue", "data-transfer-id": x.transferId, "data-key": x.key,
        title: "Put this upload back to work: the next claim is attempt " + (x.work.attempt + 1) }, "Requeue");
      b.addEventListener("click", async () => {
        b.disabled = true;
        try {
          await api("/v1/transfers/" + encodeURIComponent(x.transferId) + "/uploads/" + encodeURIComponent(x.key) + "/requeue",
            "POST", { message: "requeued from the dashboard" });
          notice("Requeued " + x.key + " of " + x.transferId + ".");
        } catch (e) {
          b.disabled = false;
          showError(e);
          return;
        }
        loadDead();
      });
      return b;
    }
    loadDead();

    // Transfers close to a deadline (GET /v1/deadlines): a cancellation
    // to settle within the hour, or within 24 h of the 14-day limit; the
    // most pressing first. Shown only when there are some.
    let deadlinesShown = null; // as deadShown
    async function loadDeadlines() {
      try {
        const d = await api("/v1/deadlines?limit=20");
        const sig = JSON.stringify(d);
        if (sig === deadlinesShown) return;
        deadlinesShown = sig;
        const panel = byId("deadline-panel");
        panel.hidden = !d.total;
        if (!d.total) return;
        byId("deadline-count").textContent = d.total === 1 ? "1 transfer close to a deadline" : d.total + " transfers close to a deadline";
        const body = clear(byId("deadline-rows"));
        for (const x of d.transfers) {
          const what = x.deadline === "settleBy" ? "settle " : "times out ";
          body.append(el("tr", { "data-transfer-id": x.transferId },
            el("td", { class: "nowrap" }, el("a", { href: transferHref(x.transferId) }, x.transferId)),
            el("td", { class: "nowrap" }, el("span", { class: x.overdue ? "overdue" : "" }, what, when(x.at), x.overdue ? " · overdue" : "")),
            el("td", {}, phasePill(x.phase)),
            el("td", {}, actionBadge(x) || el("span", { class: "muted" }, "—")),
            el("td", {}, clip(x.tenant || "", "mono"))));
        }
      } catch (e) {
        // The list itself reports errors; the panel stays as it was.
      }
    }
    loadDeadlines();

    // Reconciliation with the platform (GET /v1/reconciliation; 404 while
    // it is off, and the page says so): transfers and uploads only the
    // platform knows. Shown whenever the route answers.
    const RECON_SHOWN = 10;
    async function loadReconciliation() {
      if (body.dataset.reconciliation !== "on") return; // off: the route answers 404
      const panel = byId("recon-panel");
      let r;
      try {
        r = await api("/v1/reconciliation");
      } catch (e) {
        if (e.status === 404) panel.hidden = true;
        return;
      }
      panel.hidden = false;
      const unknown = r.unknownTransfers || [];
      const missing = r.missingUploads || [];
      byId("recon-summary").textContent = r.passes
        ? "last pass " + relative(r.at, Date.now()) + ": " + r.tenants + (r.tenants === 1 ? " tenant, " : " tenants, ") +
          r.transfers + (r.transfers === 1 ? " transfer compared" : " transfers compared")
        : "no pass yet";
      const more = (n) => (n > RECON_SHOWN ? el("li", { class: "muted" }, "… and " + (n - RECON_SHOWN) + " more at /v1/reconciliation") : null);
      byId("recon-unknown-count").textContent = unknown.length + (unknown.length === 1 ? " transfer" : " transfers") + " the platform lists but no webhook brought";
      const ul = clear(byId("recon-unknown"));
      for (const x of unknown.slice(0, RECON_SHOWN)) {
        ul.append(el("li", {}, el("span", { class: "mono" }, x.transferId), " ", el("span", { class: "muted" }, "tenant "),
          clip(x.tenant || "", "mono"), " ", el("span", { class: "muted" }, "since "), when(x.firstSeenAt)));
      }
      ul.append(more(unknown.length) || "");
      byId("recon-missing-count").textContent = missing.length + (missing.length === 1 ? " upload" : " uploads") + " the platform lists but no webhook announced";
      const ml = clear(byId("recon-missing"));
      for (const x of missing.slice(0, RECON_SHOWN)) {
        ml.append(el("li", {}, el("a", { href: transferHref(x.transferId), class: "mono" }, x.transferId), " ",
          clip((x.label ? x.label + " · " : "") + x.s3Key, "mono"), " ", el("span", { class: "muted" }, "since "), when(x.firstSeenAt)));
      }
      ml.append(more(missing.length) || "");
      const errs = r.errors || [];
      const errList = clear(byId("recon-errors"));
      errList.hidden = errs.length === 0;
      for (const x of errs.slice(0, RECON_SHOWN)) errList.append(el("li", {}, x));
    }
    loadReconciliation();
    setInterval(() => {
      loadDeadlines();
      loadReconciliation();
    }, 30e3);
    const refreshPanels = debounce(() => {
      loadDead();
      loadDeadlines();
    }, 500);

    // Live: rows on the page change in place; new transfers that match
    // appear at the top of the first page (the list is newest first). The
    // stream's open reloads the page, so nothing falls between the two.
    load();
    new Stream("/v1/stream?type=transfers", PHASES, () => {
      load();
      refreshPanels();
    }, (v) => {
      if (!v || !v.transferId) return;
      refreshPanels();
      const old = shown.get(v.transferId);
      if (old && v.version < old.version) return;
      if (!old && (cursor || !matches(v, filter()))) return;
      show(v, "top").classList.add("flash");
      counts();
    });
  }

  // ---- one transfer ----------------------------------------------------

  function transferPage(id) {
    const enc = encodeURIComponent(id);
    let current = null; // the view shown
    let seen = null; // the event sequences shown, to mark new ones

    function fact(dl, name, value) {
      if (value === undefined || value === null || value === "") return;
      dl.append(el("dt", {}, name), el("dd", {}, value));
    }

    function renderTransfer(v) {
      current = v;
      byId("missing").hidden = true;
      const phase = byId("phase");
      phase.dataset.phase = v.phase;
      phase.textContent = phaseLabel(v.phase);
      const na = byId("needs-action");
      na.hidden = !v.needsAction;
      na.textContent = v.needsAction ? "needs action · " + v.needsAction : "";
      byId("no-action").hidden = !!v.needsAction;
      document.title = v.transferId + " · " + phaseLabel(v.phase) + " · transferd";

      const m = v.migration || {};
      const facts = clear(byId("facts"));
      fact(facts, "Source", v.source);
      fact(facts, "Tenant", el("span", { class: "mono" }, v.issuer || ""));
      fact(facts, "Migration", m.migrationId ? el("span", {}, m.name || "", " ", el("span", { class: "mono muted" }, m.migrationId)) : null);
      fact(facts, "Scope", m.migrationScopeId ? el("span", { class: "mono" }, m.migrationScopeId) : null);
      fact(facts, "Cloud site", m.cloudUrl);
      fact(facts, "Migration created", m.createdAt ? both(m.createdAt) : null);
      fact(facts, "Re-run of", v.originalTransferId ? el("a", { href: transferHref(v.originalTransferId), class: "mono" }, v.originalTransferId) : null);
      fact(facts, "Export completed", v.exportCompleted ? "yes" : "no");
      fact(facts, "Cancellation", v.cancellationRequested ? el("span", {}, "requested ", v.cancellationRequestedAt ? both(v.cancellationRequestedAt) : "") : "not requested");
      fact(facts, "First event", both(v.firstReceivedAt));
      fact(facts, "Last event", both(v.lastReceivedAt));
      fact(facts, "Version", String(v.version) + (v.version === 1 ? " event applied" : " events applied"));

      const d = v.deadlines || {};
      const dl = clear(byId("deadlines"));
      if (d.settleBy) {
        const late = !v.settled && new Date(d.settleBy).getTime() < Date.now();
        fact(dl, "Settle by", el("span", { class: late ? "overdue" : "", id: "settle-by" }, both(d.settleBy),
          late ? " overdue" : "", v.settled ? el("span", { class: "muted" }, " · settled") : null));
      }
      if (d.timesOutAt) {
        fact(dl, "Times out", el("span", { id: "times-out" }, both(d.timesOutAt),
          v.settled ? el("span", { class: "muted" }, " · settled") : null));
      }
      if (!d.settleBy && !d.timesOutAt) fact(dl, "None", el("span", { class: "muted" }, "no cancellation, and no migration details yet"));
      const notes = el("dd", { class: "muted" }, "Settle within 60 minutes of a cancellation request; the platform times a transfer out 14 days after its first trigger (listener-triggered).");
      dl.append(el("dt", {}, ""), notes);

      const st = clear(byId("settlement"));
      if (v.settled) {
        const status = v.settled.status || "";
        const cls = status === "SUCCESS" || status === "FAILED" ? "status-" + status : "status-other";
        st.append(el("dl", { class: "facts" },
          el("dt", {}, "Status"), el("dd", {}, el("span", { class: "badge " + cls, id: "settlement-status" }, status || "settled")),
          el("dt", {}, "Settled"), el("dd", {}, both(v.settled.at))));
      } else {
        st.append(el("p", { class: v.needsAction ? "overdue" : "muted", id: "settlement-status" },
          v.needsAction ? "Not settled: the partner must settle it." : "Not settled yet."));
      }
      if (v.appSettled) {
        st.append(el("p", { id: "app-settled" }, "Settled by transferd (" + v.appSettled.status + ", " +
          (v.appSettled.outcome === "ok" ? "accepted" : "already settled") + ") at ", both(v.appSettled.at)));
      } else if (v.appSettleFailure) {
        const f = v.appSettleFailure;
        st.append(el("p", { class: "overdue", id: "app-settle-failure" }, "transferd's settle (" + (f.status || "") + ") " +
          f.outcome + (f.httpStatus ? " (HTTP " + f.httpStatus + ")" : "") + " at ", both(f.at)));
      }

      const ups = (v.uploads || []).slice();
      const tb = clear(byId("uploads").tBodies[0]);
      for (const u of ups) {
        tb.append(el("tr", {}, el("td", {}, u.label || el("span", { class: "muted" }, "(no label)")),
          el("td", { class: "mono" }, u.key), el("td", {}, u.kind || "app data"), el("td", {}, workText(u.work))));
      }
      byId("uploads").hidden = ups.length === 0;
      byId("no-uploads").hidden = ups.length > 0;

      const ep = byId("error-panel");
      const err = clear(byId("error"));
      ep.hidden = !v.error;
      if (v.error) {
        err.append(el("div", { class: "error-type" }, v.error.exceptionType || "(no exception type)"));
        err.append(el("pre", { id: "stack-trace" }, v.error.safeStackTrace || "(no stack trace)"));
      }
    }

    let lineage = null; // the last lineage fetched

    function renderLineage(lin) {
      lineage = lin;
      const ol = clear(byId("lineage"));
      for (let t of lin.transfers) {
        if (t.transferId === id && current && current.version > t.version) t = current;
        const role = t.transferId === lin.root ? "original" : "re-run";
        const name = t.transferId === id
          ? el("span", { class: "mono" }, t.transferId, " (this transfer)")
          : el("a", { href: transferHref(t.transferId), class: "mono" }, t.transferId);
        ol.append(el("li", { "aria-current": t.transferId === id ? "page" : null },
          name, " ", el("span", { class: "muted" }, role), phasePill(t.phase)));
      }
    }

    function renderEvents(events) {
      const tb = clear(byId("timeline").tBodies[0]);
      const first = seen === null;
      const now = new Set();
      for (const e of events) {
        now.add(e.seq);
        const dups = e.duplicates || 0;
        const tr = el("tr", { "data-seq": e.seq },
          el("td", { class: "num" }, String(e.seq)),
          el("td", {}, el("span", { class: "kind", "data-kind": e.kind }, e.kind)),
          el("td", { class: "nowrap" }, el("time", { datetime: e.receivedAt }, absolute(e.receivedAt))),
          el("td", {}, dups > 0 ? el("span", { class: "badge dup", title: "delivered " + (dups + 1) + " times; applied once" }, "×" + (dups + 1) + " · " + dups + (dups === 1 ? " duplicate" : " duplicates")) : "once"),
          el("td", {}, e.source),
          el("td", { class: "id", title: e.id }, e.id),
          el("td", {}, el("details", {}, el("summary", {}, "payload"), el("pre", {}, JSON.stringify(e.payload, null, 2)))));
        if (!first && !seen.has(e.seq)) tr.classList.add("flash");
        tb.append(tr);
      }
      seen = now;
    }

    async function loadTransfer() {
      try {
        const v = await api("/v1/transfers/" + enc);
        if (!current || v.version >= current.version) renderTransfer(v);
      } catch (e) {
        if (e.status === 404) {
          byId("missing").hidden = false;
          byId("phase").textContent = "";
        } else showError(e);
      }
    }

    async function loadEvents() {
      try {
        renderEvents((await api("/v1/transfers/" + enc + "/events")).events);
      } catch (e) {
        if (e.status !== 404) showError(e);
      }
    }

    async function loadLineage() {
      try {
        renderLineage(await api("/v1/transfers/" + enc + "/lineage"));
      } catch (e) {
        if (e.status !== 404) showError(e);
      }
    }

    const refreshEvents = debounce(loadEvents, 100);
    const refreshLineage = debounce(loadLineage, 300);

    // Each stream starts at the end of its stream, and its open handler
    // loads the state again, so nothing falls in between.
    loadTransfer();
    loadEvents();
    loadLineage();
    setInterval(() => {
      if (current) renderTransfer(current); // deadlines may have passed
    }, 30e3);
    new Stream("/v1/stream?type=transfers&transferId=" + enc, PHASES, () => {
      loadTransfer();
      refreshLineage();
    }, (v) => {
      if (!v || v.transferId !== id || (current && v.version < current.version)) return;
      renderTransfer(v);
      if (lineage) renderLineage(lineage);
      const h = byId("phase");
      h.classList.remove("flash");
      void h.offsetWidth; // restart the animation
      h.classList.add("flash");
      refreshLineage();
    });
    new Stream("/v1/stream?type=events&transferId=" + enc, KINDS, refreshEvents, refreshEvents);
  }

  // ---- start -------------------------------------------------------------

  if (body.dataset.view === "list") listPage();
  else if (body.dataset.view === "transfer") transferPage(body.dataset.transferId);
})();
