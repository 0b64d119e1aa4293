/*
 * The dashboard's only link to the API. It polls the REST routes today; a push stream can
 * replace `poll` later without touching the rendering code, which only sees `onData` and
 * `onStatus` calls.
 */

export class HttpError extends Error {
  constructor(status, detail) {
    super(`HTTP ${status}: ${detail}`);
    this.status = status;
  }
}

const KEY_ITEM = "streampulse.apiKey";

/*
 * An API started with API_KEYS answers the data routes only with a key. The page takes it from
 * its address (`/#key=...`: a fragment never reaches the server or its logs) or from the key
 * form, keeps it in sessionStorage (this tab only, gone when it closes) and removes it from the
 * address bar at once, so it is not left in the history or in a copied link.
 */
const fragment = new URLSearchParams(location.hash.slice(1));
if (fragment.has("key")) {
  setApiKey(fragment.get("key"));
  history.replaceState(null, "", location.pathname + location.search);
}

export function apiKey() {
  return sessionStorage.getItem(KEY_ITEM) ?? "";
}

export function setApiKey(key) {
  const trimmed = (key ?? "").trim();
  if (trimmed) {
    sessionStorage.setItem(KEY_ITEM, trimmed);
  } else {
    sessionStorage.removeItem(KEY_ITEM);
  }
}

/** The JSON body, or null for a 404 (no data yet is a state to show, not a failure). */
export async function getJSON(path) {
  const headers = { Accept: "application/json" };
  const key = apiKey();
  if (key) {
    headers.Authorization = `Bearer ${key}`;
  }
  const response = await fetch(path, { headers, cache: "no-store" });
  if (response.status === 404) {
    return null;
  }
  if (!response.ok) {
    let detail = response.statusText;
    try {
      detail = (await response.json()).detail ?? detail;
    } catch {
      // A proxy's HTML error page has no JSON detail; the status text names the failure.
    }
    throw new HttpError(response.status, detail);
  }
  return response.json();
}

/**
 * Calls `load` every `intervalMs` and hands its result to `onData`. A failed load (the API is
 * restarting, Redis is away) is retried with exponential backoff up to `maxBackoffMs`, and
 * `onStatus` says so, so the page can show that it is reconnecting rather than stale numbers.
 */
export function poll(load, { intervalMs, maxBackoffMs, onData, onStatus }) {
  let timer = null;
  let running = false;
  let again = false;
  let failures = 0;

  async function tick() {
    clearTimeout(timer);
    if (running) {
      again = true;
      return;
    }
    running = true;
    let delay = intervalMs;
    let data = null;
    let loaded = false;
    try {
      data = await load();
      loaded = true;
      failures = 0;
    } catch (error) {
      failures += 1;
      delay = Math.min(maxBackoffMs, 500 * 2 ** failures);
      onStatus({ state: "reconnecting", error, retryInMs: delay, failures });
    } finally {
      running = false;
    }
    if (again) {
      again = false;
      delay = 0;
    }
    timer = setTimeout(tick, delay);
    if (loaded) {
      onStatus({ state: "live", at: new Date() });
      onData(data);
    }
  }

  tick();
  return { refresh: tick };
}
