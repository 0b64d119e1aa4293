"""Driving the real pipeline from tests, and the independent reference computation.

The reference (:func:`reference_windows`) is plain Python written from the contract's text: it
reads the events topic as the worker saw it (partition by partition, in offset order) and folds
every window with lists and ``statistics``-style arithmetic. It shares no code with the worker.
"""

from __future__ import annotations

import asyncio
import csv
import json
import math
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from redis import Redis

from app.kafka_client import client_kwargs
from app.settings import Settings
from tests.integration.stack import ROOT, Proc, wait_for

SIZES_MS = {"1m": 60_000, "5m": 300_000, "15m": 900_000, "1h": 3_600_000}
LATENESS_MS = 30_000
#: The contract's bounds: event (and control) times at most this far ahead of the wall clock.
MAX_FUTURE_MS = 3_600_000
MAX_REGION_ID = 1_000_000
CONTROL_HEADER = "streampulse-control"
CONTROL_KINDS = ("end-of-stream", "idle")


@dataclass
class Record:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    timestamp_ms: int


def start_worker(env: Mapping[str, str], tmp: Path, name: str, web_port: int) -> Proc:
    """A real ``faust -A app worker`` with its own data dir and web port."""
    worker_env = dict(env)
    worker_env["STREAMPULSE_WEB_PORT"] = str(web_port)
    worker_env["STREAMPULSE_DATA_DIR"] = str(tmp / f"data-{name}")
    bin_dir = Path(sys.executable).parent
    return Proc(
        [str(bin_dir / "faust"), "-A", "app", "worker", "-l", "info"], worker_env, tmp / f"{name}.log"
    )


def wait_worker_ready(proc: Proc, timeout: float = 90) -> None:
    def ready() -> bool:
        if not proc.alive():
            raise AssertionError(f"worker exited:\n{proc.output()[-3000:]}")
        return "[^Worker]: Ready" in proc.output()

    wait_for(ready, timeout, interval=0.3, what="worker ready")


def replay(env: Mapping[str, str], *args: str, timeout: float = 300) -> dict[str, Any]:
    """Run ``python -m producers.replay ... --json`` and return its summary."""
    result = subprocess.run(
        [sys.executable, "-m", "producers.replay", *args, "--json"],
        env=dict(env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"replay failed ({result.returncode}): {result.stderr[-3000:]}"
    summary: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return summary


TLC_SAMPLE = ROOT / "data" / "tlc" / "tlc_trips_2019-03_sample.csv"


def sorted_tlc_sample(dest: Path) -> Path:
    """The bundled sample ordered by drop-off time (its event time), as ``make demo`` replays it:
    the file is a random draw across the month, and replayed as is most trips would be late."""
    with TLC_SAMPLE.open(newline="") as fh:
        reader = csv.DictReader(fh)
        rows = sorted(reader, key=lambda r: r["tpep_dropoff_datetime"])
        fields = reader.fieldnames or []
    with dest.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return dest


def start_replay(env: Mapping[str, str], tmp: Path, *args: str) -> Proc:
    return Proc([sys.executable, "-m", "producers.replay", *args, "--json"], env, tmp / "replay.log")


def read_topic(
    bootstrap: str, topic: str, timeout: float = 30, settings: Settings | None = None
) -> list[Record]:
    """Every record currently in ``topic``, partition by partition, in offset order; ``settings``
    carry the security options of a SASL/TLS broker (default: the environment's)."""
    kafka = client_kwargs(settings or Settings(kafka_bootstrap=bootstrap))

    async def _read() -> list[Record]:
        consumer = AIOKafkaConsumer(**kafka, enable_auto_commit=False)
        await consumer.start()
        try:
            parts = consumer.partitions_for_topic(topic) or set()
            for _ in range(50):
                if parts:
                    break
                await consumer._client.force_metadata_update()
                parts = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps)
            out: list[Record] = []
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout

            async def behind() -> bool:
                return any([await consumer.position(tp) < end[tp] for tp in tps])

            while await behind():
                if loop.time() > deadline:
                    raise AssertionError(f"could not read {topic} to its end")
                batch = await consumer.getmany(timeout_ms=500)
                for tp, msgs in batch.items():
                    for m in msgs:
                        out.append(
                            Record(tp.partition, m.offset, m.key, m.value, list(m.headers or ()), m.timestamp)
                        )
            out.sort(key=lambda r: (r.partition, r.offset))
            return out
        finally:
            await consumer.stop()

    return asyncio.run(_read())


def _valid(value: bytes | None, now_ms: int | None = None) -> dict[str, Any] | None:
    """The contract's validity rules, restated independently of app.events.

    ``now_ms`` is the wall clock the ``future`` bound is measured from (default: now); tests keep
    their event times far from that bound, so the instant the worker judged a record does not matter.
    """
    try:
        ev = json.loads(value or b"")
    except (ValueError, RecursionError):  # not UTF-8 / JSON, too deep, an int over Python's digit limit
        return None
    if not isinstance(ev, dict):
        return None
    try:
        trip_id, region = ev["trip_id"], ev["region_id"]
        fare, duration, distance = ev["fare"], ev["duration"], ev["distance"]
        when = ev["event_time"]
    except KeyError:
        return None
    if not isinstance(trip_id, str) or not 1 <= len(trip_id) <= 128:
        return None
    if isinstance(region, bool) or not isinstance(region, int) or not 0 <= region <= MAX_REGION_ID:
        return None
    for v, hi in ((fare, 10_000), (duration, 86_400), (distance, 1_000)):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or not 0 <= v <= hi:
            return None
    try:
        if isinstance(when, str):
            dt = datetime.fromisoformat(when)
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)
            t_ms = round(dt.timestamp() * 1000)
        elif isinstance(when, int | float) and not isinstance(when, bool) and math.isfinite(when):
            t_ms = round(float(when) * 1000)
        else:
            return None
    except (ValueError, OverflowError):
        return None
    if not _time_in_bounds(t_ms, now_ms):
        return None
    return {"trip_id": trip_id, "region": region, "t": t_ms, "fare": fare, "dur": duration, "dist": distance}


def _time_in_bounds(t_ms: int, now_ms: int | None) -> bool:
    """Not before 1970, not more than MAX_FUTURE ahead of the wall clock (reason ``future``)."""
    clock = round(time.time() * 1000) if now_ms is None else now_ms
    return 0 <= t_ms <= clock + MAX_FUTURE_MS


def control_of(rec: Record, now_ms: int | None = None) -> tuple[bool, int | None]:
    """(is a control record, its time or None when it is an invalid one), per the contract.

    A control record carries the header named exactly ``streampulse-control`` whose value is a
    known kind, and a JSON value ``{"control": kind, "event_time_ms": T}`` with T bounded like
    event times. A record with that header that breaks any of this is invalid (dead-lettered); a
    header that merely starts with that name makes no control record at all.
    """
    kind = next((v for k, v in rec.headers if k == CONTROL_HEADER), None)
    if kind is None:
        return False, None
    try:
        name = kind.decode()
        data = json.loads(rec.value or b"")
    except (ValueError, RecursionError):
        return True, None
    if name not in CONTROL_KINDS or not isinstance(data, dict) or data.get("control") != name:
        return True, None
    t = data.get("event_time_ms")
    if isinstance(t, bool) or not isinstance(t, int) or not _time_in_bounds(t, now_ms):
        return True, None
    return True, t


@dataclass
class Reference:
    """What the contract says the pipeline must produce for an input."""

    windows: dict[tuple[str, int, int], list[dict[str, Any]]] = field(default_factory=dict)
    late: set[tuple[str, str]] = field(default_factory=set)  # (trip_id, window size)
    invalid: int = 0


def reference_windows(
    records: list[Record], lateness_ms: int = LATENESS_MS, now_ms: int | None = None
) -> Reference:
    ref = Reference()
    open_: dict[tuple[str, int, int], list[dict[str, Any]]] = defaultdict(list)
    by_part: dict[int, list[Record]] = defaultdict(list)
    for rec in records:
        by_part[rec.partition].append(rec)
    for recs in by_part.values():
        highest: int | None = None
        closed = {name: -(2**62) for name in SIZES_MS}
        for rec in recs:
            is_control, t = control_of(rec, now_ms)
            if is_control:
                if t is None:
                    ref.invalid += 1
                    continue
                highest = t if highest is None else max(highest, t)
                for name, size in SIZES_MS.items():
                    closed[name] = max(closed[name], t - t % size + size)
                continue
            ev = _valid(rec.value, now_ms)
            if ev is None:
                ref.invalid += 1
                continue
            for name, size in SIZES_MS.items():
                start = ev["t"] - ev["t"] % size
                if start + size <= closed[name]:
                    ref.late.add((ev["trip_id"], name))
                else:
                    open_[(name, ev["region"], start)].append(ev)
            if highest is None or ev["t"] > highest:
                highest = ev["t"]
                for name in SIZES_MS:
                    closed[name] = max(closed[name], highest - lateness_ms)
        # After the end-of-stream marker every window of the partition is closed.
    ref.windows = dict(open_)
    return ref


def exact_rank_value(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


def assert_window_matches(
    key: tuple[str, int, int], got: Mapping[str, Any], evs: list[dict[str, Any]]
) -> None:
    fares = [e["fare"] for e in evs]
    durs = [e["dur"] for e in evs]
    dists = [e["dist"] for e in evs]
    n = len(evs)

    def approx(value: float) -> object:
        return pytest.approx(value, rel=1e-9, abs=2e-6)

    assert got["final"] is True, key
    assert got["trip_count"] == n, key
    assert got["revenue"] == approx(sum(fares)), key
    assert got["avg_fare"] == approx(sum(fares) / n), key
    assert got["min_fare"] == min(fares) and got["max_fare"] == max(fares), key
    assert got["avg_duration"] == approx(sum(durs) / n), key
    assert got["total_distance"] == approx(sum(dists)), key
    assert got["avg_distance"] == approx(sum(dists) / n), key
    for q, field_name in ((0.5, "p50_duration"), (0.95, "p95_duration")):
        exact = exact_rank_value(durs, q)
        assert got[field_name] == pytest.approx(exact, rel=0.0101, abs=1e-9), (key, field_name)
    first = min(e["t"] for e in evs)
    last = max(e["t"] for e in evs)
    assert _ms(got["first_event_time"]) == first and _ms(got["last_event_time"]) == last, key
    assert got["window_start_ms"] == key[2] and got["window_end_ms"] == key[2] + SIZES_MS[key[0]], key


def _ms(text: str) -> int:
    return round(datetime.fromisoformat(text).timestamp() * 1000)


def redis_final_windows(redis_url: str, app_id: str) -> dict[tuple[str, int, int], dict[str, Any]]:
    client = Redis.from_url(redis_url)
    try:
        out: dict[tuple[str, int, int], dict[str, Any]] = {}
        for key in client.scan_iter(match=f"sp:{app_id}:w:*", count=1000):
            fields = client.hgetall(key)
            if fields.get(b"final") != b"1":
                continue
            data = json.loads(fields[b"data"])
            out[(data["window"], data["region_id"], data["window_start_ms"])] = data
        return out
    finally:
        client.close()


def wait_final_windows(
    redis_url: str, app_id: str, expected: int, timeout: float = 120
) -> dict[tuple[str, int, int], dict[str, Any]]:
    """Poll Redis until the expected number of final windows is there (and stays there)."""

    seen = 0

    def enough() -> dict[tuple[str, int, int], dict[str, Any]] | None:
        nonlocal seen
        got = redis_final_windows(redis_url, app_id)
        seen = len(got)
        return got if len(got) >= expected else None

    try:
        got = wait_for(enough, timeout, interval=0.5, what=f"{expected} final windows in Redis")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; {seen} final windows were there") from None
    assert got is not None
    return got


def assert_matches_reference(got: Mapping[tuple[str, int, int], Mapping[str, Any]], ref: Reference) -> None:
    missing = set(ref.windows) - set(got)
    extra = set(got) - set(ref.windows)
    assert not missing and not extra, f"missing {sorted(missing)[:5]}, unexpected {sorted(extra)[:5]}"
    for key, evs in ref.windows.items():
        assert_window_matches(key, got[key], evs)


def metric_values(web_port: int, name: str) -> list[float]:
    """Sample values of one metric from a worker's /metrics (empty when it is down)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            out.append(float(line.rsplit(" ", 1)[1]))
    return out
