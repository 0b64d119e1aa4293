"""Reading the final windows a run stored in Redis, in the sink's key layout.

Reads are pipelined and streamed: a backfill leaves a couple of million final windows, which one
round trip per key would take minutes to read and one dict would hold all at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
from redis import Redis

from support.reference import WindowKey, window_pattern

CHUNK = 5000


def scan_chunks(client: Redis, pattern: str) -> Iterator[list[bytes]]:
    """The keys matching ``pattern`` in lists of at most :data:`CHUNK`."""
    chunk: list[bytes] = []
    for key in client.scan_iter(match=pattern, count=CHUNK):
        chunk.append(key)
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def final_windows(redis_url: str, app_id: str) -> Iterator[tuple[WindowKey, dict[str, Any]]]:
    """Every final window stored for ``app_id`` (open ones are skipped), streamed."""
    client = Redis.from_url(redis_url)
    try:
        for chunk in scan_chunks(client, window_pattern(app_id)):
            pipe = client.pipeline(transaction=False)
            for key in chunk:
                pipe.hmget(key, "final", "data")
            for final, data in pipe.execute():
                if final == b"1" and data:
                    win = orjson.loads(data)
                    yield (win["window"], win["region_id"], win["window_start_ms"]), win
    finally:
        client.close()
