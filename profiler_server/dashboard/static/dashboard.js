// The device lab's dashboard: reads the profiler server's JSON API and draws it.
// Every string from the server goes into the page as text (el() below), never as HTML: device
// fields and error messages are written by agents.
"use strict";

const TOKEN_KEY = "hwnas-token";
const REFRESH_MS = 1000;

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

class ApiError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

async function api(path, options = {}) {
  const headers = Object.assign({ Accept: "application/json" }, options.headers || {});
  if (token()) headers.Authorization = "Bearer " + token();
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 204) return null;
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) throw new ApiError(response.status, (body && body.detail) || response.statusText);
  return body;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "style") node.style.cssText = value;  // through the CSSOM: the page's policy forbids inline style
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const fmt = {
  ms(v) { return v === null || v === undefined ? "–" : v >= 1 ? v.toFixed(3) : v.toFixed(4); },
  when(iso) { return iso ? new Date(iso).toLocaleString() : "–"; },
  ghz(khz) { return (khz / 1e6).toFixed(2) + " GHz"; },
};

function clusters(freqs) {
  // CPU clusters from per-core maximum frequencies: "4 × 1.80 GHz + 4 × 2.85 GHz".
  const counts = new Map();
  for (const f of freqs || []) counts.set(f, (counts.get(f) || 0) + 1);
  return [...counts.entries()].sort((a, b) => a[0] - b[0]).map(([f, n]) => `${n} × ${fmt.ghz(f)}`).join(" + ") || "–";
}

// Android's thermal status levels (PowerManager.THERMAL_STATUS_*).
const THERMAL = ["none", "light", "moderate", "severe", "critical", "emergency", "shutdown"];

function thermalText(t) {
  if (!t) return "–";
  const parts = [];
  if (t.status !== null && t.status !== undefined) parts.push(THERMAL[t.status] || `status ${t.status}`);
  if (t.max_temp_c !== null && t.max_temp_c !== undefined) parts.push(`${t.max_temp_c.toFixed(1)} °C`);
  return parts.length ? parts.join(" · ") : "–";
}

function progressBar(job) {
  const total = Math.max(job.total, 1);
  return el("div", { class: "bar", title: `${job.done} done, ${job.failed} failed, ${job.pending} pending` },
    el("div", { class: "done", style: `width:${(100 * job.done / total).toFixed(1)}%` }),
    el("div", { class: "failed", style: `width:${(100 * job.failed / total).toFixed(1)}%` }));
}

function tableLink(device, t) {
  const q = new URLSearchParams({ device, runtime: t.runtime, threads: t.threads });
  return el("a", { href: "/ui/table.html?" + q }, `${t.runtime} × ${t.threads}: ${t.entries} entries`
    + (t.source ? ` (imported from ${t.source.project})` : ""));
}

function fitNote(fit) {
  // A table fitted from whole networks (hwnas lut fit): how well it predicts networks it was not fitted on.
  if (!fit) return null;
  const held = fit.mape_pct === null ? "no hold-out"
    : `hold-out MAPE ${fit.mape_pct.toFixed(1)}%` + (fit.kendall_tau === null ? "" : `, Kendall τ ${fit.kendall_tau.toFixed(2)}`)
      + ` on ${fit.test_networks} networks`;
  return el("p", { class: "fit" }, `Fitted from whole networks of ${fit.space}: ${held}; fitted on ${fit.train_networks}`
    + ` (${fit.networks_file}, sha256 ${fit.networks_sha256.slice(0, 12)}).`);
}

function sourceNote(source) {
  // An imported table says where it comes from, under what terms, and what it left out (all as text).
  if (!source) return null;
  const commit = source.commit ? ` @ ${source.commit.slice(0, 7)}` : "";
  return el("div", { id: "source", class: "source" },
    el("p", {}, `Imported, read-only: ${source.project}, ${source.file}${commit}; measured on ${source.source_device}`
      + (source.source_runtime ? ` with ${source.source_runtime}` : "") + `. Licence: ${source.licence}`),
    fitNote(source.fit),
    source.gauge ? el("p", { class: "muted" }, source.gauge) : null,
    source.unmappable.length ? el("p", { class: "muted" }, `${source.unmappable.length} published entries left out: `
      + source.unmappable.map(u => `${u.key} (${u.reason})`).join("; ")) : null);
}

function show(main, ...nodes) {
  // Optional parts come as null: leave them out (replaceChildren would print "null").
  main.replaceChildren(...nodes.flat().filter(node => node !== null && node !== undefined && node !== false));
}

function showError(main, error) {
  const hint = error.status === 401 ? " — this server needs a token: paste one above." : "";
  show(main, el("p", { class: "error", id: "page-error" }, `${error.message}${hint}`));
}

// ---- overview -----------------------------------------------------------------------------
function deviceBadge(d) {
  // A loopback phone (device-agent loopback-device) has a real phone's name and model but runs host stand-ins:
  // its numbers are no phone's, so it must not pass for one.
  if (d.loopback) return el("span", { class: "badge loopback", title: "device-agent loopback-device: a fake phone over "
    + "real ADB whose benchmark binaries are host stand-ins; its latencies are this host's, not a phone's" }, "loopback (fake)");
  return null;
}

function lastSeen(d) {
  // Its latest activity (registration, an upload, a claim or a heartbeat), not when it was registered; data-at
  // holds the time shown (an older server sends no last_seen_at: its registration, as before).
  const seen = d.last_seen_at || d.updated_at;
  return el("td", { class: "last-seen", "data-at": seen, title: `registered ${fmt.when(d.updated_at)}` }, fmt.when(seen));
}

function devicesTable(devices) {
  const rows = devices.map(d => el("tr", { "data-device": d.name, class: d.loopback ? "loopback" : null },
    el("td", {}, el("b", {}, d.name), " ", deviceBadge(d)),
    el("td", { class: "model" }, [d.manufacturer, d.model].filter(Boolean).join(" ") || "–"),
    el("td", {}, d.soc || "–"), el("td", {}, d.abi || "–"), el("td", {}, d.os_version || "–"),
    el("td", { class: "num cores" }, d.cpu_cores ?? "–"), el("td", {}, clusters(d.cpu_max_freqs_khz)),
    el("td", { class: "thermal" }, thermalText(d.thermal)),
    lastSeen(d),
    el("td", { class: "tables" }, d.tables.length ? d.tables.map(t => el("div", {}, tableLink(d.name, t))) : "none yet")));
  return el("table", { id: "devices" },
    el("thead", {}, el("tr", {}, ["device", "model", "SoC", "ABI", "Android", "cores", "CPU clusters", "thermal", "last seen", "tables"]
      .map(h => el("th", { class: h === "cores" ? "num" : null }, h)))),
    el("tbody", {}, rows));
}

function jobsTable(jobs) {
  const rows = jobs.map(j => el("tr", { "data-job": j.id },
    el("td", {}, el("a", { href: `/ui/job.html?id=${j.id}` }, `#${j.id}`)),
    el("td", {}, j.device), el("td", {}, `${j.runtime} × ${j.threads}`),
    el("td", { class: `state state-${j.state}` }, j.state), el("td", {}, progressBar(j)),
    el("td", { class: "num n-done" }, j.done), el("td", { class: "num n-failed" }, j.failed),
    el("td", { class: "num n-pending" }, j.pending), el("td", {}, j.holder || j.agent || "–"),
    el("td", {}, fmt.when(j.created_at))));
  return el("table", { id: "jobs" },
    el("thead", {}, el("tr", {}, ["job", "device", "runtime × threads", "state", "progress", "done", "failed", "pending",
      "agent", "created"].map(h => el("th", { class: ["done", "failed", "pending"].includes(h) ? "num" : null }, h)))),
    el("tbody", {}, rows));
}

function compareForm(devices) {
  const tables = devices.flatMap(d => d.tables.map(t => ({ device: d.name, ...t })));
  if (tables.length < 2) return null;
  const options = () => tables.map((t, i) => el("option", { value: i }, `${t.device} · ${t.runtime} × ${t.threads}`));
  const a = el("select", { id: "compare-a" }, options()), b = el("select", { id: "compare-b" }, options());
  b.value = "1";
  return el("div", {}, el("h2", {}, "Compare two tables"), el("div", { class: "controls" }, a, "against", b,
    el("button", { id: "compare-go", onclick: () => {
      const x = tables[a.value], y = tables[b.value];
      location.href = "/ui/compare.html?" + new URLSearchParams({ a: x.device, runtime_a: x.runtime, threads_a: x.threads,
        b: y.device, runtime_b: y.runtime, threads_b: y.threads });
    } }, "compare")));
}

async function overview(main) {
  const [devices, jobs] = await Promise.all([api("/devices"), api("/jobs?limit=50")]);
  const tables = devices.reduce((n, d) => n + d.tables.length, 0);
  const open = jobs.filter(j => j.state === "running" || j.state === "queued").length;
  const card = (label, value, id) => el("div", { class: "card", id }, el("div", { class: "muted" }, label), el("div", { class: "value" }, value));
  show(main, 
    el("h1", {}, "Device lab"),
    el("div", { class: "cards" }, card("devices", devices.length, "n-devices"), card("latency tables", tables, "n-tables"),
      card("open jobs", open, "n-open")),
    el("h2", {}, "Devices"), devices.length ? devicesTable(devices) : el("p", { class: "muted" }, "No device registered yet."),
    compareForm(devices),
    el("h2", {}, "Jobs (newest first)"), jobs.length ? jobsTable(jobs) : el("p", { class: "muted" }, "No job yet."));
  if (open) setTimeout(() => overview(main).catch(e => showError(main, e)), 2 * REFRESH_MS);  // live progress
}

// ---- one job ------------------------------------------------------------------------------
function jobNetworks(nets) {
  // The job's whole networks (hwnas validate, hwnas predict --measure): each with its state and, once done, the
  // measurement that completed it; the same numbers as GET /devices/{device}/networks.
  const shown = nets.items.length < nets.total ? ` (the first ${count(nets.items.length)})` : "";
  return el("div", {},
    el("h2", {}, `Whole networks (${count(nets.total)}: ${count(nets.done)} done, ${count(nets.failed)} failed, `
      + `${count(nets.pending)} pending)${shown}`),
    el("table", { id: "job-networks" },
      el("thead", {}, el("tr", {}, ["network (arch id)", "state", "median ms", "min ms", "error"]
        .map(h => el("th", { class: h.endsWith("ms") ? "num" : null }, h)))),
      el("tbody", {}, nets.items.map(n => el("tr", { "data-arch": n.arch_id },
        el("td", {}, el("code", {}, n.arch_id)), el("td", { class: `state state-${n.state}` }, n.state),
        el("td", { class: "num median" }, fmt.ms(n.median_ms)), el("td", { class: "num" }, fmt.ms(n.min_ms)),
        el("td", { class: "message" }, n.error || ""))))));
}

async function jobPage(main) {
  const id = new URLSearchParams(location.search).get("id");
  if (!/^\d+$/.test(id || "")) throw new ApiError(422, "give the job as ?id=N");
  const job = await api(`/jobs/${id}`);
  const open = job.state === "running" || job.state === "queued";
  const status = el("p", { id: "cancel-status" });
  const cancel = el("button", {
    id: "cancel", disabled: !open, onclick: async () => {
      status.className = ""; status.textContent = "cancelling…";
      try { await api(`/jobs/${id}`, { method: "DELETE" }); status.textContent = "cancelled"; await jobPage(main); }
      catch (e) { status.className = "error"; status.textContent = `cannot cancel: ${e.message}`; }
    },
  }, "cancel job");
  const errors = Object.entries(job.errors || {});
  const nets = job.networks;
  show(main, 
    el("h1", {}, `Job #${job.id} · ${job.device} · ${job.runtime} × ${job.threads} `,
      el("span", { id: "job-state", class: `state-${job.state}` }, job.state)),
    el("div", { class: "cards" }, ...[["total", job.total], ["done", job.done], ["failed", job.failed], ["pending", job.pending]]
      .map(([k, v]) => el("div", { class: "card" }, el("div", { class: "muted" }, k), el("div", { class: "value", id: `job-${k}` }, v)))),
    progressBar(job),
    el("p", { id: "job-composition", class: "muted" }, nets
      ? `${count(job.total - nets.total)} operator keys and ${count(nets.total)} whole networks, measured in the same interleaved rounds`
      : `${count(job.total)} operator keys`),
    el("p", {}, "lease: ", el("span", { id: "job-holder" }, job.holder || "nobody"),
      job.agent ? ` (agent ${job.agent})` : "", job.lease_expires_at ? `, until ${fmt.when(job.lease_expires_at)}` : ""),
    job.reason ? el("p", { class: "error", id: "job-reason" }, job.reason) : null,
    el("div", { class: "controls" }, cancel, status),
    nets ? jobNetworks(nets) : null,
    el("h2", {}, `Failures (${job.failed})`),
    errors.length ? el("table", { id: "job-errors" }, el("thead", {}, el("tr", {}, el("th", {}, "operator or network"), el("th", {}, "message"))),
      el("tbody", {}, errors.map(([k, m]) => el("tr", {}, el("td", {}, el("code", {}, k)), el("td", { class: "message" }, m)))))
      : el("p", { class: "muted" }, "none"),
    el("h2", {}, `Pending operator keys (${job.pending - (nets ? nets.pending : 0)})`),
    el("ul", { id: "pending-keys" }, job.pending_keys.slice(0, 50).map(k => el("li", {}, el("code", {}, k)))));
  if (open) setTimeout(() => jobPage(main).catch(e => showError(main, e)), REFRESH_MS);
}

// ---- one table ----------------------------------------------------------------------------
function parseKey(key) {
  // block_p1_p2…@NxCxHxW[:dtype] → the candidate (block and its own parameters) and the layer (stride,
  // output channels, input shape): the operator-key grammar alone, no search space needed.
  const [body, shapeAndType] = key.split("@");
  const parts = body.split("_");
  const block = [parts[0]];
  const layer = [];
  for (const p of parts.slice(1)) {
    (/^[so]\d+$/.test(p) ? layer : block).push(p);
  }
  const [shape, dtype] = (shapeAndType || "").split(":");
  return { type: parts[0], candidate: block.join("_") + (dtype ? `:${dtype}` : ""), layer: `${layer.join(" ")} @ ${shape}` };
}

// ---- SVG drawing (the table's heatmap, the two plots below) -----------------------------------
function svgCanvas(id, width, height) {
  // An <svg> and add(tag, attrs, {text, tooltip, parent}): text as text nodes, a tooltip as a <title> child.
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  for (const [a, v] of Object.entries({ id, width, height })) svg.setAttribute(a, v);
  const add = (tag, attrs, { text, tooltip, parent } = {}) => {
    const node = document.createElementNS(ns, tag);
    for (const [a, v] of Object.entries(attrs)) node.setAttribute(a, v);
    if (text !== undefined) node.textContent = text;
    if (tooltip !== undefined) {
      const title = document.createElementNS(ns, "title");
      title.textContent = tooltip;
      node.append(title);
    }
    (parent || svg).append(node);
    return node;
  };
  return { svg, add };
}

function naturalCompare(a, b) {
  // Text part by part, runs of digits by their value: o8 < o16 < o128 and e3 < e6 < e12 (a string sort puts
  // o128 before o16 before o8).
  const pa = a.match(/\d+|\D+/g) || [], pb = b.match(/\d+|\D+/g) || [];
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    const x = pa[i], y = pb[i];
    if (x === y) continue;
    if (/^\d/.test(x) && /^\d/.test(y) && Number(x) !== Number(y)) return Number(x) - Number(y);
    return x < y ? -1 : 1;
  }
  return pa.length - pb.length;
}

// matplotlib's viridis at nine even steps: the colour scale of the θ heatmaps in search/app/plots.py, so one scale
// reads the same on every page and plot (dark purple: low, yellow: high).
const VIRIDIS = ["#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30", "#fde725"];

function viridis(t) {
  const x = Math.min(Math.max(t, 0), 1) * (VIRIDIS.length - 1), i = Math.min(Math.floor(x), VIRIDIS.length - 2), f = x - i;
  const rgb = c => [1, 3, 5].map(j => parseInt(c.slice(j, j + 2), 16));
  const [a, b] = [rgb(VIRIDIS[i]), rgb(VIRIDIS[i + 1])];
  return "#" + a.map((v, j) => Math.round(v + f * (b[j] - v)).toString(16).padStart(2, "0")).join("");
}

function logScale(values) {
  // Latencies span decades: colour by log(ms), from the lowest to the highest present. t(ms) in 0..1.
  const logs = values.map(v => Math.log(Math.max(v, 1e-6)));
  const lo = Math.min(...logs), hi = Math.max(...logs);
  return { lo: Math.exp(lo), hi: Math.exp(hi), t: ms => hi > lo ? (Math.log(Math.max(ms, 1e-6)) - lo) / (hi - lo) : 0.5 };
}

function heatLegend(scale) {
  // The numbered colour bar: the gradient is the cells' own scale, ticks at even steps of log(ms).
  const W = 360, H = 52, x0 = 10, bw = W - 2 * x0, y0 = 16;
  const { svg, add } = svgCanvas("heatmap-legend", W, H);
  add("text", { x: x0, y: 11 }, { text: "median latency, ms (log scale)" });
  const gradient = add("linearGradient", { id: "heat-scale", x1: 0, x2: 1, y1: 0, y2: 0 });
  VIRIDIS.forEach((c, i) => add("stop", { offset: `${(100 * i / (VIRIDIS.length - 1)).toFixed(1)}%`, "stop-color": c }, { parent: gradient }));
  add("rect", { x: x0, y: y0, width: bw, height: 12, fill: scale.hi > scale.lo ? "url(#heat-scale)" : viridis(0.5), class: "scale" });
  const ticks = scale.hi > scale.lo ? [0, 0.25, 0.5, 0.75, 1] : [0.5];
  for (const t of ticks) {
    const ms = scale.hi > scale.lo ? Math.exp(Math.log(scale.lo) + t * (Math.log(scale.hi) - Math.log(scale.lo))) : scale.lo;
    const x = x0 + t * bw;
    add("line", { x1: x, x2: x, y1: y0 + 12, y2: y0 + 17, stroke: "#555" });
    add("text", { x, y: y0 + 29, "text-anchor": t === 0 ? "start" : t === 1 ? "end" : "middle", class: "tick", "data-t": t,
      "data-ms": ms }, { text: fmt.ms(ms) });
  }
  return svg;
}

function heatmap(rows) {
  // rows: [{key, median_ms}], at most HEATMAP_MAX of them (one SVG cell each); rows and columns in the order of
  // the key's fields, numbers by value.
  const cells = rows.map(r => ({ ...parseKey(r.key), key: r.key, ms: r.median_ms }));
  const rowNames = [...new Set(cells.map(c => c.layer))].sort(naturalCompare);
  const colNames = [...new Set(cells.map(c => c.candidate))].sort(naturalCompare);
  const rowOf = new Map(rowNames.map((r, j) => [r, j])), colOf = new Map(colNames.map((c, i) => [c, i]));
  const scale = logScale(cells.map(c => c.ms));
  const cw = 26, ch = 18, left = 230, top = 110;
  const { svg, add } = svgCanvas("heatmap", left + colNames.length * cw + 20, top + rowNames.length * ch + 10);
  colNames.forEach((c, i) => add("text", { x: left + i * cw + cw / 2, y: top - 6, class: "col",
    transform: `rotate(-60 ${left + i * cw + cw / 2} ${top - 6})` }, { text: c }));
  rowNames.forEach((r, j) => add("text", { x: left - 6, y: top + j * ch + ch * 0.7, "text-anchor": "end", class: "row" }, { text: r }));
  for (const c of cells) {
    add("rect", { x: left + colOf.get(c.candidate) * cw, y: top + rowOf.get(c.layer) * ch, width: cw - 1,
      height: ch - 1, fill: viridis(scale.t(c.ms)), "data-key": c.key },
    { tooltip: `${c.key}: ${fmt.ms(c.ms)} ms` });
  }
  return el("div", {}, heatLegend(scale), svg);
}

async function download(device, query, format) {
  const headers = token() ? { Authorization: "Bearer " + token() } : {};
  const response = await fetch(`/lut/${encodeURIComponent(device)}?${query}&format=${format}`, { headers });
  const blob = await response.blob();
  const a = el("a", { href: URL.createObjectURL(blob), download: `${device}.${format}` });
  document.body.append(a); a.click(); a.remove();
}

// The table page asks the server for one page at a time (GET /lut/{device}/entries: sorted, filtered and cut by the
// database), so a 100,000-entry table costs the browser what a 100-entry one does; it used to fetch the whole
// table and draw every row (106 s in Chromium for 100,000 entries).
const PAGE_ROWS = 100;
const HEATMAP_MAX = 2000;  // the heatmap draws one SVG cell per entry: up to this many (the entries route's largest page)
const TABLE_COLUMNS = [["key", "key"], ["type", "type"], ["median ms", "median_ms"], ["min ms", "min_ms"], ["p10 ms", "p10_ms"],
  ["p90 ms", "p90_ms"], ["std ms", "std_ms"], ["n", "n"], ["measured", "measured_at"]];
const count = n => n.toLocaleString("en");

async function tablePage(main) {
  const params = new URLSearchParams(location.search);
  const device = params.get("device") || "";
  const query = new URLSearchParams();
  for (const k of ["runtime", "threads"]) if (params.get(k)) query.set(k, params.get(k));
  const view = { sort: "median_ms", order: "asc", type: "", key: "", offset: 0 };
  const entriesUrl = (v, limit) => {
    const q = new URLSearchParams(query);
    for (const [k, value] of Object.entries({ sort: v.sort, order: v.order, type: v.type, key: v.key, offset: v.offset, limit })) {
      if (value !== "") q.set(k, value);
    }
    return `/lut/${encodeURIComponent(device)}/entries?${q}`;
  };
  const first = await api(entriesUrl(view, PAGE_ROWS));
  const body = el("tbody");
  const shown = el("span", { id: "shown" });
  const heat = el("div", { id: "heatmap-box" });
  const heads = TABLE_COLUMNS.map(([name, column], i) => el("th", {
    class: "sortable" + (i >= 2 && i <= 7 ? " num" : ""), "data-column": column,
    onclick: () => { view.order = view.sort === column && view.order === "asc" ? "desc" : "asc"; view.sort = column; view.offset = 0; load(false); },
  }, name));
  const pager = {};
  const go = where => () => { view.offset = where(); load(false); };
  let current = first;
  const lastOffset = () => Math.max(0, Math.floor((current.matched - 1) / PAGE_ROWS) * PAGE_ROWS);
  pager.first = el("button", { id: "page-first", onclick: go(() => 0) }, "« first");
  pager.prev = el("button", { id: "page-prev", onclick: go(() => Math.max(0, view.offset - PAGE_ROWS)) }, "‹ previous");
  pager.next = el("button", { id: "page-next", onclick: go(() => Math.min(lastOffset(), view.offset + PAGE_ROWS)) }, "next ›");
  pager.last = el("button", { id: "page-last", onclick: go(lastOffset) }, "last »");
  const table = el("table", { id: "entries", "data-entries": first.entries }, el("thead", {}, el("tr", {}, heads)), body);

  const drawRows = page => {
    current = page;
    body.replaceChildren(...page.rows.map(r => el("tr", { "data-key": r.key },
      el("td", {}, el("code", {}, r.key)), el("td", {}, r.type),
      ...[r.median_ms, r.min_ms, r.p10_ms, r.p90_ms, r.std_ms].map((v, i) => el("td", { class: i === 0 ? "num median" : "num" }, fmt.ms(v))),
      el("td", { class: "num" }, r.n), el("td", {}, fmt.when(r.measured_at)))));
    heads.forEach(th => {
      const on = th.dataset.column === page.sort;
      th.classList.toggle("sorted", on);
      if (on) th.setAttribute("aria-sort", page.order === "asc" ? "ascending" : "descending"); else th.removeAttribute("aria-sort");
      th.dataset.arrow = on ? (page.order === "asc" ? "▲" : "▼") : "";
    });
    const range = page.rows.length ? `${count(page.offset + 1)}–${count(page.offset + page.rows.length)}` : "none";
    shown.replaceChildren(`rows ${range} of ${count(page.matched)}` + (page.matched === page.entries ? " entries"
      : ` matching (${count(page.entries)} entries)`));
    pager.first.disabled = pager.prev.disabled = page.offset === 0;
    pager.next.disabled = pager.last.disabled = page.offset + page.rows.length >= page.matched;
    // What is drawn, for anyone waiting on it (the tests): sort, order, offset, type, key filter.
    table.dataset.view = [page.sort, page.order, page.offset, view.type, view.key].join(" ");
  };
  let latest = 0;  // the newest request: an older answer that arrives late is dropped
  const drawHeatmap = async (page, mine) => {
    if (page.matched > HEATMAP_MAX) {
      heat.replaceChildren(el("p", { class: "muted", id: "heatmap-note" }, `${count(page.matched)} entries: the heatmap draws at most `
        + `${count(HEATMAP_MAX)}; choose an operator type or a key filter to draw that part.`));
      return;
    }
    const all = page.offset === 0 && page.rows.length === page.matched ? page
      : await api(entriesUrl({ ...view, offset: 0, sort: "key", order: "asc" }, HEATMAP_MAX));
    if (mine !== latest) return;
    heat.replaceChildren(all.rows.length ? heatmap(all.rows) : el("p", { class: "muted" }, "no entries"));
  };
  const load = async heatToo => {
    const mine = ++latest;
    try {
      const page = await api(entriesUrl(view, PAGE_ROWS));
      if (mine !== latest) return;
      drawRows(page);
      if (heatToo) await drawHeatmap(page, mine);
    } catch (e) {
      if (mine === latest) shown.replaceChildren(el("span", { class: "error", id: "entries-error" }, e.message));
    }
  };
  const filter = el("select", { id: "type-filter", onchange: e => { view.type = e.target.value; view.offset = 0; load(true); } },
    el("option", { value: "" }, "every operator type"),
    Object.entries(first.types).map(([t, n]) => el("option", { value: t }, `${t} (${count(n)})`)));
  let typing = null;
  const keyFilter = el("input", { id: "key-filter", type: "search", placeholder: "key contains…", "aria-label": "key filter",
    oninput: e => { clearTimeout(typing); typing = setTimeout(() => { view.key = e.target.value; view.offset = 0; load(true); }, 250); } });
  const lut = first, cal = lut.calibration;
  show(main,
    el("h1", {}, `${lut.device} · ${lut.runtime} ${lut.runtime_version || ""} × ${lut.threads} thread(s)`),
    el("p", { class: "muted" }, `${count(lut.entries)} entries · overhead per call: ${fmt.ms(lut.overhead_ms)} ms`,
      cal ? ` · calibrated on ${cal.networks} networks: × ${cal.scale.toFixed(3)} ${cal.offset_ms >= 0 ? "+" : "−"} ${fmt.ms(Math.abs(cal.offset_ms))} ms · ` : " · not calibrated",
      cal ? el("a", { id: "validation-link", href: "/ui/validation.html?" + new URLSearchParams({ device, runtime: lut.runtime, threads: lut.threads }) },
        "predicted vs measured networks") : null),
    sourceNote(lut.source),
    el("div", { class: "controls" }, filter, keyFilter,
      el("button", { onclick: () => download(device, query, "csv") }, "download CSV"),
      el("button", { onclick: () => download(device, query, "json") }, "download JSON")),
    el("h2", {}, "Median latency by layer (rows) and candidate (columns), log colour scale"),
    heat,
    el("h2", {}, "Entries"),
    el("div", { class: "controls" }, pager.first, pager.prev, shown, pager.next, pager.last),
    table);
  drawRows(first);
  await drawHeatmap(first, latest);
}

// ---- two devices --------------------------------------------------------------------------
function loglogFit(points) {
  // Least squares of log y on log x: the common trend of the two devices (slope and offset in log space).
  const xs = points.map(p => Math.log(p.a)), ys = points.map(p => Math.log(p.b));
  const n = xs.length, mx = xs.reduce((s, v) => s + v, 0) / n, my = ys.reduce((s, v) => s + v, 0) / n;
  let sxy = 0, sxx = 0;
  for (let i = 0; i < n; i++) { sxy += (xs[i] - mx) * (ys[i] - my); sxx += (xs[i] - mx) ** 2; }
  const slope = sxx > 0 ? sxy / sxx : 1;
  // The offset is the median one: a few relatively slow operators must not drag the trend towards themselves.
  const offsets = xs.map((x, i) => ys[i] - slope * x).sort((u, v) => u - v);
  const offset = n % 2 ? offsets[(n - 1) / 2] : (offsets[n / 2 - 1] + offsets[n / 2]) / 2;
  return { slope, offset, residual: p => Math.log(p.b) - (offset + slope * Math.log(p.a)) };
}

function scatter(points, fit, labelA, labelB) {
  const W = 520, H = 420, pad = 50;
  const { svg, add } = svgCanvas("compare-plot", W, H);
  const all = points.flatMap(p => [Math.log10(p.a), Math.log10(p.b)]);
  const lo = Math.floor(Math.min(...all)), hi = Math.ceil(Math.max(...all));
  const sx = v => pad + (Math.log10(v) - lo) / Math.max(hi - lo, 1e-9) * (W - 2 * pad);
  const sy = v => H - pad - (Math.log10(v) - lo) / Math.max(hi - lo, 1e-9) * (H - 2 * pad);
  const frame = { x: pad, y: pad, width: W - 2 * pad, height: H - 2 * pad };
  add("rect", { ...frame, fill: "#fff", stroke: "#ccd" });
  for (let d = lo; d <= hi; d++) {
    add("text", { x: sx(10 ** d), y: H - pad + 16, "text-anchor": "middle" }, { text: `${10 ** d} ms` });
    add("text", { x: pad - 6, y: sy(10 ** d) + 4, "text-anchor": "end" }, { text: `${10 ** d}` });
  }
  const a0 = 10 ** lo, a1 = 10 ** hi;
  add("rect", frame, { parent: add("clipPath", { id: "plot-area" }) });
  const trend = a => Math.exp(fit.offset + fit.slope * Math.log(a));
  add("line", { x1: sx(a0), y1: sy(trend(a0)), x2: sx(a1), y2: sy(trend(a1)), stroke: "#888", "stroke-dasharray": "4 3",
    "clip-path": "url(#plot-area)" });
  for (const p of points) {
    add("circle", { cx: sx(p.a), cy: sy(p.b), r: 3, fill: p.outlier ? "#c8402f" : "#2f6fdb", "fill-opacity": 0.7, "data-key": p.key },
      { tooltip: `${p.key}: ${fmt.ms(p.a)} / ${fmt.ms(p.b)} ms` });
  }
  add("text", { x: W / 2, y: H - 8, "text-anchor": "middle" }, { text: `${labelA} (ms, log)` });
  add("text", { x: 14, y: H / 2, transform: `rotate(-90 14 ${H / 2})`, "text-anchor": "middle" }, { text: `${labelB} (ms, log)` });
  return svg;
}

async function comparePage(main) {
  const q = new URLSearchParams(location.search);
  const side = s => {
    const p = new URLSearchParams();
    for (const k of ["runtime", "threads"]) if (q.get(`${k}_${s}`)) p.set(k, q.get(`${k}_${s}`));
    return p;
  };
  const devA = q.get("a") || "", devB = q.get("b") || "";
  if (!devA || !devB) throw new ApiError(422, "give two devices: ?a=NAME&b=NAME (optionally runtime_a, threads_a, runtime_b, threads_b)");
  const [A, B] = await Promise.all([api(`/lut/${encodeURIComponent(devA)}?${side("a")}`), api(`/lut/${encodeURIComponent(devB)}?${side("b")}`)]);
  const points = Object.keys(A.entries).filter(k => k in B.entries)
    .map(k => ({ key: k, a: A.entries[k].median_ms, b: B.entries[k].median_ms })).filter(p => p.a > 0 && p.b > 0);
  const label = t => `${t.device} (${t.runtime} × ${t.threads})`;
  if (points.length < 2) {
    show(main, el("h1", {}, `${label(A)} vs ${label(B)}`), el("p", { class: "muted", id: "shared" }, `${points.length} shared keys: nothing to compare`));
    return;
  }
  const fit = loglogFit(points);
  points.forEach(p => { p.residual = fit.residual(p); });
  const ranked = [...points].sort((x, y) => Math.abs(y.residual) - Math.abs(x.residual));
  ranked.slice(0, 15).filter(p => Math.abs(p.residual) > Math.log(1.25)).forEach(p => { p.outlier = true; });
  show(main, 
    el("h1", {}, `${label(A)} vs ${label(B)}`),
    el("p", { class: "muted", id: "shared" }, `${points.length} shared keys · common trend: ${label(B)} ≈ ${Math.exp(fit.offset).toFixed(3)} × ${label(A)}^${fit.slope.toFixed(3)}`),
    scatter(points, fit, label(A), label(B)),
    el("h2", {}, "Furthest from the common trend (relatively slow or fast on the second device; red: more than 25% off)"),
    el("table", { id: "outliers" }, el("thead", {}, el("tr", {}, ["operator", `${A.device} ms`, `${B.device} ms`, "vs trend"]
      .map((h, i) => el("th", { class: i ? "num" : null }, h)))),
      el("tbody", {}, ranked.slice(0, 15).map(p => el("tr", { "data-key": p.key },
        el("td", {}, el("code", {}, p.key)), el("td", { class: "num" }, fmt.ms(p.a)), el("td", { class: "num" }, fmt.ms(p.b)),
        el("td", { class: "num ratio" }, `×${Math.exp(p.residual).toFixed(2)}`))))));
}

// ---- how well a table predicts whole networks ---------------------------------------------
function kendallTau(xs, ys) {
  // τ-b: ties in either ranking handled.
  let concordant = 0, discordant = 0, tx = 0, ty = 0;
  for (let i = 0; i < xs.length; i++) {
    for (let j = i + 1; j < xs.length; j++) {
      const dx = Math.sign(xs[i] - xs[j]), dy = Math.sign(ys[i] - ys[j]);
      if (dx === 0 && dy === 0) continue;
      if (dx === 0) tx++; else if (dy === 0) ty++; else if (dx === dy) concordant++; else discordant++;
    }
  }
  const d = Math.sqrt((concordant + discordant + tx) * (concordant + discordant + ty));
  return d > 0 ? (concordant - discordant) / d : NaN;
}

function mape(pred, meas) { return 100 * pred.reduce((s, p, i) => s + Math.abs(p - meas[i]) / meas[i], 0) / pred.length; }

// The colours of hwnas validate's scatter plot (search/validate.py): table sum matplotlib's tab:blue, calibrated
// tab:orange, the ±10% band tab:green, y = x black — one colour per role on the page and in the PNG.
const FIDELITY = { raw: "#1f77b4", calibrated: "#ff7f0e", band: "#2ca02c", identity: "#000000" };

function fidelityPlot(points, cal) {
  const W = 520, H = 460, pad = 56;
  const { svg, add } = svgCanvas("validation-plot", W, H);
  const values = points.flatMap(p => [p.measured_ms, p.predicted_ms, p.calibrated]);
  const lo = Math.min(...values) * 0.9, hi = Math.max(...values) * 1.1;
  const sx = v => pad + (v - lo) / (hi - lo) * (W - 2 * pad), sy = v => H - pad - (v - lo) / (hi - lo) * (H - 2 * pad);
  add("rect", { x: pad, y: pad, width: W - 2 * pad, height: H - 2 * pad, fill: "#fff", stroke: "#ccd" });
  // ±10% band around y = x (x: measured, y: predicted)
  add("polygon", { points: [[lo, lo * 0.9], [hi, hi * 0.9], [hi, hi * 1.1], [lo, lo * 1.1]].map(([x, y]) => `${sx(x)},${sy(Math.min(Math.max(y, lo), hi))}`).join(" "),
    fill: FIDELITY.band, "fill-opacity": 0.12 });
  add("line", { x1: sx(lo), y1: sy(lo), x2: sx(hi), y2: sy(hi), stroke: FIDELITY.identity, "stroke-width": 1 });
  for (const value of [lo, (lo + hi) / 2, hi]) {
    add("text", { x: sx(value), y: H - pad + 16, "text-anchor": "middle" }, { text: value.toFixed(3) });
    add("text", { x: pad - 6, y: sy(value) + 4, "text-anchor": "end" }, { text: value.toFixed(3) });
  }
  for (const p of points) {
    add("circle", { cx: sx(p.measured_ms), cy: sy(p.predicted_ms), r: 3, fill: FIDELITY.raw, "fill-opacity": 0.8, class: "raw" });
    add("circle", { cx: sx(p.measured_ms), cy: sy(p.calibrated), r: 3.5, fill: FIDELITY.calibrated, "fill-opacity": 0.85, class: "calibrated" },
      { tooltip: `${p.arch_id}: measured ${fmt.ms(p.measured_ms)}, predicted ${fmt.ms(p.predicted_ms)} (${fmt.ms(p.calibrated)} calibrated) ms` });
  }
  add("text", { x: W / 2, y: H - 12, "text-anchor": "middle" }, { text: "measured whole network (ms)" });
  add("text", { x: 16, y: H / 2, transform: `rotate(-90 16 ${H / 2})`, "text-anchor": "middle" }, { text: "predicted by the table (ms)" });
  add("text", { x: pad + 8, y: pad + 16 }, { text: cal ? "blue: table sum · orange: calibrated · line: y = x · band: ±10%" : "line: y = x · band: ±10%" });
  return svg;
}

function validationFigures(cal, points) {
  // The headline is the hold-out MAPE that hwnas validate stored: measured on the networks the calibration was
  // NOT fitted on. A MAPE over every plotted network includes the ones it was fitted on, so it flatters the
  // calibration; it is shown after, labelled so. [label, value, note, headline]
  const pct = v => v === null || v === undefined ? "–" : v.toFixed(1) + "%";
  const heldOut = cal.mape_after !== null && cal.mape_after !== undefined;
  const figures = [
    ["MAPE, calibrated, held out", pct(cal.mape_after), heldOut
      ? `on networks it was not fitted on; table sum there: ${pct(cal.mape_before)}`
      : "not stored with this calibration (no hold-out)", true],
  ];
  if (points.length) {
    const meas = points.map(p => p.measured_ms);
    figures.push(
      ["MAPE, calibrated, all networks", pct(mape(points.map(p => p.calibrated), meas)),
        `all ${points.length} plotted, including the ${cal.networks} it was fitted on`, false],
      ["MAPE, table sum, all networks", pct(mape(points.map(p => p.predicted_ms), meas)), `all ${points.length} plotted`, false],
      ["Kendall τ", kendallTau(points.map(p => p.predicted_ms), meas).toFixed(3), `all ${points.length}; a calibration keeps the ranking`, false],
      ["networks", points.length, `${cal.networks} fitted on`, false]);
  }
  return figures;
}

async function validationPage(main) {
  const q = new URLSearchParams(location.search);
  const device = q.get("device") || "";
  const query = new URLSearchParams();
  for (const k of ["runtime", "threads"]) if (q.get(k)) query.set(k, q.get(k));
  const cal = await api(`/lut/${encodeURIComponent(device)}/calibration?${query}`);
  const points = cal.points.map(p => ({ ...p, calibrated: cal.scale * p.predicted_ms + cal.offset_ms }));
  show(main,
    el("h1", {}, `How well ${cal.device}'s table (${cal.runtime} × ${cal.threads}) predicts whole networks`),
    el("p", { class: "muted" }, `calibration of ${fmt.when(cal.created_at)}: measured ≈ ${cal.scale.toFixed(4)} × predicted `,
      `${cal.offset_ms >= 0 ? "+" : "−"} ${fmt.ms(Math.abs(cal.offset_ms))} ms, fitted on ${cal.networks} networks`),
    el("div", { class: "cards" }, validationFigures(cal, points).map(([k, v, note, headline]) =>
      el("div", { class: headline ? "card headline" : "card" }, el("div", { class: "muted" }, k),
        el("div", { class: "value", "data-figure": k }, v), el("div", { class: "note muted" }, note)))),
    points.length ? fidelityPlot(points, cal) : el("p", { class: "muted", id: "no-points" },
      "This calibration was stored without its networks (an older hwnas validate): nothing to plot."));
}

// ---- the frame ----------------------------------------------------------------------------
function tokenForm() {
  const state = document.getElementById("token-state");
  state.textContent = token() ? "token set" : "no token (anonymous reads)";
  document.getElementById("token-form").addEventListener("submit", event => {
    event.preventDefault();
    const value = document.getElementById("token-input").value.trim();
    if (value) sessionStorage.setItem(TOKEN_KEY, value); else sessionStorage.removeItem(TOKEN_KEY);
    location.reload();
  });
}

function tokenFromFragment() {
  // A token may also come in the fragment (#token=…): kept in this tab, then removed from the address bar.
  const m = location.hash.match(/token=([^&]+)/);
  if (!m) return false;
  sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
  history.replaceState(null, "", location.pathname + location.search);
  return true;
}

async function start() {
  tokenFromFragment();
  window.addEventListener("hashchange", () => { if (tokenFromFragment()) location.reload(); });
  tokenForm();
  const main = document.getElementById("main");
  const page = { index: overview, job: jobPage, table: tablePage, compare: comparePage,
    validation: validationPage }[document.body.dataset.page];
  try { await page(main); } catch (e) { showError(main, e); }
  document.body.dataset.readyMs = performance.now().toFixed(0);  // since navigation began (benchmarks/server_load.py)
  document.body.dataset.ready = "1";
}

document.addEventListener("DOMContentLoaded", start);
