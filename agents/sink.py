"""The Redis sink: final windows from the results topic, and the live mirror of open windows.

Final windows are consumed from Kafka, so if Redis is down the sink retries with backoff and
the results wait in the topic (the consumer offset only moves past what Redis has stored);
nothing is lost, and a re-delivery writes the same value under the same key. Neither path waits
on a quiet stream: a result is written as soon as it is fetched, and open windows as soon as a
batch changed them, at most ``LIVE_MIRROR_RATE`` times a second (what a busy stream costs Redis).
Live windows are best-effort: a failed mirror is counted and superseded by the next one. Both
writes append the changes to the updates streams that ``GET /stream`` serves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from faust.types import Message
from redis.exceptions import RedisError

from agents.redis_writer import write_final, write_live
from app import internals, metrics
from app.live import live_changed, live_dirty
from app.main import app, settings
from app.redis_client import RedisClient
from app.redis_client import redis_client as connect_redis
from app.redis_keys import RedisKeys
from app.topics import CLOSED_AT_HEADER, results_topic
from tables.results import is_window_record, window_record
from tables.windows import size_names

log = logging.getLogger(__name__)

KEYS = RedisKeys(settings.app_id)
SIZE_NAMES = size_names(settings.window_sizes)
RETENTION_S = settings.retention_s()
BACKOFF_MAX_S = 5.0

_redis: RedisClient | None = None


def redis_client() -> RedisClient:
    """One pool per worker process, created inside the running event loop."""
    global _redis
    if _redis is None:
        _redis = connect_redis(settings, socket_timeout=5, socket_connect_timeout=2)
    return _redis


#: Fetched results wait here for the sink, a batch at a time (see app/batches.py).
results_inbox = internals.batch_inbox(app, settings.results, max_buffered=20_000)


@app.agent(results_topic)
async def sink_final_windows(stream: Any) -> None:
    """Write final windows to Redis; records are acked (committable) only once Redis has them.

    The records come from ``results_inbox``; ``stream`` is Faust's, which this agent declares
    the topic with but does not iterate.
    """
    while True:
        messages = await results_inbox.take(2_000, 0.0)
        records = [r for r in map(_result, messages) if r is not None]
        closed_at = [_closed_at_ms(m.headers) for m in messages]
        backoff = 0.2
        while True:
            started = time.perf_counter()
            try:
                await write_final(redis_client(), KEYS, records, RETENTION_S, settings.push_retention)
            except (RedisError, OSError) as exc:
                metrics.SINK_ERRORS.labels("final").inc()
                log.warning(
                    "Redis write of %d final windows failed (%s); retrying in %.1fs",
                    len(records),
                    exc,
                    backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            metrics.SINK_WRITE_SECONDS.labels("final").observe(time.perf_counter() - started)
            break
        results_inbox.ack(messages)
        now_ms = time.time() * 1000
        for ms in closed_at:
            if ms is not None:
                metrics.FINAL_LATENCY.observe(max(0.0, (now_ms - ms) / 1000))


def _result(msg: Message) -> dict[str, Any] | None:
    """A record of the results topic; anything else there is logged and skipped, not fatal."""
    try:
        record = orjson.loads(msg.value or b"")
        if is_window_record(record, RETENTION_S):
            return record
    except orjson.JSONDecodeError:
        pass
    metrics.SINK_ERRORS.labels("invalid_result").inc()
    log.error(
        "skipping a results-topic record that is not a window: %s/%d/%d", msg.topic, msg.partition, msg.offset
    )
    return None


def _closed_at_ms(headers: Any) -> int | None:
    items = headers.items() if isinstance(headers, dict) else (headers or [])
    for name, value in items:
        if name == CLOSED_AT_HEADER:
            return int(value)
    return None


@app.task
async def mirror_open_windows() -> None:
    """Write open windows (final=false) as soon as a batch changed them, coalesced so that each
    window is written at most ``LIVE_MIRROR_RATE`` times a second however busy the stream."""
    interval_s = 1.0 / settings.live_mirror_rate
    while True:
        await live_changed.wait()
        metrics.BATCH_STAGE_SECONDS.labels("mirror_wait").observe(live_changed.clear())
        started = time.perf_counter()
        await _mirror_once()
        await asyncio.sleep(max(0.0, interval_s - (time.perf_counter() - started)))


async def _mirror_once() -> None:
    if not live_dirty:
        return
    batch = dict(live_dirty)
    live_dirty.clear()
    started = time.perf_counter()
    try:
        records = [
            window_record(region, SIZE_NAMES[size_ms], size_ms, start, agg, final=False)
            for (size_ms, region, start), (agg, _) in batch.items()
        ]
        await write_live(redis_client(), KEYS, records, RETENTION_S, settings.push_retention)
    except (RedisError, OSError) as exc:
        metrics.SINK_ERRORS.labels("live").inc()
        log.warning("live mirror of %d windows failed: %s", len(batch), exc)
        for key, item in batch.items():
            live_dirty.setdefault(key, item)
        await asyncio.sleep(1.0)  # Redis is away: try again, but not in a tight loop
        live_changed.set()
        return
    metrics.SINK_WRITE_SECONDS.labels("live").observe(time.perf_counter() - started)
    now = time.time()
    for _, oldest_ts in batch.values():
        metrics.E2E_LATENCY.observe(max(0.0, now - oldest_ts))
