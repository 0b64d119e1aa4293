"""Writes window results into Redis with the layout of :mod:`app.redis_keys`.

Both writes are idempotent: the same window written twice leaves the same keys and values, so
a re-emission after a crash or a replay of the results topic is harmless.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from redis.asyncio import Redis

from app.redis_keys import LIVE_WRITE_LUA, RedisKeys


async def write_final(
    redis: Redis, keys: RedisKeys, windows: Iterable[Mapping[str, Any]], retention_s: Mapping[str, int]
) -> int:
    """Write final windows (the results-topic records) in one pipeline; returns how many."""
    pipe = redis.pipeline(transaction=False)
    n = 0
    for win in windows:
        size, region, start = win["window"], int(win["region_id"]), int(win["window_start_ms"])
        ttl = retention_s[size]
        wkey, hkey = keys.window(size, region, start), keys.history(size, region)
        pipe.hset(wkey, mapping={"final": "1", "data": orjson.dumps(win)})
        pipe.expire(wkey, ttl)
        pipe.zadd(hkey, {str(start): start})
        pipe.zremrangebyscore(hkey, "-inf", f"({start - ttl * 1000}")
        pipe.expire(hkey, ttl)
        pipe.zadd(keys.latest(size), {str(region): start}, gt=True)
        pipe.expire(keys.latest(size), ttl)
        pipe.sadd(keys.regions, str(region))
        n += 1
    if n:
        pipe.set(keys.last_final_ms, int(time.time() * 1000))
        await pipe.execute()
    return n


async def write_live(
    redis: Redis, keys: RedisKeys, windows: Iterable[Mapping[str, Any]], retention_s: Mapping[str, int]
) -> int:
    """Mirror open windows (final=false); never overwrites a window that is already final."""
    script = redis.register_script(LIVE_WRITE_LUA)
    pipe = redis.pipeline(transaction=False)
    n = 0
    for win in windows:
        size, region, start = win["window"], int(win["region_id"]), int(win["window_start_ms"])
        ttl_ms = retention_s[size] * 1000
        await script(
            keys=[keys.window(size, region, start), keys.open_window(size, region)],
            args=[orjson.dumps(win), ttl_ms, start],
            client=pipe,
        )
        pipe.sadd(keys.regions, str(region))
        n += 1
    if n:
        await pipe.execute()
    return n
