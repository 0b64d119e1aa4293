"""The sink's Redis writes (``agents.redis_writer``) on a real redis-server.

What the scripts must leave is computed here independently, in plain Python, from the windows
written: one hash per window, the history index of each region and size trimmed to its
retention, the ``latest`` index, the regions set and the open-window pointers. Batches are
bigger than one script call (``CHUNK``) so the chunking is exercised too.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any, cast

import orjson
import pytest
from redis.asyncio import Redis

from agents.redis_writer import CHUNK, write_final, write_live
from app.redis_keys import RedisKeys
from support.procs import StackInfo

SIZES_MS = {"1m": 60_000, "5m": 300_000, "1h": 3_600_000}
RETENTION_S = {"1m": 3_600, "5m": 7_200, "1h": 86_400}
BASE_MS = 1_740_000_000_000  # a minute boundary, in 2025


def windows(n: int, seed: int, *, regions: int = 7) -> list[dict[str, Any]]:
    """``n`` distinct windows in start order (as the aggregate publishes them), over a span of
    event time longer than the 1m and 5m retention, so trimming has something to remove."""
    rng = random.Random(seed)
    keys: set[tuple[str, int, int]] = set()
    while len(keys) < n:
        size = rng.choice(list(SIZES_MS))
        start = BASE_MS + rng.randrange(0, 3 * 86_400_000 // SIZES_MS[size]) * SIZES_MS[size]
        keys.add((size, rng.randint(1, regions), start))
    return [
        {"region_id": region, "window": size, "window_start_ms": start, "n": rng.randint(1, 9), "note": 'Ü"'}
        for size, region, start in sorted(keys, key=lambda k: k[2])
    ]


@pytest.fixture
async def redis(stack: StackInfo, app_id: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(stack.redis_url)
    yield client
    found = [key async for key in client.scan_iter(match=f"{RedisKeys(app_id).prefix}*", count=1000)]
    if found:
        await client.delete(*found)
    await client.aclose()


async def test_final_windows_indexes_and_retention(redis: Redis, app_id: str) -> None:
    keys = RedisKeys(app_id)
    batch = windows(3 * CHUNK + 17, seed=1)

    assert await write_final(redis, keys, batch, RETENTION_S) == len(batch)

    for win in batch:
        size, region, start = win["window"], win["region_id"], win["window_start_ms"]
        stored = await redis.hgetall(keys.window(size, region, start))
        assert stored == {b"final": b"1", b"data": orjson.dumps(win)}
        assert 0 < await redis.ttl(keys.window(size, region, start)) <= RETENTION_S[size]
    series: dict[tuple[str, int], list[int]] = {}
    for win in batch:
        series.setdefault((win["window"], win["region_id"]), []).append(win["window_start_ms"])
    for (size, region), starts in series.items():
        newest = max(starts)
        kept = sorted(s for s in starts if s >= newest - RETENTION_S[size] * 1000)
        history = await redis.zrange(keys.history(size, region), 0, -1, withscores=True)
        assert history == [(str(s).encode(), float(s)) for s in kept], (size, region)
        assert 0 < await redis.ttl(keys.history(size, region)) <= RETENTION_S[size]
    for size in SIZES_MS:
        newest_by_region = {r: max(s) for (sz, r), s in series.items() if sz == size}
        found = await redis.zrange(keys.latest(size), 0, -1, withscores=True)
        latest = cast(list[tuple[bytes, float]], found)
        assert {int(m): int(score) for m, score in latest} == newest_by_region
    assert {int(r) for r in await redis.smembers(keys.regions)} == {r for _, r in series}
    assert await redis.get(keys.last_final_ms) is not None


async def test_rewriting_a_batch_changes_nothing(redis: Redis, app_id: str) -> None:
    keys = RedisKeys(app_id)
    batch = windows(CHUNK + 3, seed=2)
    await write_final(redis, keys, batch, RETENTION_S)
    before = await snapshot(redis, keys)

    await write_final(redis, keys, batch, RETENTION_S)

    assert await snapshot(redis, keys) == before


async def test_an_older_final_window_does_not_move_latest_back(redis: Redis, app_id: str) -> None:
    keys = RedisKeys(app_id)
    newer, older = windows(2, seed=3, regions=1)[::-1]
    older["window"] = newer["window"] = "1h"

    await write_final(redis, keys, [newer], RETENTION_S)
    await write_final(redis, keys, [older], RETENTION_S)

    assert await redis.zscore(keys.latest("1h"), "1") == newer["window_start_ms"]


async def test_live_windows_never_overwrite_final_ones(redis: Redis, app_id: str) -> None:
    keys = RedisKeys(app_id)
    batch = windows(2 * CHUNK + 5, seed=4)
    finals = batch[::2]
    await write_final(redis, keys, finals, RETENTION_S)
    live = [{**win, "n": -1} for win in batch]

    assert await write_live(redis, keys, live, RETENTION_S) == len(batch) - len(finals)

    for i, win in enumerate(batch):
        stored = await redis.hgetall(keys.window(win["window"], win["region_id"], win["window_start_ms"]))
        expected = (b"1", orjson.dumps(win)) if i % 2 == 0 else (b"0", orjson.dumps(live[i]))
        assert (stored[b"final"], stored[b"data"]) == expected
    newest_open: dict[tuple[str, int], int] = {}
    for win in batch[1::2]:
        key = (win["window"], win["region_id"])
        newest_open[key] = max(newest_open.get(key, 0), win["window_start_ms"])
    for (size, region), start in newest_open.items():
        assert await redis.get(keys.open_window(size, region)) == str(start).encode()


async def test_the_open_pointer_only_moves_forward(redis: Redis, app_id: str) -> None:
    keys = RedisKeys(app_id)
    first, second = windows(2, seed=5, regions=1)
    first["window"] = second["window"] = "1h"

    await write_live(redis, keys, [second], RETENTION_S)
    await write_live(redis, keys, [first], RETENTION_S)

    assert await redis.get(keys.open_window("1h", 1)) == str(second["window_start_ms"]).encode()


async def snapshot(redis: Redis, keys: RedisKeys) -> dict[bytes, Any]:
    out: dict[bytes, Any] = {}
    async for key in redis.scan_iter(match=f"{keys.prefix}*", count=1000):
        if key == keys.last_final_ms.encode():
            continue
        kind = await redis.type(key)
        if kind == b"hash":
            out[key] = await redis.hgetall(key)
        elif kind == b"zset":
            out[key] = await redis.zrange(key, 0, -1, withscores=True)
        elif kind == b"set":
            out[key] = sorted(await redis.smembers(key))
        elif kind == b"stream":
            out[key] = await redis.xrange(key)
        else:
            out[key] = await redis.get(key)
    return out


async def _updates(redis: Redis, keys: RedisKeys, size: str) -> list[dict[str, Any]]:
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(keys.updates(size))  # type: ignore[assignment]
    return [orjson.loads(fields[b"w"]) for _, fields in entries]


async def test_the_updates_stream_gets_each_change_once_and_nothing_for_a_rewrite(
    redis: Redis, app_id: str
) -> None:
    keys = RedisKeys(app_id)
    batch = windows(CHUNK + 40, seed=5)
    live = [dict(win, final=False, n=win["n"] - 1) for win in batch[:30]]
    await write_live(redis, keys, live, RETENTION_S)
    await write_live(redis, keys, live, RETENTION_S)  # unchanged: no second update
    await write_final(redis, keys, batch, RETENTION_S)
    await write_final(redis, keys, batch, RETENTION_S)  # a re-emission: no second update
    await write_live(redis, keys, live, RETENTION_S)  # late live write of final windows: ignored
    for size in SIZES_MS:
        expected = [w for w in live if w["window"] == size] + [w for w in batch if w["window"] == size]
        assert await _updates(redis, keys, size) == expected, size
        if expected:
            assert 0 < await redis.ttl(keys.updates(size)) <= max(RETENTION_S.values())
