/*
 * The dashboard: city overview, top regions, a region drill-down and the pipeline's state.
 * Every number comes from the REST API through api.js; this module only turns answers into
 * DOM text and uPlot charts.
 */

import { HttpError, apiKey, getJSON, poll, setApiKey } from "./api.js";

const POLL_MS = 2000;
const MAX_BACKOFF_MS = 8000;
const REGIONS_REFRESH_MS = 30000;
/** Windows shown per chart: a few hours of the small sizes, a few days of the hour. */
const POINTS = { "1m": 90, "5m": 72, "15m": 96, "1h": 72 };
const UNIT_MS = { s: 1000, m: 60000, h: 3600000, d: 86400000 };

/** Tick steps for counts: a trip axis never shows half a trip. */
const COUNT_STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000];

const FINAL_COLOR = "#2563eb";
const SECOND_COLOR = "#059669";
const OPEN_COLOR = "#d97706";

const $ = (id) => document.getElementById(id);

const params = new URLSearchParams(location.search);
const state = {
  window: params.get("window") || $("window-select").value,
  by: params.get("by") || $("top-by").value,
  regionId: params.has("region") ? Number(params.get("region")) : null,
  regions: [],
  regionsKey: null,
  regionsAt: 0,
  shownRegion: null,
};
$("window-select").value = state.window;
$("top-by").value = state.by;

const money = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD" });
const count = new Intl.NumberFormat("en-US");

function sizeMs(name) {
  const match = /^(\d+)([smhd])$/.exec(name);
  return match ? Number(match[1]) * UNIT_MS[match[2]] : 60000;
}

function pointsFor(name) {
  return POINTS[name] ?? 60;
}

function formatValue(field, value) {
  if (value === null || value === undefined) {
    return "—";
  }
  if (field === "trip_count") {
    return count.format(value);
  }
  if (field === "revenue" || field === "avg_fare") {
    return money.format(value);
  }
  return `${value.toFixed(1)} s`;
}

function utc(ms) {
  return new Date(ms).toISOString().slice(0, 16).replace("T", " ");
}

function bounds(startIso, endIso) {
  return `${utc(Date.parse(startIso))}–${utc(Date.parse(endIso)).slice(11)} UTC`;
}

function saveUrl() {
  const query = new URLSearchParams({ window: state.window, by: state.by });
  if (state.regionId !== null) {
    query.set("region", String(state.regionId));
  }
  history.replaceState(null, "", `?${query}`);
}

/* ---- loading ---------------------------------------------------------------------------- */

async function loadRegion(windowName, regionId) {
  const latest = await getJSON(`/metrics/region/${regionId}?window=${windowName}&include_current=true`);
  if (latest === null) {
    return { regionId, latest: null, history: null };
  }
  const startMs = Date.parse(latest.window_start) - (pointsFor(windowName) - 1) * sizeMs(windowName);
  const history = await getJSON(
    `/metrics/region/${regionId}/history?window=${windowName}&start=${startMs / 1000}` +
      `&limit=${pointsFor(windowName)}`,
  );
  return { regionId, latest, history };
}

/**
 * One refresh. Routes that would answer 404 (no final window of the size yet, a region without
 * one) are not asked: the city series and the region list already say so, and the browser would
 * log every 404 as a console error.
 */
async function load() {
  const windowName = state.window;
  const by = state.by;
  const key = `${windowName}|${by}|${state.regionId}`;
  const known = (id) => state.regionsKey === windowName && state.regions.some((r) => r.region_id === id);
  const regionsDue =
    state.regionsKey !== windowName ||
    Date.now() - state.regionsAt > REGIONS_REFRESH_MS ||
    (state.regionId !== null && !known(state.regionId));
  const [city, pipeline, regions] = await Promise.all([
    getJSON(`/metrics/city?window=${windowName}&points=${pointsFor(windowName)}`),
    getJSON("/pipeline"),
    regionsDue ? getJSON(`/regions?window=${windowName}`) : Promise.resolve(null),
  ]);
  if (regions !== null) {
    state.regions = regions;
    state.regionsKey = windowName;
    state.regionsAt = Date.now();
  }
  if (city.items.length === 0) {
    return { key, windowName, city, top: null, pipeline, regions, region: null };
  }
  const top = await getJSON(`/metrics/top?window=${windowName}&by=${by}&limit=10`);
  let regionId = state.regionId;
  if (regionId === null && top !== null && top.items.length > 0) {
    regionId = top.items[0].region_id;
  }
  let region = null;
  if (regionId !== null) {
    region = known(regionId)
      ? await loadRegion(windowName, regionId)
      : { regionId, latest: null, history: null };
  }
  return { key, windowName, city, top, pipeline, regions, region };
}

/* ---- charts ----------------------------------------------------------------------------- */

const charts = new Map();

function axisValues(format) {
  return (_u, ticks) => ticks.map((v) => (v === null ? "" : format(v)));
}

function makeChart(elementId, series, axes) {
  const element = $(elementId);
  const options = {
    width: Math.max(200, element.clientWidth),
    height: 190,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "UTC"),
    legend: { live: false },
    cursor: { sync: { key: "city" } },
    scales: { x: { time: true } },
    series: [{}, ...series],
    axes,
  };
  const chart = new uPlot(options, [[], ...series.map(() => [])], element);
  new ResizeObserver(() => chart.setSize({ width: Math.max(200, element.clientWidth), height: 190 })).observe(
    element,
  );
  return chart;
}

function chart(elementId, build) {
  if (!charts.has(elementId)) {
    charts.set(elementId, build());
  }
  return charts.get(elementId);
}

function lineSeries(label, color, scale = "y", points = false) {
  return { label, stroke: color, width: 2, scale, spanGaps: false, points: { show: points, size: 6 } };
}

function openSeries(label, scale = "y") {
  return {
    label,
    stroke: OPEN_COLOR,
    width: 2,
    dash: [4, 4],
    scale,
    points: { show: true, size: 9, fill: OPEN_COLOR },
  };
}

function cityChart(elementId, label, format, counts) {
  const axis = { size: 64, values: axisValues(format), ...(counts ? { incrs: COUNT_STEPS } : {}) };
  return chart(elementId, () =>
    makeChart(
      elementId,
      [lineSeries(`${label} (final)`, FINAL_COLOR), openSeries(`${label} (open window, live)`)],
      [{}, axis],
    ),
  );
}

/** x values and one column per field: final windows first, then the open ones (marked apart). */
function columns(finals, opens, fields) {
  const xs = [...finals.map((p) => p.ms / 1000), ...opens.map((p) => p.ms / 1000)];
  const out = [xs];
  for (const field of fields) {
    out.push([...finals.map((p) => p[field]), ...opens.map(() => null)]);
  }
  for (const field of fields) {
    const lastFinal = finals.length > 0 ? finals[finals.length - 1][field] : null;
    const open = opens.map((p) => p[field]);
    // The open series starts at the last final point so the live part reads as its continuation.
    const joined = finals.map((_, i) => (i === finals.length - 1 ? lastFinal : null));
    out.push(opens.length > 0 ? [...joined, ...open] : xs.map(() => null));
  }
  return out;
}

/* ---- rendering -------------------------------------------------------------------------- */

function renderCity(city, windowName) {
  const finals = city === null ? [] : city.items.map((p) => ({ ...p, ms: p.window_start_ms }));
  const opens = city === null ? [] : city.open.map((p) => ({ ...p, ms: p.window_start_ms }));
  const range = $("overview-range");
  if (finals.length === 0) {
    range.textContent = "Waiting for the first final window…";
  } else {
    const first = finals[0].ms;
    const last = finals[finals.length - 1].ms + sizeMs(windowName);
    range.textContent = `All regions, ${windowName} windows from ${utc(first)} to ${utc(last)} UTC` +
      (opens.length > 0 ? "; the dashed point is the open window (live)." : ".");
  }
  const specs = [
    ["chart-city-trips", "city-trips-now", "Trips", "trip_count", (v) => count.format(v)],
    ["chart-city-revenue", "city-revenue-now", "Revenue", "revenue", (v) => money.format(v)],
    ["chart-city-fare", "city-fare-now", "Average fare", "avg_fare", (v) => money.format(v)],
  ];
  for (const [elementId, nowId, label, field, format] of specs) {
    cityChart(elementId, label, format, field === "trip_count").setData(columns(finals, opens, [field]));
    const latest = finals.length > 0 ? finals[finals.length - 1][field] : null;
    const open = opens.length > 0 ? opens[opens.length - 1][field] : null;
    let text = latest === null ? "" : `latest ${format(latest)}`;
    if (open !== null) {
      text += `${text ? " · " : ""}open ${format(open)}`;
    }
    $(nowId).textContent = text;
  }
}

function renderTop(top) {
  const body = $("top-table").tBodies[0];
  const rows = [];
  if (top === null) {
    $("top-window").textContent = "No final window yet";
  } else {
    $("top-window").textContent = `Latest final window ${bounds(top.window_start, top.window_end)}`;
    for (const item of top.items) {
      const row = document.createElement("tr");
      row.dataset.regionId = String(item.region_id);
      row.tabIndex = 0;
      row.setAttribute("aria-label", `Show region ${item.region_id} ${item.region_name ?? ""}`);
      const cells = [
        ["rank", String(item.rank)],
        ["region-id num", String(item.region_id)],
        ["zone", item.region_name ?? "unknown zone"],
        ["borough", item.borough ?? "—"],
        ["trips num", formatValue("trip_count", item.trip_count)],
        ["revenue num", formatValue("revenue", item.revenue)],
        ["avg-fare num", formatValue("avg_fare", item.avg_fare)],
      ];
      for (const [cls, text] of cells) {
        const cell = document.createElement("td");
        cell.className = cls;
        cell.textContent = text;
        row.append(cell);
      }
      if (item.region_id === state.shownRegion) {
        row.classList.add("selected");
      }
      rows.push(row);
    }
  }
  body.replaceChildren(...rows);
}

function renderPipeline(pipeline) {
  const health = pipeline.health;
  const line = $("pipe-health");
  line.dataset.ok = String(health.status === "ok");
  line.textContent = health.status === "ok" ? "Healthy: all checks passed" : `Unhealthy: ${health.detail}`;
  const checks = Object.entries(health.checks).map(([name, check]) => {
    const item = document.createElement("li");
    item.dataset.ok = String(check.ok);
    item.textContent = `${check.ok ? "✓" : "✗"} ${name}: ${check.detail}`;
    return item;
  });
  $("pipe-checks").replaceChildren(...checks);
  const age = health.checks.freshness.age_s;
  $("pipe-freshness").textContent = age === null ? "no final window yet" : `${age.toFixed(1)} s ago`;
  $("pipe-eps").textContent = pipeline.workers > 0 ? count.format(Math.round(pipeline.events_per_s)) : "—";
  $("pipe-processed").textContent = count.format(pipeline.events_processed);
  $("pipe-late").textContent = count.format(pipeline.late);
  $("pipe-invalid").textContent = count.format(pipeline.invalid);
  $("pipe-workers").textContent = String(pipeline.workers);
}

function renderRegionList(regions) {
  const options = regions.map((r) => {
    const option = document.createElement("option");
    option.value = `${r.region_id} — ${r.region_name ?? "unknown zone"} (${r.borough ?? "—"})`;
    return option;
  });
  $("region-options").replaceChildren(...options);
}

function fillStats(listId, record) {
  for (const dd of $(listId).querySelectorAll("dd[data-field]")) {
    dd.textContent = record === null ? "—" : formatValue(dd.dataset.field, record[dd.dataset.field]);
  }
}

function regionCharts() {
  const volume = chart("chart-region-volume", () =>
    makeChart(
      "chart-region-volume",
      [
        lineSeries("Trips (final)", FINAL_COLOR),
        lineSeries("Revenue (final)", SECOND_COLOR, "usd"),
        openSeries("Trips (open window, live)"),
        openSeries("Revenue (open window, live)", "usd"),
      ],
      [{}, { size: 48, incrs: COUNT_STEPS }, { side: 1, scale: "usd", size: 64, grid: { show: false }, values: axisValues((v) => money.format(v)) }],
    ),
  );
  const duration = chart("chart-region-duration", () =>
    makeChart(
      "chart-region-duration",
      [
        // Points, because a window with trips between two without is a single value, no line.
        lineSeries("p50 (final)", FINAL_COLOR, "y", true),
        lineSeries("p95 (final)", SECOND_COLOR, "y", true),
        openSeries("p50 (open window, live)"),
        openSeries("p95 (open window, live)"),
      ],
      [{}, { size: 56 }],
    ),
  );
  return { volume, duration };
}

/** The region's windows over the chart's span, zero trips where it had none. */
function regionPoints(region, windowName) {
  const step = sizeMs(windowName);
  const lastStart = Date.parse(region.latest.window_start);
  const byStart = new Map(region.history.items.map((w) => [Date.parse(w.window_start), w]));
  const points = [];
  for (let ms = lastStart - (pointsFor(windowName) - 1) * step; ms <= lastStart; ms += step) {
    const w = byStart.get(ms);
    points.push({
      ms,
      trip_count: w ? w.trip_count : 0,
      revenue: w ? w.revenue : 0,
      p50_duration: w ? w.p50_duration : null,
      p95_duration: w ? w.p95_duration : null,
    });
  }
  return points;
}

function renderRegion(region, windowName) {
  const message = $("region-msg");
  if (region === null) {
    message.textContent = "Pick a region once the first final window is in.";
    return;
  }
  state.shownRegion = region.regionId;
  for (const row of $("top-table").tBodies[0].rows) {
    row.classList.toggle("selected", Number(row.dataset.regionId) === region.regionId);
  }
  if (region.latest === null) {
    $("region-title").textContent = `Region ${region.regionId}`;
    message.textContent = `Region ${region.regionId} has no final ${windowName} window.`;
    fillStats("region-final", null);
    fillStats("region-open", null);
    return;
  }
  const latest = region.latest;
  $("region-title").textContent =
    `Region ${latest.region_id} · ${latest.region_name ?? "unknown zone"} · ${latest.borough ?? "—"}`;
  if (message.dataset.kind !== "search") {
    message.textContent = "";
  }
  $("region-final-window").textContent = bounds(latest.window_start, latest.window_end);
  fillStats("region-final", latest);
  const current = latest.current;
  $("region-open-window").textContent = current ? bounds(current.window_start, current.window_end) : "none open";
  fillStats("region-open", current ?? null);

  const finals = region.history === null ? [] : regionPoints(region, windowName);
  const opens = current
    ? [{ ms: Date.parse(current.window_start), trip_count: current.trip_count, revenue: current.revenue,
        p50_duration: current.p50_duration, p95_duration: current.p95_duration }]
    : [];
  const { volume, duration } = regionCharts();
  volume.setData(columns(finals, opens, ["trip_count", "revenue"]));
  duration.setData(columns(finals, opens, ["p50_duration", "p95_duration"]));
}

function render(data) {
  if (data.key !== `${state.window}|${state.by}|${state.regionId}`) {
    return;
  }
  if (data.regions !== null) {
    renderRegionList(data.regions);
  }
  renderCity(data.city, data.windowName);
  renderTop(data.top);
  renderPipeline(data.pipeline);
  renderRegion(data.region, data.windowName);
  document.body.dataset.updated = String(Date.now());
}

/**
 * The API answers 401 when it was started with API_KEYS and the page has no key, or a wrong
 * one: the panel says which and takes a key, and the next poll uses it.
 */
function showKeyPanel() {
  let panel = $("key-panel");
  if (panel === null) {
    panel = document.createElement("section");
    panel.id = "key-panel";
    panel.className = "card wide";
    panel.innerHTML =
      '<p id="key-msg" role="alert"></p>' +
      '<form id="key-form" class="search">' +
      '<label for="key-input">API key</label> ' +
      '<input id="key-input" name="key" type="password" autocomplete="off" required> ' +
      '<button id="key-use" type="submit">Use key</button>' +
      "</form>";
    document.querySelector("main").prepend(panel);
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      setApiKey($("key-input").value);
      $("key-input").value = "";
      poller.refresh();
    });
  }
  $("key-msg").textContent = apiKey()
    ? "The API refused this key (missing or invalid API key). Enter another one."
    : "This API needs a key. Enter it below, or open the page as /#key=<your key>.";
}

function showStatus(status) {
  const element = $("conn");
  const refused = status.error instanceof HttpError && status.error.status === 401;
  element.dataset.state = refused ? "unauthorized" : status.state;
  if (status.state === "live") {
    element.textContent = `Live · updated ${status.at.toISOString().slice(11, 19)} UTC`;
    $("key-panel")?.remove();
  } else if (refused) {
    element.textContent = "API key needed";
    showKeyPanel();
  } else {
    element.textContent = `Reconnecting… (retry in ${Math.round(status.retryInMs / 1000)} s)`;
    element.title = String(status.error);
  }
}

/* ---- controls --------------------------------------------------------------------------- */

const poller = poll(load, { intervalMs: POLL_MS, maxBackoffMs: MAX_BACKOFF_MS, onData: render, onStatus: showStatus });

$("window-select").addEventListener("change", (event) => {
  state.window = event.target.value;
  saveUrl();
  poller.refresh();
});

$("top-by").addEventListener("change", (event) => {
  state.by = event.target.value;
  saveUrl();
  poller.refresh();
});

function selectRegion(regionId) {
  state.regionId = regionId;
  saveUrl();
  poller.refresh();
}

function findRegion(text) {
  const query = text.trim();
  const id = /^(\d+)/.exec(query);
  if (id) {
    return Number(id[1]);
  }
  const lower = query.toLowerCase();
  const exact = state.regions.find((r) => (r.region_name ?? "").toLowerCase() === lower);
  const partial = state.regions.find((r) => (r.region_name ?? "").toLowerCase().includes(lower));
  return (exact ?? partial)?.region_id ?? null;
}

$("region-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const message = $("region-msg");
  const text = $("region-input").value;
  const regionId = text.trim() ? findRegion(text) : null;
  if (regionId === null) {
    message.dataset.kind = "search";
    message.textContent = `No region with data matches “${text}”.`;
    return;
  }
  message.dataset.kind = "";
  message.textContent = "";
  selectRegion(regionId);
});

$("top-table").addEventListener("click", (event) => {
  const row = event.target.closest("tr[data-region-id]");
  if (row) {
    selectRegion(Number(row.dataset.regionId));
  }
});

$("top-table").addEventListener("keydown", (event) => {
  const row = event.target.closest("tr[data-region-id]");
  if (row && (event.key === "Enter" || event.key === " ")) {
    event.preventDefault();
    selectRegion(Number(row.dataset.regionId));
  }
});

saveUrl();
