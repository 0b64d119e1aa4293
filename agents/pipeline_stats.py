"""The worker's counters in Redis, so the dashboard's API (which reads only Redis) can show them.

Every worker owns one field of one hash and rewrites it once a second with its totals and its
events/s since its previous write: N workers never overwrite each other and need no lock, and
the reader sums the fields that are recent. The key's TTL removes the hash once no worker is
left to refresh it. The totals are those of the running processes (a restarted worker starts
from zero), which is what the worker's own ``/metrics`` shows too.
"""

from __future__ import annotations

import logging
import socket
import time

import orjson
from prometheus_client import Counter
from redis.exceptions import RedisError

from agents.sink import redis_client
from app import metrics
from app.main import app, settings
from app.redis_keys import RedisKeys

log = logging.getLogger(__name__)

KEYS = RedisKeys(settings.app_id)
#: Long enough to outlive a few missed writes (Redis briefly away), short enough that a stack
#: without workers stops showing numbers soon.
STATS_TTL_S = 30
WORKER = f"{socket.gethostname()}:{settings.web_port}"

_previous: tuple[float, float] | None = None


def counter_total(counter: Counter) -> float:
    """Sum of a counter's ``*_total`` samples over all its labels, through the public collector API."""
    return sum(
        sample.value
        for family in counter.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    )


def snapshot(now: float) -> dict[str, float | int]:
    """This worker's totals, with its events/s since the previous snapshot (0 for the first)."""
    global _previous
    processed = counter_total(metrics.EVENTS_PROCESSED)
    rate = 0.0
    if _previous is not None and now > _previous[0]:
        rate = max(0.0, (processed - _previous[1]) / (now - _previous[0]))
    _previous = (now, processed)
    return {
        "events_processed": int(processed),
        "events_per_s": round(rate, 3),
        "invalid": int(counter_total(metrics.EVENTS_INVALID)),
        "late": int(counter_total(metrics.EVENTS_LATE)),
        "windows_finalized": int(counter_total(metrics.WINDOWS_FINALIZED)),
        "updated_ms": int(time.time() * 1000),
    }


@app.timer(1.0)
async def publish_pipeline_stats() -> None:
    stats = snapshot(time.monotonic())
    try:
        pipe = redis_client().pipeline(transaction=False)
        pipe.hset(KEYS.pipeline_stats, WORKER, orjson.dumps(stats))
        pipe.expire(KEYS.pipeline_stats, STATS_TTL_S)
        await pipe.execute()
    except (RedisError, OSError) as exc:
        log.debug("pipeline stats not written: %s", exc)
