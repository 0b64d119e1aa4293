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

/** The JSON body, or null for a 404 (no data yet is a state to show, not a failure). */
export async function getJSON(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" });
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
