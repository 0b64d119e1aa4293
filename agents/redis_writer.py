"""Writes window results into Redis with the layout of :mod:`app.redis_keys`.

Both writes are idempotent: the same window written twice leaves the same keys and values, so
a re-emission after a crash or a replay of the results topic is harmless. Each is one script
call per :data:`CHUNK` windows: per-command packing and reply parsing in redis-py, not Redis,
was what limited the sink.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from redis.asyncio import Redis

from app.redis_keys import (
    FINAL_WRITE_LUA,
    LIVE_WRITE_LUA,
    PUSH_RETENTION,
    RedisKeys,
    final_write,
    live_write,
)

#: Windows per script call: big enough to amortize a call, small enough that one call holds
#: Redis (single-threaded, serving the API meanwhile) for only a few milliseconds.
CHUNK = 500


async def write_final(
    redis: Redis,
    keys: RedisKeys,
    windows: Sequence[Mapping[str, Any]],
    retention_s: Mapping[str, int],
    push_retention: int = PUSH_RETENTION,
) -> int:
    """Write final windows (the results-topic records); returns how many."""
    script = redis.register_script(FINAL_WRITE_LUA)
    now_ms = int(time.time() * 1000)
    for i in range(0, len(windows), CHUNK):
        await script(args=final_write(keys, windows[i : i + CHUNK], retention_s, now_ms, push_retention))
    return len(windows)


async def write_live(
    redis: Redis,
    keys: RedisKeys,
    windows: Sequence[Mapping[str, Any]],
    retention_s: Mapping[str, int],
    push_retention: int = PUSH_RETENTION,
) -> int:
    """Mirror open windows (final=false); never overwrites a window that is already final.
    Returns how many were written."""
    script = redis.register_script(LIVE_WRITE_LUA)
    written = 0
    for i in range(0, len(windows), CHUNK):
        args = live_write(keys, windows[i : i + CHUNK], retention_s, push_retention)
        written += int(await script(args=args))
    return written
