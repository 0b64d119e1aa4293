"""(a) StreamPulse itself: real ``faust -A app worker`` processes on a pre-loaded events topic.

The clock starts at the last poll of the workers' ``/metrics`` that still showed no processed
event (so it never starts late) and stops at ``sp:<app>:last_final_ms``, the sink's timestamp of
its last Redis write, once the workers have written as many final windows to Redis as the
reference expects (``streampulse_final_window_latency_seconds_count`` is observed once per
window written, and Redis holds that many distinct final windows). The windows are then read
back from Redis and checked field by field; a run that settles short of the expected count
(everything processed, committed and written, nothing moving) is checked too, so missing
windows show as wrong results rather than as a timeout.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass

from redis import Redis

from bench import procs
from bench.kafka import uncommitted
from bench.redis_io import delete_run_keys, final_windows, last_final_ms
from bench.reference import check_streampulse
from bench.run import Loaded, Row, Run, apply_check, cpu_per_1k, free_port, rate
from support.procs import Proc, metric_values, start_worker

PROCESSED = "streampulse_events_processed_total"
FINALIZED = "streampulse_windows_finalized_total"
WRITTEN = "streampulse_final_window_latency_seconds_count"
#: Reported with every row: where events went when the windows do not add up.
COUNTERS = (
    PROCESSED,
    FINALIZED,
    WRITTEN,
    "streampulse_events_late_total",
    "streampulse_events_invalid_total",
    "streampulse_control_records_total",
    "streampulse_batch_retries_total",
    "streampulse_sink_errors_total",
)
#: Poll fast until the first event is processed (that sets the start), then gently: a scrape
#: is served by the worker's own event loop.
FAST_POLL_S, SLOW_POLL_S = 0.2, 2.0
STALL_S = 15.0
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


@dataclass
class _Progress:
    first_ms: float | None = None
    processed: float = 0.0
    written: float = 0.0
    settled: bool = False


def _follow(run: Run, running: list[tuple[Proc, int]], app_id: str, w: Loaded, expected: int) -> _Progress:
    """Poll until every expected window is in Redis, or the workers have settled short of it
    (every event processed and committed, every finalized window written, nothing moving for
    STALL_S: the check then says what is missing), a worker died, or the run's time is up."""
    ports = [port for _, port in running]
    progress = _Progress()
    none_yet_ms = time.time() * 1000
    started = last_change = time.monotonic()
    seen = (0.0, 0.0)
    while time.monotonic() - started < run.timeout_s and all(proc.alive() for proc, _ in running):
        progress.processed = scrape(ports, PROCESSED)
        if progress.first_ms is None:
            if progress.processed > 0:
                progress.first_ms = none_yet_ms
            else:
                none_yet_ms = time.time() * 1000
        progress.written = scrape(ports, WRITTEN)
        moved = (progress.processed, progress.written) != seen
        # The counter also counts a window written again after a rebalance moved its partition
        # (several workers started together), so it can pass the expected count early: Redis
        # decides, asked once the counters stand still (counting millions of keys takes a while).
        if progress.written >= expected and not moved and _stored(run, app_id) >= expected:
            break
        if moved:
            seen, last_change = (progress.processed, progress.written), time.monotonic()
        elif (
            progress.processed >= w.events
            and progress.written >= scrape(ports, FINALIZED)
            and time.monotonic() - last_change > STALL_S
            and asyncio.run(uncommitted(run.bootstrap, app_id, w.topic, run.partitions)) == 0
        ):
            progress.settled = True
            break
        time.sleep(FAST_POLL_S if progress.first_ms is None else SLOW_POLL_S)
    return progress


def evicted_keys(redis_url: str) -> int:
    client = Redis.from_url(redis_url)
    try:
        return int(client.info("stats")["evicted_keys"])
    finally:
        client.close()


def _stored(run: Run, app_id: str) -> int:
    return sum(1 for _ in final_windows(run.redis_url, app_id))


def run_streampulse(run: Run, w: Loaded, workers: int) -> Row:
    name = "streampulse" if workers == 1 else f"streampulse-{workers}w"
    app_id = f"{run.run_id}-sp{workers}-{w.name}"
    expected = len(w.ref.windows)
    row = Row(name, w.name, w.events, workers=workers, windows_expected=expected)
    row.details["partitions"] = run.partitions
    evicted_before = evicted_keys(run.redis_url)
    running = start_workers(run, worker_env(run, app_id, w.topic), app_id, workers)
    try:
        with procs.RssSampler([proc.pid for proc, _ in running]) as rss:
            progress = _follow(run, running, app_id, w, expected)
            crashed = [proc for proc, _ in running if not proc.alive()]
            ports = [port for _, port in running]
            row.details["worker_counters"] = {name: scrape(ports, name) for name in COUNTERS}
    finally:
        procs.stop_all(proc for proc, _ in running)
    row.processed = int(progress.processed)
    end_ms = last_final_ms(run.redis_url, app_id)
    row.peak_rss_mb = rss.peak_mb(end_ms / 1000 + 1 if end_ms else None)
    row.details["cpu_s_by_thread"] = list(rss.threads.values())  # one mapping per worker
    if progress.first_ms is not None and end_ms is not None:
        row.cpu_ms_per_1k_events = cpu_per_1k(
            rss.cpu_seconds(progress.first_ms / 1000, end_ms / 1000), w.events
        )
    if progress.written < expected and not progress.settled:
        if crashed:
            row.status = "failed"
            row.note = crashed[0].output().strip().splitlines()[-1][:200]
        else:
            row.status = f"timeout after {run.timeout_s:.0f}s"
            row.note = (
                f"processed {row.processed:,} events, {int(progress.written):,} of {expected:,} final windows"
            )
        delete_run_keys(run.redis_url, app_id)
        return row
    if progress.first_ms is not None and end_ms is not None:
        row.seconds = round((end_ms - progress.first_ms) / 1000, 2)
    check = check_streampulse(w.ref, final_windows(run.redis_url, app_id))
    # Checked: the windows leave Redis now, so later contenders and the latency phase do not
    # share the server with millions of keys (and the AOF rewrites they trigger).
    delete_run_keys(run.redis_url, app_id)
    row = apply_check(row, check, rate(w.events, progress.first_ms, end_ms))
    cores = os.cpu_count() or 1
    if workers > cores and row.correct:
        row.note = f"{workers} workers on {cores} cores: a correctness row, not a speed one"
    evicted = evicted_keys(run.redis_url) - evicted_before
    if evicted:
        # At maxmemory Redis drops the keys nearest their expiry: this run's, with the shortest TTL.
        row.note = f"Redis evicted {evicted:,} keys during the run (maxmemory); {row.note}".rstrip("; ")
    return row
