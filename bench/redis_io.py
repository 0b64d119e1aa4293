"""Reading a run's results out of Redis and removing them afterwards.

Key names come from :mod:`app.redis_keys`, the module the sink and the API share. Reads are
pipelined: the backfill leaves a couple of million final windows, which one round trip per key
would take minutes to read.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
from redis import Redis

from app.redis_keys import RedisKeys
from bench.reference import WindowKey

CHUNK = 5000


def _chunks(client: Redis, pattern: str) -> Iterator[list[bytes]]:
    chunk: list[bytes] = []
    for key in client.scan_iter(match=pattern, count=CHUNK):
        chunk.append(key)
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def final_windows(redis_url: str, app_id: str) -> Iterator[tuple[WindowKey, dict[str, Any]]]:
    """Every final window StreamPulse wrote for ``app_id``, streamed."""
    client = Redis.from_url(redis_url)
    try:
        for chunk in _chunks(client, RedisKeys(app_id).prefix + "w:*"):
            pipe = client.pipeline(transaction=False)
            for key in chunk:
                pipe.hmget(key, "final", "data")
            for final, data in pipe.execute():
                if final == b"1" and data:
                    win = orjson.loads(data)
                    yield (win["window"], win["region_id"], win["window_start_ms"]), win
    finally:
        client.close()


def last_final_ms(redis_url: str, app_id: str) -> int | None:
    client = Redis.from_url(redis_url)
    try:
        value = client.get(RedisKeys(app_id).last_final_ms)
        return int(value) if value else None
    finally:
        client.close()


def delete_run_keys(redis_url: str, app_id_prefix: str) -> int:
    """Unlink every key of every app id starting with ``app_id_prefix`` (a run id: the whole run)."""
    client = Redis.from_url(redis_url)
    deleted = 0
    try:
        for chunk in _chunks(client, f"sp:{app_id_prefix}*"):
            deleted += int(client.unlink(*chunk))
        return deleted
    finally:
        client.close()
