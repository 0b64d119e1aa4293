"""The Redis key layout: every script call and every per-size read touches one Redis Cluster
hash slot, keys stay under the ``sp:<app>:`` prefix the ACLs grant, and sizes spread over slots."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import orjson
import pytest
from redis.cluster import key_slot

from app.redis_keys import RedisKeys, ScriptCall, final_writes, live_writes

RETENTION_S = {"1m": 3_600, "5m": 7_200, "15m": 10_800, "1h": 86_400}


def window(size: str, region: int, start: int) -> dict[str, object]:
    return {"window": size, "region_id": region, "window_start_ms": start, "trip_count": 1}


BATCH = [
    window(size, region, 1_740_000_000_000 + i * 60_000)
    for i, (size, region) in enumerate((size, region) for size in RETENTION_S for region in (1, 7, 161, 265))
]


def slots(call: ScriptCall) -> set[int]:
    return {key_slot(k.encode()) for k in call.keys}


@pytest.mark.parametrize("build", [final_writes, live_writes])
def test_each_call_is_one_size_in_one_slot(build: Callable[..., Iterator[ScriptCall]]) -> None:
    keys = RedisKeys("demo")
    calls = list(build(keys, BATCH, RETENTION_S, chunk=3))
    assert {c.size for c in calls} == set(RETENTION_S)
    for call in calls:
        assert len(slots(call)) == 1, call.keys
        assert all(k.startswith("sp:demo:") for k in call.keys)
    written = [w for c in calls for w in orjson.loads(c.args[2])]
    assert len(written) == len(BATCH)
    assert max(len(orjson.loads(c.args[2])) for c in calls) == 3


def test_final_call_declares_indexes_then_a_hash_and_history_per_window() -> None:
    keys = RedisKeys("demo")
    wins = [window("5m", 7, 1_740_000_000_000), window("5m", 9, 1_740_000_300_000)]
    (call,) = final_writes(keys, wins, RETENTION_S, chunk=500)
    assert call.keys == [
        keys.latest("5m"),
        keys.updates("5m"),
        keys.window("5m", 7, 1_740_000_000_000),
        keys.history("5m", 7),
        keys.window("5m", 9, 1_740_000_300_000),
        keys.history("5m", 9),
    ]
    assert call.args[:2] == [7_200, 20_000]
    assert [e[:2] for e in orjson.loads(call.args[2])] == [["7", "1740000000000"], ["9", "1740000300000"]]
    assert call.regions == [7, 9]


def test_live_call_declares_the_stream_then_a_hash_and_open_pointer_per_window() -> None:
    keys = RedisKeys("demo")
    (call,) = live_writes(keys, [window("1h", 3, 1_740_000_000_000)], RETENTION_S, chunk=500)
    assert call.keys == [
        keys.updates("1h"),
        keys.window("1h", 3, 1_740_000_000_000),
        keys.open_window("1h", 3),
    ]


def test_what_the_api_reads_together_shares_a_slot() -> None:
    keys = RedisKeys("demo")
    for size in RETENTION_S:
        together = [keys.latest(size), keys.updates(size), keys.history(size, 1), keys.open_window(size, 2)]
        together += [keys.window(size, region, 0) for region in range(50)]
        assert len({key_slot(k.encode()) for k in together}) == 1, size


def test_sizes_and_app_ids_spread_over_slots() -> None:
    per_size = {key_slot(RedisKeys("demo").latest(size).encode()) for size in RETENTION_S}
    per_app = {key_slot(RedisKeys(f"app{i}").latest("1m").encode()) for i in range(8)}
    assert len(per_size) == len(RETENTION_S)
    assert len(per_app) == 8


def test_window_keys_keep_the_app_prefix_and_scan_pattern() -> None:
    keys = RedisKeys("demo")
    assert keys.window("1m", 161, 60_000) == "sp:demo:w:{demo:1m}:161:60000"
    assert keys.windows_pattern == "sp:demo:w:*"
    assert keys.last_final_ms == "sp:demo:last_final_ms"
    assert keys.regions == "sp:demo:regions"
