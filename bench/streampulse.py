"""(a) StreamPulse itself: real ``faust -A app worker`` processes on a pre-loaded events topic.

The clock starts at the last poll of the workers' ``/metrics`` that still showed no processed
event (so it never starts late) and stops at ``sp:<app>:last_final_ms``, the sink's timestamp of
its last Redis write, once the workers have written as many final windows to Redis as the
reference expects (``streampulse_final_window_latency_seconds_count`` is observed once per
window written). The windows are then read back from Redis and checked field by field.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from bench import procs
from bench.redis_io import final_windows, last_final_ms
from bench.reference import check_streampulse
from bench.run import Loaded, Row, Run, apply_check, free_port, rate
from tests.integration.pipeline import metric_values, start_worker
from tests.integration.stack import Proc

PROCESSED = "streampulse_events_processed_total"
WRITTEN = "streampulse_final_window_latency_seconds_count"
#: Poll fast until the first event is processed (that sets the start), then gently: a scrape
#: is served by the worker's own event loop.
FAST_POLL_S, SLOW_POLL_S = 0.2, 1.0
#: Redis keeps the run's windows this long even if the clean-up at the end never runs.
RETENTION = "3h"


def worker_env(run: Run, app_id: str, topic: str, *, idle_timeout: str = "0") -> dict[str, str]:
    env = run.env()
    env.update(
        STREAMPULSE_KAFKA_BOOTSTRAP=run.bootstrap,
        STREAMPULSE_REDIS_URL=run.redis_url,
        STREAMPULSE_APP_ID=app_id,
        STREAMPULSE_EVENTS_TOPIC=topic,
        STREAMPULSE_PARTITIONS=str(run.partitions),
        STREAMPULSE_IDLE_TIMEOUT=idle_timeout,
    )
    for size in ("1m", "5m", "15m", "1h"):
        env[f"STREAMPULSE_RETENTION_{size}"] = RETENTION
    return env


def start_workers(run: Run, env: Mapping[str, str], app_id: str, workers: int) -> list[tuple[Proc, int]]:
    started = []
    for i in range(workers):
        port = free_port()
        started.append((start_worker(env, run.work_dir, f"{app_id}-w{i}", port), port))
    return started


def scrape(ports: list[int], name: str) -> float:
    return sum(sum(metric_values(port, name)) for port in ports)


def run_streampulse(run: Run, w: Loaded, workers: int) -> Row:
    name = "streampulse" if workers == 1 else f"streampulse-{workers}w"
    app_id = f"{run.run_id}-sp{workers}-{w.name}"
    expected = len(w.ref.windows)
    row = Row(name, w.name, w.events, workers=workers, windows_expected=expected)
    started = time.monotonic()
    running = start_workers(run, worker_env(run, app_id, w.topic), app_id, workers)
    ports = [port for _, port in running]
    first_ms: float | None = None
    none_yet_ms = time.time() * 1000
    written = 0.0
    try:
        with procs.RssSampler([proc.pid for proc, _ in running]) as rss:
            while time.monotonic() - started < run.timeout_s:
                if not all(proc.alive() for proc, _ in running):
                    break
                processed = scrape(ports, PROCESSED)
                if first_ms is None:
                    if processed > 0:
                        first_ms = none_yet_ms
                    else:
                        none_yet_ms = time.time() * 1000
                written = scrape(ports, WRITTEN)
                if written >= expected:
                    break
                time.sleep(FAST_POLL_S if first_ms is None else SLOW_POLL_S)
            row.processed = int(scrape(ports, PROCESSED))
            crashed = [proc for proc, _ in running if not proc.alive()]
    finally:
        procs.stop_all(proc for proc, _ in running)
    end_ms = last_final_ms(run.redis_url, app_id)
    row.peak_rss_mb = rss.peak_mb(end_ms / 1000 + 1 if end_ms else None)
    if written < expected:
        if crashed:
            row.status = "failed"
            row.note = crashed[0].output().strip().splitlines()[-1][:200]
        else:
            row.status = f"timeout after {run.timeout_s:.0f}s"
            row.note = f"processed {row.processed:,} events, {int(written):,} of {expected:,} final windows"
        return row
    if first_ms is not None and end_ms is not None:
        row.seconds = round((end_ms - first_ms) / 1000, 2)
    check = check_streampulse(w.ref, final_windows(run.redis_url, app_id))
    return apply_check(row, check, rate(w.events, first_ms, end_ms))
