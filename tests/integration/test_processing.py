"""The processing contract on the real broker, RocksDB and Redis, against plain-Python references.

Every test replays real input with the real replayer into a real worker and compares the final
windows in Redis with :func:`reference_windows` computed over the events topic as stored.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from support.procs import Proc, RedisServer, StackInfo, free_port, wait_for
from tests.integration.pipeline import (
    TLC_SAMPLE,
    assert_exact,
    assert_matches_reference,
    generate_canonical,
    metric_values,
    read_topic,
    redis_final_windows,
    reference_windows,
    replay,
    start_replay,
    start_worker,
    wait_final_windows,
    wait_worker_ready,
)


async def _inject(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=b"7")
    finally:
        await producer.stop()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[Proc]]:
    procs: list[Proc] = []
    yield procs
    for proc in procs:
        proc.stop()


def test_final_windows_equal_an_independent_computation(
    stack: StackInfo, app_id: str, sp_env: dict[str, str], tmp_path: Path, workers: list[Proc]
) -> None:
    """TLC sample (shuffled: heavy lateness) + a generated file with out-of-order, late and bad rows."""
    import asyncio

    workers.append(start_worker(sp_env, tmp_path, "w1", free_port()))
    wait_worker_ready(workers[0])
    generated = tmp_path / "generated.jsonl"
    generate_canonical(generated, 3000, seed=7, bad_rows=5)
    tlc = replay(sp_env, str(TLC_SAMPLE), "--rejects", str(tmp_path / "rejects-tlc.jsonl"))
    gen = replay(sp_env, str(generated), "--rejects", str(tmp_path / "rejects-gen.jsonl"))
    assert gen["rejected"] == 5
    garbage = [b"\xff\xfe not utf-8", b'{"trip_id": "z", "region_id": 3}', b"[1, 2]"]
    asyncio.run(_inject(stack.bootstrap, f"{app_id}.events", garbage))

    records = read_topic(stack.bootstrap, f"{app_id}.events")
    ref = reference_windows(records)
    assert ref.invalid == len(garbage)
    assert tlc["sent"] + gen["sent"] == sum(1 for r in records if not r.headers) - len(garbage)
    got = wait_final_windows(stack.redis_url, app_id, len(ref.windows))
    assert_matches_reference(got, ref)

    def late_records() -> set[tuple[str, str]] | None:
        recs = read_topic(stack.bootstrap, f"{app_id}.events-late")
        seen = {
            (json.loads(r.value or b"")["event"]["trip_id"], json.loads(r.value or b"")["window"])
            for r in recs
        }
        return seen if len(seen) >= len(ref.late) else None

    assert ref.late, "the input must contain late events for this test to mean anything"
    assert wait_for(late_records, 60, interval=1, what="late events") == ref.late

    def dlq() -> list[dict[str, bytes]] | None:
        recs = read_topic(stack.bootstrap, f"{app_id}.events-dlq")
        return (
            [dict(r.headers) | {"value": r.value or b""} for r in recs] if len(recs) >= len(garbage) else None
        )

    dead = wait_for(dlq, 60, interval=1, what="dead-letter records")
    assert dead is not None
    assert sorted(d["value"] for d in dead) == sorted(garbage)
    assert all(d["streampulse-error-reason"] for d in dead)
    assert workers[0].alive()


def test_sigkill_at_several_points_gives_the_same_windows(
    stack: StackInfo, app_id: str, sp_env: dict[str, str], tmp_path: Path, workers: list[Proc]
) -> None:
    generated = tmp_path / "generated.jsonl"
    generate_canonical(generated, 12_000, seed=11, regions=30)
    port = free_port()
    workers.append(start_worker(sp_env, tmp_path, "w1", port))
    wait_worker_ready(workers[-1])
    feeder = start_replay(sp_env, tmp_path, str(generated), "--rate", "3000")
    try:
        for _ in range(3):
            wait_for(
                lambda: sum(metric_values(port, "streampulse_events_processed_total")) > 500,
                90,
                what="the worker to process events",
            )
            workers[-1].kill(signal.SIGKILL)
            workers[-1].popen.wait(10)
            workers.append(start_worker(sp_env, tmp_path, "w1", port))
            wait_worker_ready(workers[-1])
        wait_for(lambda: not feeder.alive(), 120, what="the replay to finish")
        assert feeder.popen.returncode == 0, feeder.output()
    finally:
        feeder.stop()
    assert_exact(stack, app_id, f"{app_id}.events", timeout=300)


def test_two_workers_share_partitions_and_survive_losing_one(
    stack: StackInfo, app_id: str, sp_env: dict[str, str], tmp_path: Path, workers: list[Proc]
) -> None:
    generated = tmp_path / "generated.jsonl"
    generate_canonical(generated, 10_000, seed=23, regions=40)
    ports = [free_port(), free_port()]
    workers.append(start_worker(sp_env, tmp_path, "a", ports[0]))
    workers.append(start_worker(sp_env, tmp_path, "b", ports[1]))
    for w in workers:
        wait_worker_ready(w)
    feeder = start_replay(sp_env, tmp_path, str(generated), "--rate", "1500")
    try:
        wait_for(
            lambda: all(sum(metric_values(p, "streampulse_events_processed_total")) > 200 for p in ports),
            120,
            what="both workers to process events",
        )
        workers[1].kill(signal.SIGKILL)
        wait_for(lambda: not feeder.alive(), 120, what="the replay to finish")
    finally:
        feeder.stop()
    assert_exact(stack, app_id, f"{app_id}.events", timeout=180)


def test_redis_outage_loses_nothing(
    stack: StackInfo, app_id: str, sp_env: dict[str, str], tmp_path: Path, workers: list[Proc]
) -> None:
    redis = RedisServer(tmp_path / "redis", persistent=True)
    env = dict(sp_env, STREAMPULSE_REDIS_URL=redis.url)
    try:
        redis.start()
        generated = tmp_path / "generated.jsonl"
        generate_canonical(generated, 12_000, seed=31, regions=20)
        port = free_port()
        workers.append(start_worker(env, tmp_path, "w1", port))
        wait_worker_ready(workers[-1])
        feeder = start_replay(env, tmp_path, str(generated), "--rate", "2000")
        wait_for(
            lambda: sum(metric_values(port, "streampulse_events_processed_total")) > 1000,
            60,
            what="processing",
        )
        redis.stop()
        outage_end = time.monotonic() + 20
        wait_for(
            lambda: sum(metric_values(port, "streampulse_sink_errors_total")) > 0, 30, what="sink errors"
        )
        wait_for(lambda: time.monotonic() > outage_end, 25, interval=0.5, what="the 20 s outage")
        redis.start()
        wait_for(lambda: not feeder.alive(), 120, what="the replay to finish")
        feeder.stop()
        assert_exact(StackInfo(stack.bootstrap, redis.url), app_id, f"{app_id}.events", timeout=180)
        assert workers[-1].alive()
    finally:
        redis.stop()


def test_state_stays_bounded_and_final_windows_are_tombstoned(
    stack: StackInfo, app_id: str, sp_env: dict[str, str], tmp_path: Path, workers: list[Proc]
) -> None:
    """A long in-order replay: open windows stay few, and at the end the table holds no window."""
    generated = tmp_path / "long.jsonl"
    regions = 20
    generate_canonical(generated, 40_000, seed=41, regions=regions)  # ~12 hours of event time
    port = free_port()
    workers.append(start_worker(sp_env, tmp_path, "w1", port))
    wait_worker_ready(workers[-1])
    feeder = start_replay(sp_env, tmp_path, str(generated), "--rate", "8000")
    peak = 0.0
    try:

        def finished() -> bool:
            nonlocal peak
            peak = max(peak, sum(metric_values(port, "streampulse_open_windows")))
            return not feeder.alive()

        wait_for(finished, 120, interval=0.25, what="the replay to finish")
    finally:
        feeder.stop()
    ref = reference_windows(read_topic(stack.bootstrap, f"{app_id}.events"))
    wait_final_windows(stack.redis_url, app_id, len(ref.windows), timeout=120)
    # Per region, at most the current and the previous window of each size are open (lateness
    # 30 s) — plus windows re-opened by late events' larger sizes; far below the total windows.
    assert 0 < peak <= regions * 4 * 3
    assert len(ref.windows) > 10 * peak
    wait_for(lambda: sum(metric_values(port, "streampulse_open_windows")) == 0, 30, what="no open windows")

    changelog = read_topic(stack.bootstrap, f"{app_id}-window-state-changelog")
    live: dict[str, bytes | None] = {}
    for rec in changelog:
        live[json.loads(rec.key or b'""')] = rec.value
    remaining = {k for k, v in live.items() if v is not None}
    assert remaining and all(k.startswith("p|") for k in remaining), sorted(remaining)[:5]
    assert redis_final_windows(stack.redis_url, app_id)
