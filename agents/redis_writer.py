"""Writes window results into Redis with the layout of :mod:`app.redis_keys`.

Both writes are idempotent: the same window written twice leaves the same keys and values, so
a re-emission after a crash or a replay of the results topic is harmless. Each is one script
call per window size and :data:`CHUNK` windows (per-command packing and reply parsing in
redis-py, not Redis, was what limited the sink), then one pipeline for the app-wide keys. The
sizes of a batch are written concurrently: on Redis Cluster each size's slot may be on another node.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from app.redis_client import RedisClient
from app.redis_keys import (
    FINAL_WRITE_LUA,
    LIVE_WRITE_LUA,
    PUSH_RETENTION,
    RedisKeys,
    ScriptCall,
    final_writes,
    live_writes,
)

#: Windows per script call: big enough to amortize a call, small enough that one call holds
#: Redis (single-threaded, serving the API meanwhile) for only a few milliseconds.
CHUNK = 500


async def write_final(
    redis: RedisClient,
    keys: RedisKeys,
    windows: Sequence[Mapping[str, Any]],
    retention_s: Mapping[str, int],
    push_retention: int = PUSH_RETENTION,
) -> int:
    """Write final windows (the results-topic records); returns how many."""
    calls = list(final_writes(keys, windows, retention_s, CHUNK, push_retention))
    await _run(redis, FINAL_WRITE_LUA, calls)
    await _mark(redis, keys, calls, retention_s, now_ms=int(time.time() * 1000))
    return len(windows)


async def write_live(
    redis: RedisClient,
    keys: RedisKeys,
    windows: Sequence[Mapping[str, Any]],
    retention_s: Mapping[str, int],
    push_retention: int = PUSH_RETENTION,
) -> int:
    """Mirror open windows (final=false); never overwrites a window that is already final.
    Returns how many were written."""
    calls = list(live_writes(keys, windows, retention_s, CHUNK, push_retention))
    written = await _run(redis, LIVE_WRITE_LUA, calls)
    await _mark(redis, keys, calls, retention_s, now_ms=None)
    return sum(int(n) for n in written)


async def _run(redis: RedisClient, lua: str, calls: Iterable[ScriptCall]) -> list[Any]:
    """Each size's calls in order (its updates stream keeps the batch's order), sizes concurrently."""
    script = redis.register_script(lua)
    by_size: dict[str, list[ScriptCall]] = {}
    for call in calls:
        by_size.setdefault(call.size, []).append(call)

    async def one_size(size_calls: list[ScriptCall]) -> list[Any]:
        return [await script(keys=c.keys, args=c.args) for c in size_calls]

    # Every size's outcome is awaited before a failure is raised, so a retry never overlaps
    # writes still running from this attempt.
    outcomes = await asyncio.gather(*(one_size(c) for c in by_size.values()), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return [r for size_results in outcomes if isinstance(size_results, list) for r in size_results]


async def _mark(
    redis: RedisClient,
    keys: RedisKeys,
    calls: Sequence[ScriptCall],
    retention_s: Mapping[str, int],
    now_ms: int | None,
) -> None:
    """Add the regions written to ``regions`` and renew its TTL to the longest retention written
    (NX sets it on a new key, GT only ever lengthens it); stamp ``last_final_ms`` for final writes."""
    if not calls:
        return
    longest = max(retention_s[c.size] for c in calls)
    pipe = redis.pipeline(transaction=False)
    pipe.sadd(keys.regions, *sorted({r for c in calls for r in c.regions}))
    pipe.expire(keys.regions, longest, nx=True)
    pipe.expire(keys.regions, longest, gt=True)
    if now_ms is not None:
        pipe.set(keys.last_final_ms, now_ms, ex=longest)
    await pipe.execute()
