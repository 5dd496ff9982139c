// The status page (conf/README.md §10): reads GET /admin/status and GET /admin/revocations with
// the operator's admin token every 2 seconds and offers the few actions taken by hand.
//
// Rules this file keeps:
// - Every value from the API goes into the page as text (textContent, attributes set with
//   setAttribute on elements built here); nothing from the API is ever parsed as HTML.
// - The token lives in sessionStorage only: gone when the tab closes, never a cookie, never in
//   the URL, never in localStorage.
// - No inline script or style anywhere (the page's Content-Security-Policy forbids both).
"use strict";

(function () {
  const TOKEN_KEY = "portcullis.admin-token";
  const REFRESH_MS = 2000;

  const $ = (sel) => document.querySelector(sel);

  // ---- token --------------------------------------------------------------------------------

  function token() {
    try {
      return sessionStorage.getItem(TOKEN_KEY);
    } catch (_) {
      return null;
    }
  }

  function setToken(t) {
    try {
      sessionStorage.setItem(TOKEN_KEY, t);
    } catch (_) {
      /* storage disabled: the page cannot keep a session */
    }
  }

  function forgetToken() {
    try {
      sessionStorage.removeItem(TOKEN_KEY);
    } catch (_) {
      /* nothing stored */
    }
  }

  // ---- the admin API ------------------------------------------------------------------------

  /** Thrown when the gateway refused the token (401/403). */
  class Refused extends Error {}

  /** Thrown when the gateway could not be reached or answered something unusable. */
  class Unreachable extends Error {}

  /** One admin API call: {status, body} where body is the parsed JSON or null. */
  async function api(method, path, body) {
    const t = token();
    if (!t) throw new Refused("no token");
    const init = {
      method,
      headers: { Authorization: "Bearer " + t, Accept: "application/json" },
      cache: "no-store",
      credentials: "omit",
      redirect: "error",
      referrerPolicy: "no-referrer",
    };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(path, init);
    } catch (e) {
      throw new Unreachable(String(e && e.message ? e.message : e));
    }
    if (resp.status === 401 || resp.status === 403) throw new Refused(String(resp.status));
    let parsed = null;
    const text = await resp.text().catch(() => "");
    if (text) {
      try {
        parsed = JSON.parse(text);
      } catch (_) {
        parsed = null;
      }
    }
    return { status: resp.status, body: parsed };
  }

  /** The lines an error answer carries: a reload's `errors`, or `error_description`. */
  function errorLines(answer) {
    const b = answer.body;
    if (b && Array.isArray(b.errors) && b.errors.length) return b.errors.map(String);
    if (b && typeof b.error_description === "string") return [b.error_description];
    if (answer.status === 413) return ["request too large (over 64 KiB)"];
    if (b && typeof b.error === "string") return [b.error];
    return ["the gateway answered HTTP " + answer.status];
  }

  // ---- message line -------------------------------------------------------------------------

  function say(kind, lines) {
    const m = $("#message");
    m.replaceChildren();
    m.className = kind;
    for (const line of [].concat(lines)) {
      const div = document.createElement("div");
      div.textContent = line;
      m.append(div);
    }
  }

  // ---- times --------------------------------------------------------------------------------

  const nowSecs = () => Date.now() / 1000;

  function duration(secs) {
    secs = Math.max(0, Math.round(secs));
    if (secs < 60) return secs + " s";
    const m = Math.floor(secs / 60);
    if (m < 60) return m + " min";
    const h = Math.floor(m / 60);
    if (h < 48) return h + " h " + (m % 60) + " min";
    return Math.floor(h / 24) + " d " + (h % 24) + " h";
  }

  function ageText(at, mode) {
    const d = nowSecs() - at;
    if (mode === "uptime") return duration(d);
    if (d >= -1) return duration(d) + " ago";
    return "in " + duration(-d);
  }

  function isoDate(at) {
    const d = new Date(at * 1000);
    return isNaN(d.getTime()) ? String(at) : d.toISOString();
  }

  /** A <time> showing an age that keeps counting; its title is the ISO date. */
  function timeEl(at, mode) {
    if (typeof at !== "number" || !isFinite(at)) return text("—");
    const el = document.createElement("time");
    const iso = isoDate(at);
    el.setAttribute("datetime", iso);
    el.title = iso;
    el.dataset.at = String(at);
    if (mode) el.dataset.mode = mode;
    el.textContent = ageText(at, mode);
    return el;
  }

  function tickTimes() {
    for (const el of document.querySelectorAll("time[data-at]")) {
      el.textContent = ageText(Number(el.dataset.at), el.dataset.mode);
    }
  }

  // ---- small DOM builders (text only) --------------------------------------------------------

  function text(s) {
    return document.createTextNode(s === null || s === undefined ? "—" : String(s));
  }

  function el(tag, cls, ...children) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    for (const c of children) e.append(typeof c === "string" ? text(c) : c);
    return e;
  }

  function badge(ok, label) {
    return el("span", ok ? "badge ok" : "badge bad", label);
  }

  // ---- sortable tables ----------------------------------------------------------------------

  const sortState = {}; // table id -> {col, dir}
  const lastSig = {}; // table id -> what was last drawn, to leave an unchanged table alone

  /**
   * Draws `rows` into `host` as a table. Each column: {label, sort(row) -> string|number,
   * cell(row) -> Node|string}. A click on a header sorts by it; a second click reverses.
   */
  function drawTable(id, host, columns, rows, empty) {
    const st = sortState[id] || { col: 0, dir: 1 };
    const sorted = rows.slice().sort((a, b) => {
      const x = columns[st.col].sort(a);
      const y = columns[st.col].sort(b);
      if (typeof x === "number" && typeof y === "number") return (x - y) * st.dir;
      return String(x).localeCompare(String(y), undefined, { numeric: true }) * st.dir;
    });
    const sig = JSON.stringify([st, sorted]);
    if (lastSig[id] === sig) return;
    lastSig[id] = sig;

    if (!rows.length) {
      host.replaceChildren(el("p", "empty", empty));
      return;
    }
    const table = el("table");
    const head = el("tr");
    columns.forEach((c, i) => {
      const th = el("th");
      th.setAttribute("scope", "col");
      head.append(th);
      if (c.nosort) {
        th.append(el("span", "visually-hidden", c.label));
        return;
      }
      const b = el("button", "sort", c.label);
      b.type = "button";
      if (i === st.col) {
        th.setAttribute("aria-sort", st.dir > 0 ? "ascending" : "descending");
        b.dataset.dir = st.dir > 0 ? "asc" : "desc";
      }
      b.addEventListener("click", () => {
        sortState[id] = { col: i, dir: i === st.col ? -st.dir : 1 };
        drawTable(id, host, columns, rows, empty);
      });
      th.append(b);
    });
    table.append(el("thead", null, head));
    const tbody = el("tbody");
    for (const r of sorted) {
      const tr = el("tr");
      for (const c of columns) {
        const td = el("td");
        td.dataset.label = c.label;
        const v = c.cell(r);
        td.append(v instanceof Node ? v : text(v));
        tr.append(td);
      }
      tbody.append(tr);
    }
    table.append(tbody);
    host.replaceChildren(table);
  }

  const num = (v) => (typeof v === "number" ? v : -1);
  const str = (v) => (v === null || v === undefined ? "" : String(v));

  // ---- sections -----------------------------------------------------------------------------

  function fact(dl, name, ...value) {
    dl.append(el("dt", null, name), el("dd", null, ...value));
  }

  function drawOverview(s) {
    const dl = $("#overview .facts");
    dl.replaceChildren();
    fact(dl, "Config hash", el("code", null, str(s.config_hash) || "—"));
    fact(dl, "Version", str(s.version) || "—");
    fact(dl, "Uptime", typeof s.started_at === "number" ? timeEl(s.started_at, "uptime") : "—");
    const r = s.last_reload;
    if (r && typeof r === "object") {
      const ok = r.result === "ok";
      const dd = [timeEl(r.at), " ", badge(ok, ok ? "ok" : "error")];
      if (r.config_hash) dd.push(" ", el("code", null, str(r.config_hash)));
      if (Array.isArray(r.errors) && r.errors.length) {
        dd.push(el("ul", "errors", ...r.errors.map((e) => el("li", null, str(e)))));
      }
      fact(dl, "Last reload", ...dd);
    } else {
      fact(dl, "Last reload", "none since start");
    }
    if (Object.prototype.hasOwnProperty.call(s, "redis")) {
      fact(dl, "Redis", redisState(s.redis));
    }
  }

  /** Redis as `connected` or its last error, whatever shape the status gives it. */
  function redisState(r) {
    if (r === null || r === undefined) return "not configured";
    if (typeof r === "string") return r;
    if (typeof r === "object") {
      if (r.connected === true) return badge(true, "connected");
      const err = r.last_error || r.error;
      return el("span", null, badge(false, "disconnected"), " ", str(err || ""));
    }
    return str(r);
  }

  function drawRoutes(s) {
    const routes = Array.isArray(s.routes) ? s.routes : [];
    const auth = (a) => (a && typeof a === "object" ? str(a.mode) : str(a));
    drawTable("routes", $("#routes .table"), [
      { label: "Name", sort: (r) => str(r.name), cell: (r) => str(r.name) },
      { label: "Host", sort: (r) => str(r.host), cell: (r) => (r.host ? str(r.host) : "any") },
      { label: "Path prefix", sort: (r) => str(r.path_prefix), cell: (r) => el("code", null, str(r.path_prefix)) },
      { label: "Upstream", sort: (r) => str(r.upstream), cell: (r) => str(r.upstream) },
      { label: "Auth", sort: (r) => auth(r.auth), cell: (r) => auth(r.auth) },
      { label: "Visibility", sort: (r) => str(r.visibility), cell: (r) => str(r.visibility) },
      { label: "Requests", sort: (r) => num(r.requests), cell: (r) => el("span", "n", str(r.requests)) },
      { label: "4xx", sort: (r) => num(r.responses_4xx), cell: (r) => el("span", "n", str(r.responses_4xx)) },
      { label: "5xx", sort: (r) => num(r.responses_5xx), cell: (r) => el("span", "n", str(r.responses_5xx)) },
    ], routes, Array.isArray(s.routes) ? "No routes." : "This gateway does not report routes.");
  }

  function drawUpstreams(s) {
    const rows = [];
    const ups = s.upstreams && typeof s.upstreams === "object" ? s.upstreams : {};
    for (const name of Object.keys(ups)) {
      for (const p of Array.isArray(ups[name]) ? ups[name] : []) rows.push({ name, p });
    }
    const check = (r) => (r.p.last_check && typeof r.p.last_check === "object" ? r.p.last_check : null);
    drawTable("upstreams", $("#upstreams .table"), [
      { label: "Upstream", sort: (r) => r.name, cell: (r) => r.name },
      { label: "Address", sort: (r) => str(r.p.peer), cell: (r) => el("code", null, str(r.p.peer)) },
      {
        label: "State",
        sort: (r) => (r.p.healthy ? 1 : 0),
        cell: (r) => badge(!!r.p.healthy, r.p.healthy ? "healthy" : "unhealthy"),
      },
      {
        label: "Last check",
        sort: (r) => (check(r) ? num(check(r).at) : -1),
        cell: (r) => {
          const c = check(r);
          if (!c) return el("span", "muted", "not checked");
          return el("span", null, timeEl(c.at), " · ", str(c.result));
        },
      },
    ], rows, "No upstreams.");
  }

  function drawProviders(s) {
    const rows = Array.isArray(s.providers) ? s.providers : [];
    const keys = (p) => (Array.isArray(p.keys) ? p.keys.map(str).join(", ") : "");
    drawTable("providers", $("#providers .table"), [
      { label: "Name", sort: (p) => str(p.name), cell: (p) => str(p.name) },
      { label: "Issuer", sort: (p) => str(p.issuer), cell: (p) => el("code", null, str(p.issuer)) },
      { label: "Key ids", sort: (p) => keys(p), cell: (p) => keys(p) || el("span", "muted", "none") },
      {
        label: "Last refresh",
        sort: (p) => num(p.last_refresh),
        cell: (p) => (typeof p.last_refresh === "number" ? timeEl(p.last_refresh) : el("span", "muted", "never")),
      },
      {
        label: "Last error",
        sort: (p) => str(p.last_error),
        cell: (p) => (p.last_error ? el("span", "err", str(p.last_error)) : el("span", "muted", "none")),
      },
    ], rows, "No token providers are configured.");
  }

  function drawRevocations(s, list) {
    const c = s.revocations && typeof s.revocations === "object" ? s.revocations : {};
    $("#revocations .counts").textContent =
      "By jti: " + str(c.jti !== undefined ? c.jti : "—") + " · by subject: " + str(c.subject !== undefined ? c.subject : "—");
    const rows = [];
    for (const e of Array.isArray(list.jti) ? list.jti : []) {
      rows.push({ kind: "jti", iss: str(e.iss), id: str(e.jti), before: null, exp: e.expires_at, body: { iss: e.iss, jti: e.jti } });
    }
    for (const e of Array.isArray(list.subjects) ? list.subjects : []) {
      rows.push({ kind: "subject", iss: str(e.iss), id: str(e.sub), before: e.before, exp: e.expires_at, body: { iss: e.iss, sub: e.sub } });
    }
    drawTable("revocations", $("#revocations .table"), [
      { label: "Kind", sort: (r) => r.kind, cell: (r) => r.kind },
      { label: "Issuer", sort: (r) => r.iss, cell: (r) => el("code", null, r.iss) },
      {
        label: "jti or subject",
        sort: (r) => r.id,
        cell: (r) => {
          const span = el("span", null, el("code", null, r.id));
          if (typeof r.before === "number") span.append(" (issued before ", timeEl(r.before), ")");
          return span;
        },
      },
      {
        label: "Expires",
        sort: (r) => (typeof r.exp === "number" ? r.exp : Infinity),
        cell: (r) => (typeof r.exp === "number" ? timeEl(r.exp) : el("span", "muted", "when deleted")),
      },
      {
        label: "Action",
        nosort: true,
        sort: () => 0,
        cell: (r) => {
          const b = el("button", "delete", "Delete");
          b.type = "button";
          b.addEventListener("click", () => unrevoke(r.body, b));
          return b;
        },
      },
    ], rows, "Nothing is revoked.");
  }

  // ---- refresh loop -------------------------------------------------------------------------

  let lastFetched = null; // Date of the last good fetch
  let inFlight = null;

  function signedIn(yes) {
    $("#login").hidden = yes;
    $("#session").hidden = !yes;
    $("#data").hidden = !yes;
    if (!yes) {
      // No data without a token: empty every section.
      for (const k of Object.keys(lastSig)) delete lastSig[k];
      $("#overview .facts").replaceChildren();
      $("#revocations .counts").replaceChildren();
      for (const t of document.querySelectorAll("#data .table")) t.replaceChildren();
      lastFetched = null;
      markStale(false);
    }
  }

  function refused() {
    forgetToken();
    signedIn(false);
    say("error", "admin token refused");
  }

  function markStale(stale) {
    const s = $("#stale");
    document.body.classList.toggle("stale", stale);
    s.hidden = !stale;
    s.replaceChildren();
    if (stale) {
      s.append("gateway unreachable · data from ");
      if (lastFetched) {
        s.append(lastFetched.toLocaleTimeString(), " (", timeEl(lastFetched.getTime() / 1000), ")");
      } else {
        s.append("never");
      }
    }
  }

  /** Fetches both documents and redraws; at most one fetch at a time. */
  function refresh() {
    if (!token()) return Promise.resolve();
    if (inFlight) return inFlight.then(() => refreshNow());
    return refreshNow();
  }

  function refreshNow() {
    inFlight = (async () => {
      try {
        const [st, rv] = await Promise.all([api("GET", "/admin/status"), api("GET", "/admin/revocations")]);
        if (st.status !== 200 || rv.status !== 200 || !st.body || !rv.body) {
          throw new Unreachable("status " + st.status + "/" + rv.status);
        }
        if (!token()) return; // signed out while the answer was on its way
        signedIn(true);
        drawOverview(st.body);
        drawRoutes(st.body);
        drawUpstreams(st.body);
        drawProviders(st.body);
        drawRevocations(st.body, rv.body);
        lastFetched = new Date();
        markStale(false);
        document.body.dataset.fetched = String(lastFetched.getTime());
      } catch (e) {
        if (e instanceof Refused) refused();
        else if (token()) markStale(true);
      } finally {
        inFlight = null;
      }
    })();
    return inFlight;
  }

  // ---- actions ------------------------------------------------------------------------------

  /** Runs one admin action; shows `okText(answer)` or the API's error lines in #message. */
  async function act(method, path, body, okStatus, okText, button) {
    if (button) button.disabled = true;
    try {
      const answer = await api(method, path, body);
      if (answer.status === okStatus) {
        say("ok", okText(answer));
        await refresh();
        return true;
      }
      say("error", errorLines(answer));
      return false;
    } catch (e) {
      if (e instanceof Refused) refused();
      else say("error", "gateway unreachable: no answer to " + method + " " + path);
      return false;
    } finally {
      if (button) button.disabled = false;
    }
  }

  function unrevoke(body, button) {
    return act("DELETE", "/admin/revocations", body, 204, () => "deleted", button);
  }

  async function revoke(ev) {
    ev.preventDefault();
    const iss = $("#revoke-iss").value.trim();
    const jti = $("#revoke-jti").value.trim();
    const tok = $("#revoke-token").value.trim();
    let body;
    if (tok && !iss && !jti) body = { token: tok };
    else if (!tok && iss && jti) body = { iss, jti };
    else {
      say("error", "give an issuer and a jti, or a whole token");
      return;
    }
    const done = await act("POST", "/admin/revocations", body, 201, () => "revoked", ev.submitter);
    if (done) $("#revoke").reset();
  }

  function reload(ev) {
    return act("POST", "/admin/reload", undefined, 200,
      (a) => "reloaded " + str(a.body && a.body.config_hash), ev.currentTarget);
  }

  async function login(ev) {
    ev.preventDefault();
    const field = $("#admin-token");
    const t = field.value.trim();
    field.value = "";
    if (!t) return;
    setToken(t);
    say("", []);
    await refresh();
  }

  function logout() {
    forgetToken();
    signedIn(false);
    say("", "signed out");
  }

  // ---- start --------------------------------------------------------------------------------

  function start() {
    $("#login").addEventListener("submit", login);
    $("#logout").addEventListener("click", logout);
    $("#reload").addEventListener("click", reload);
    $("#revoke").addEventListener("submit", revoke);
    signedIn(false);
    if (token()) refresh();
    setInterval(() => {
      if (token() && !inFlight) refresh();
    }, REFRESH_MS);
    setInterval(tickTimes, 1000);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
