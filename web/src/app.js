// lossguard's built-in dashboard: a run list, a run page with synchronized uPlot charts and alert
// episodes drawn on them, and a two-run comparison. Reads only the REST API; refreshes itself.
"use strict";

const POLL_MS = 2000;
const RUN_PAGE = 200;  // runs per request of the run list

// State the browser test reads: what the page has drawn.
window.lossguardDashboard = { view: null, ready: false, charts: [], bandsDrawn: 0, nonFiniteDrawn: 0, latestStep: null };

// The view on screen. Leaving it aborts it: its requests are cancelled, its refresh loop ends, and
// nothing it was still awaiting writes into the next view (each view draws into its own elements
// and its own state object, and checks `view.live` after every await).
let currentView = null;

// A server started with --read-token-file answers 401 until the page sends its read token. The
// page asks for it once and keeps it for the browser session (sessionStorage: gone when the tab's
// session ends, never written to disk as a cookie would be, never sent to another origin).
const TOKEN_KEY = "lossguard.readToken";

class TokenNeeded extends Error {}

function askForToken(rejected) {
  if (document.getElementById("token-form")) return;
  const input = el("input", { type: "password", id: "token-input", autocomplete: "current-password", placeholder: "read token" });
  const form = el("form", { id: "token-form", class: "token-form" },
    el("h1", {}, "This lossguard server needs a read token"),
    el("p", { class: rejected ? "error" : "muted" }, rejected
      ? "The token was not accepted. Ask whoever runs the server for the read token."
      : "Ask whoever runs the server for the read token (--read-token-file). It is kept for this browser session only."),
    input, el("button", { type: "submit" }, "Open the dashboard"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    form.remove();
    route();
  });
  document.body.append(form);
  input.focus();
}

async function getJson(path, signal) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const response = await fetch(path, { signal, headers });
  const body = await response.json().catch(() => null);
  if (response.status === 401) {
    if (token) sessionStorage.removeItem(TOKEN_KEY);
    askForToken(Boolean(token));
    throw new TokenNeeded("a read token is needed");
  }
  if (!response.ok) {
    throw new Error((body && body.error && body.error.message) || `${path}: HTTP ${response.status}`);
  }
  return body;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

function fmt(value, digits = 4) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "string") return value; // "NaN", "Infinity": data, shown as such
  return Number.isInteger(value) ? String(value) : value.toPrecision(digits);
}

function setStatus(text) { document.getElementById("status").textContent = text; }

function resetView(name) {
  if (currentView) currentView.controller.abort();
  for (const chart of window.lossguardDashboard.charts) chart.destroy();
  const controller = new AbortController();
  // `hash` says which address this state belongs to: a test waiting for `ready` after a click must not
  // take the previous view's (the hashchange that replaces it comes a task later).
  const state = { view: name, hash: location.hash, ready: false, charts: [], bandsDrawn: 0, nonFiniteDrawn: 0, latestStep: null };
  window.lossguardDashboard = state;
  const view = {
    name, controller, signal: controller.signal, state,
    get live() { return !controller.signal.aborted; },
    get: (path) => getJson(path, controller.signal),
    status(text) { if (this.live) setStatus(text); },
  };
  currentView = view;
  const app = document.getElementById("app");
  app.replaceChildren();
  return { app, view };
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

// Calls `refresh` every `ms` while the view is on screen. A refresh slower than `ms` delays the next
// one instead of overlapping it.
async function poll(view, ms, refresh) {
  while (view.live) {
    await sleep(ms, view.signal);
    if (!view.live) return;
    try { await refresh(); } catch (e) { view.status(e.message); }
  }
}

// `fn` one call at a time: a call made while one runs waits for it, and the calls that pile up
// meanwhile become one.
function oneAtATime(fn) {
  let running = null, queued = null;
  const run = () => {
    if (!running) {
      running = fn().finally(() => { running = null; });
      return running;
    }
    if (!queued) queued = running.catch(() => {}).then(() => { queued = null; return run(); });
    return queued;
  };
  return run;
}

function badges(open) {
  const out = el("span");
  let any = false;
  for (const severity of ["critical", "warning", "info"]) {
    if (open[severity] > 0) {
      out.append(el("span", { class: `badge ${severity}`, title: `${open[severity]} open ${severity}` }, open[severity]));
      any = true;
    }
  }
  if (!any) out.append(el("span", { class: "badge ok", title: "no open alerts" }, "ok"));
  return out;
}

// ---- run list ----------------------------------------------------------------------------------

async function renderRuns(app, view) {
  app.append(el("h1", {}, "Runs"));
  // The server pages its run list (100,000 runs is an ordinary shared server): the view shows the
  // first pages that match the filter, and "more runs" fetches the next one.
  const filter = el("input", { id: "run-filter", type: "search", placeholder: "filter by run name prefix" });
  const more = el("button", { id: "more-runs", hidden: true }, "more runs");
  const table = el("table", { class: "runs" });
  const compare = el("div", { class: "compare" });
  app.append(el("div", { class: "filter" }, filter), table, more, compare);
  let pages = 1;
  const listRuns = async () => {
    const runs = [];
    let next = null;
    for (let page = 0; page < pages; page++) {
      const query = new URLSearchParams({ limit: String(RUN_PAGE) });
      if (filter.value) query.set("prefix", filter.value);
      if (next) query.set("after", next);
      const body = await view.get(`/api/v1/runs?${query}`);
      runs.push(...body.runs);
      next = body.next;
      if (!next) break;
    }
    more.hidden = !next;
    return runs;
  };
  more.onclick = () => { pages++; draw().catch((e) => view.status(e.message)); };
  filter.oninput = () => { pages = 1; draw().catch((e) => view.status(e.message)); };
  const draw = oneAtATime(async () => {
    const runs = await listRuns();
    if (!view.live) return;
    table.replaceChildren(el("tr", {},
      ...["run", "alerts", "step", "loss", "ref_loss", "loss / ref", "ga_steps", "micro_batch", "world", "records"].map((h) => el("th", {}, h))));
    for (const run of runs) {
      const last = run.last || {};
      const ratio = typeof last.loss === "number" && typeof last.ref_loss === "number" ? last.loss / last.ref_loss : null;
      table.append(el("tr", { "data-run": run.run },
        el("td", {}, el("a", { href: `#/run/${encodeURIComponent(run.run)}` }, run.run)),
        el("td", {}, badges(run.open_alerts)),
        el("td", {}, fmt(run.latest_step)), el("td", {}, fmt(last.loss)), el("td", {}, fmt(last.ref_loss)),
        el("td", {}, fmt(ratio, 3)), el("td", {}, fmt(run.config.ga_steps)),
        el("td", {}, fmt(run.config.micro_batch_size)), el("td", {}, fmt(run.config.world_size)),
        el("td", {}, fmt(run.records))));
    }
    if (runs.length === 0) table.append(el("tr", {}, el("td", { colspan: 10, class: "muted" }, "no runs yet: point a collector or `lossguard replay` at this server")));
    if (!compare.hasChildNodes() && runs.length >= 2) {
      const pick = (id, index) => el("select", { id }, ...runs.map((r, i) => {
        const option = el("option", { value: r.run }, r.run);
        if (i === index) option.selected = true;
        return option;
      }));
      compare.append("Compare ", pick("compare-a", 0), " with ", pick("compare-b", 1), " ",
        el("button", { onclick: () => {
          const a = document.getElementById("compare-a").value, b = document.getElementById("compare-b").value;
          location.hash = `#/compare/${encodeURIComponent(a)}/${encodeURIComponent(b)}`;
        } }, "compare loss"));
    }
    view.status(`${runs.length}${more.hidden ? "" : "+"} runs · refreshed ${new Date().toLocaleTimeString()}`);
    view.state.ready = true;
  });
  await draw();
  poll(view, POLL_MS * 2, draw);
}

// ---- run page ----------------------------------------------------------------------------------

// The colour of the i-th rank drawn (beyond the palette: hues spread by the golden angle).
function alertItem(alert, onPick) {
  const pick = (event) => { event.stopPropagation(); onPick(alert); };
  return el("div", { class: `alert ${alert.severity} ${alert.state}`, "data-kind": alert.kind, "data-id": alert.id, onclick: pick },
    el("div", { class: "head" }, el("span", { class: `badge ${alert.severity}` }, alert.severity), alert.kind),
    el("div", { class: "steps" }, `steps ${alert.first_step}–${alert.last_step} · ${alert.state}`),
    el("div", { class: "message" }, alert.message),
    ...(alert.actions || []).map(guardAction));
}

// What a trainer's guard did about the episode: who (rank, judged locally or on the server's
// verdict), when (step), what (the action, and a rollback's target or an lr factor).
function guardAction(action) {
  const what = action.action === "rollback" ? `rollback to step ${action.rollback_to}`
    : action.action === "lower_lr" ? `lower_lr ×${action.lr_factor}` : action.action;
  const who = action.source === "server" ? "on the server's verdict" : "judged on the step";
  return el("div", { class: `guard-action ${action.action}`, "data-action": action.action },
    el("span", { class: "badge guard" }, "guard"),
    ` rank ${action.rank} · step ${action.step}: ${what} (${who})`);
}

// Incidents as the API gives them: an alert's `symptoms` are the listed alerts it explains, shown
// inside it rather than beside it.
function alertTree(alerts, onPick) {
  const byId = new Map(alerts.map((a) => [a.id, a]));
  const symptomsOf = new Map(alerts.map((alert) => [alert.id, (alert.symptoms || [])
    .filter((id) => id !== alert.id && byId.has(id)).map((id) => byId.get(id))]));
  const explained = new Set([...symptomsOf.values()].flat().map((s) => s.id));
  return alerts.filter((alert) => !explained.has(alert.id)).map((alert) => {
    const item = alertItem(alert, onPick);
    const symptoms = symptomsOf.get(alert.id);
    if (symptoms.length) {
      item.append(el("div", { class: "symptoms" }, el("div", { class: "muted" }, `caused ${symptoms.length} more:`),
        ...symptoms.map((s) => alertItem(s, onPick))));
    }
    return item;
  });
}

async function renderRun(app, view, name) {
  const title = el("h1", {}, name, " ");
  const layout = el("div", { class: "layout" });
  const chartsBox = el("div", {});
  const alertsBox = el("div", { class: "alerts" }, el("h2", {}, "Alerts"));
  app.append(title, layout);
  layout.append(chartsBox, alertsBox);

  let alerts = [];
  let charts = null;
  let chartData = null;  // what the charts draw, their NaN/Inf marks included
  const lrNote = el("div", { class: "muted lr-note" });
  let layoutKey = null;  // the ranks and diverging ranks the charts were built for
  const zoomTo = (alert) => {
    const pad = Math.max(10, Math.round((alert.last_step - alert.first_step) * 0.5));
    for (const chart of charts || []) chart.setScale("x", { min: alert.first_step - pad, max: alert.last_step + pad });
  };
  const load = async () => {
    const [{ run }, series, alertList] = await Promise.all([
      view.get(`/api/v1/runs/${encodeURIComponent(name)}`),
      view.get(`/api/v1/runs/${encodeURIComponent(name)}/steps?max_points=2000`),
      view.get(`/api/v1/alerts?run=${encodeURIComponent(name)}`),
    ]);
    if (!view.live) return null;  // its charts are destroyed: draw nothing
    alerts = alertList.alerts;
    title.replaceChildren(name, " ", badges(run.open_alerts),
      el("span", { class: "muted" }, ` ga_steps ${run.config.ga_steps} · micro_batch ${run.config.micro_batch_size} · world ${run.config.world_size} · step ${run.latest_step}`));
    alertsBox.replaceChildren(el("h2", {}, `Alerts (${alerts.length})`),
      ...(alerts.length ? alertTree(alerts, zoomTo) : [el("div", { class: "muted" }, "none")]));
    const diverging = divergingRanks(alerts);
    const data = rankData(series.ranks, diverging);
    const key = JSON.stringify([series.ranks.map((r) => r.rank), [...diverging].sort()]);
    if (charts && key !== layoutKey) {  // a rank appeared or diverged: new series, new charts
      for (const chart of charts) chart.destroy();
      view.state.charts = [];
      chartsBox.replaceChildren();
      charts = null;
    }
    layoutKey = key;
    if (!charts) {
      const several = series.ranks.length > 1 ? ` · ${series.ranks.length} ranks` : "";
      const marks = (chart) => () => chartData[chart].nonFinite;
      chartData = data;
      charts = [
        makeChart(view, chartsBox, `loss (reported, bucket max and min) and ref_loss${several}`, data.loss.series, data.loss.data, { alerts: () => alerts, nonFinite: marks("loss") }),
        makeChart(view, chartsBox, `grad_norm (log scale)${several}`, data.grad.series, data.grad.data, { log: true, alerts: () => alerts, nonFinite: marks("grad") }),
        makeChart(view, chartsBox, `learning rate (log scale, bucket max)${several}`, data.lr.series, data.lr.data, { log: true, alerts: () => alerts, nonFinite: marks("lr") }),
        makeChart(view, chartsBox, `label tokens per step${several}`, data.tokens.series, data.tokens.data, { alerts: () => alerts }),
      ];
      charts[2].root.parentNode.append(lrNote);
    } else {
      chartData = data;
      charts[0].setData(data.loss.data);
      charts[1].setData(data.grad.data);
      charts[2].setData(data.lr.data);
      charts[3].setData(data.tokens.data);
    }
    lrNote.textContent = data.lr.sent ? "" : "This run sends no learning rate (the record's lr field).";
    view.state.nonFinite = { loss: data.loss.nonFinite, grad: data.grad.nonFinite, lr: data.lr.nonFinite };
    view.state.ranks = series.ranks.map((r) => r.rank);
    view.state.diverging = [...diverging].sort();
    view.state.latestStep = run.latest_step;
    view.state.points = series.ranks[0].step.length;
    view.state.bucketWidth = series.bucket_width;
    view.status(`${run.records} records · buckets of ${series.bucket_width} step(s) · refreshed ${new Date().toLocaleTimeString()}`);
    view.state.ready = true;
    return run.latest_step;
  };
  let latest = await load();
  // Live: reload when the run has moved on.
  poll(view, POLL_MS, async () => {
    const { run } = await view.get(`/api/v1/runs/${encodeURIComponent(name)}`);
    if (!view.live) return;
    if (run.latest_step !== latest || run.open_alerts.critical + run.open_alerts.warning + run.open_alerts.info !== alerts.filter((a) => a.state === "open").length) {
      latest = await load();
    }
  });
}

// ---- comparison --------------------------------------------------------------------------------

async function renderCompare(app, view, a, b) {
  app.append(el("h1", {}, `${a} vs ${b}`));
  const box = el("div", {});
  app.append(box, el("p", { class: "muted" },
    "The reported loss of both runs (bucket max), aligned by step. Runs that differ only in how the batch is split (micro_batch 8 / GA 1 against micro_batch 1 / GA 8) should coincide when the loss is normalised over tokens."));
  const [sa, sb] = await Promise.all([a, b].map((run) => view.get(`/api/v1/runs/${encodeURIComponent(run)}/steps?max_points=2000`)));
  if (!view.live) return;
  const ca = columns(sa.ranks[0]), cb = columns(sb.ranks[0]);
  const joined = uPlot.join([[ca.step, ca.loss_max], [cb.step, cb.loss_max]]);
  makeChart(view, box, "reported loss", [a, b], joined);
  view.state.points = joined[0].length;
  view.status(`${a}: ${ca.step.length} buckets · ${b}: ${cb.step.length} buckets`);
  view.state.ready = true;
}

// ---- routing -----------------------------------------------------------------------------------

async function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const name = parts[0] === "run" && parts[1] ? "run" : parts[0] === "compare" && parts[1] && parts[2] ? "compare" : "runs";
  const { app, view } = resetView(name);
  try {
    if (name === "run") await renderRun(app, view, parts[1]);
    else if (name === "compare") await renderCompare(app, view, parts[1], parts[2]);
    else await renderRuns(app, view);
  } catch (e) {
    // A view left while it loaded ends in an AbortError, or an error nobody is looking at any more:
    // the next view is already on screen.
    if (!view.live) return;
    if (e instanceof TokenNeeded) {
      setStatus("read token needed");
      view.state.needsToken = true;
      return;
    }
    app.append(el("p", { class: "error" }, e.message));
    setStatus("error");
    view.state.error = e.message;
  }
}

window.addEventListener("hashchange", route);
route();
