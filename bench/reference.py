"""The independent computation every contender is checked against, and the checks.

Plain Python written from the contract's text, sharing no code with the worker: it reads the
events topic as stored (partition by partition, in offset order), applies the per-partition
watermark and lateness rules and folds each (window size, region, start) with sums, min/max and
the exact list of durations. Contenders (b) and (c) compute count, revenue and min/max fare, so
they are compared on those; StreamPulse is compared on every field it publishes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import orjson

from bench.kafka import Record, read_topic

SIZES_MS = {"1m": 60_000, "5m": 300_000, "15m": 900_000, "1h": 3_600_000}
LATENESS_MS = 30_000
#: StreamPulse reports sums rounded to 6 decimals; peers sum floats in another order.
REL_TOL, ABS_TOL = 1e-9, 2e-6
#: The DDSketch's stated relative accuracy (1 %), with room for float noise.
QUANTILE_REL_TOL = 0.0101

WindowKey = tuple[str, int, int]  # (size name, region id, window start ms)
PeerRow = tuple[int, float, float, float]  # count, revenue, min fare, max fare
T = TypeVar("T")


@dataclass(slots=True)
class Fold:
    count: int = 0
    revenue: float = 0.0
    fare_min: float = math.inf
    fare_max: float = -math.inf
    duration_sum: float = 0.0
    distance_sum: float = 0.0
    first_ms: int = 2**62
    last_ms: int = -(2**62)
    durations: list[float] = field(default_factory=list)


@dataclass
class Reference:
    windows: dict[WindowKey, Fold] = field(default_factory=dict)
    events: int = 0
    late: int = 0
    invalid: int = 0
    controls: int = 0


def _control_time(rec: Record) -> int | None:
    if any(name.startswith("streampulse-control") for name, _ in rec.headers):
        return int(orjson.loads(rec.value or b"{}")["event_time_ms"])
    return None


def _event(value: bytes | None) -> tuple[int, int, float, float, float] | None:
    try:
        ev = orjson.loads(value or b"")
        t_ms = round(datetime.fromisoformat(ev["event_time"]).timestamp() * 1000)
        return int(ev["region_id"]), t_ms, float(ev["fare"]), float(ev["duration"]), float(ev["distance"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def fold_partition(ref: Reference, records: Iterable[Record]) -> None:
    """Fold one partition's records, in offset order, into ``ref``."""
    highest: int | None = None
    closed = dict.fromkeys(SIZES_MS, -(2**62))
    for rec in records:
        control_ms = _control_time(rec)
        if control_ms is not None:
            ref.controls += 1
            for name, size in SIZES_MS.items():
                closed[name] = max(closed[name], control_ms - control_ms % size + size)
            continue
        ev = _event(rec.value)
        if ev is None:
            ref.invalid += 1
            continue
        region, t_ms, fare, duration, distance = ev
        ref.events += 1
        for name, size in SIZES_MS.items():
            start = t_ms - t_ms % size
            if start + size <= closed[name]:
                ref.late += 1
                continue
            fold = ref.windows.get((name, region, start))
            if fold is None:
                fold = ref.windows[(name, region, start)] = Fold()
            fold.count += 1
            fold.revenue += fare
            fold.fare_min = min(fold.fare_min, fare)
            fold.fare_max = max(fold.fare_max, fare)
            fold.duration_sum += duration
            fold.distance_sum += distance
            fold.first_ms = min(fold.first_ms, t_ms)
            fold.last_ms = max(fold.last_ms, t_ms)
            fold.durations.append(duration)
        if highest is None or t_ms > highest:
            highest = t_ms
            for name in SIZES_MS:
                closed[name] = max(closed[name], highest - LATENESS_MS)


async def reference_from_topic(bootstrap: str, topic: str, partitions: int) -> Reference:
    ref = Reference()
    partition: list[Record] = []
    async for chunk in read_topic(bootstrap, topic, partitions):
        for rec in chunk:
            if partition and rec.partition != partition[0].partition:
                fold_partition(ref, partition)
                partition = []
            partition.append(rec)
    fold_partition(ref, partition)
    return ref


@dataclass
class Check:
    """Outcome of comparing a contender's windows with the reference."""

    expected: int
    got: int = 0
    missing: int = 0
    unexpected: int = 0
    wrong: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def correct(self) -> bool:
        return self.got == self.expected and not (self.missing or self.unexpected or self.wrong)

    def example(self, text: str) -> None:
        if len(self.examples) < 5:
            self.examples.append(text)


def _close(a: Any, b: float) -> bool:
    return isinstance(a, int | float) and math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)


def _exact_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


def _ms(text: Any) -> int | None:
    return round(datetime.fromisoformat(text).timestamp() * 1000) if isinstance(text, str) else None


def _check(ref: Reference, got: Iterable[tuple[WindowKey, T]], compare: Callable[[Fold, T], str]) -> Check:
    """Compare windows as they stream in (the backfill has millions: only their keys are kept)."""
    check = Check(expected=len(ref.windows))
    seen: set[WindowKey] = set()
    for key, value in got:
        check.got += 1
        fold = ref.windows.get(key)
        if fold is None or key in seen:
            check.unexpected += 1
            check.example(f"unexpected {key}")
            continue
        seen.add(key)
        problem = compare(fold, value)
        if problem:
            check.wrong += 1
            check.example(f"{key}: {problem}")
    missing = ref.windows.keys() - seen
    check.missing = len(missing)
    for key in sorted(missing)[:3]:
        check.example(f"missing {key}")
    return check


def _compare_streampulse(fold: Fold, win: Mapping[str, Any]) -> str:
    n = fold.count
    expected = {
        "trip_count": n,
        "revenue": fold.revenue,
        "avg_fare": fold.revenue / n,
        "min_fare": fold.fare_min,
        "max_fare": fold.fare_max,
        "avg_duration": fold.duration_sum / n,
        "total_distance": fold.distance_sum,
        "avg_distance": fold.distance_sum / n,
    }
    bad = [name for name, value in expected.items() if not _close(win.get(name), value)]
    for name, q in (("p50_duration", 0.5), ("p95_duration", 0.95)):
        exact = _exact_rank(fold.durations, q)
        value = win.get(name)
        if not isinstance(value, int | float) or not math.isclose(value, exact, rel_tol=QUANTILE_REL_TOL):
            bad.append(name)
    if _ms(win.get("first_event_time")) != fold.first_ms or _ms(win.get("last_event_time")) != fold.last_ms:
        bad.append("first/last_event_time")
    if win.get("final") is not True:
        bad.append("final")
    return ", ".join(bad)


def _compare_peer(fold: Fold, row: PeerRow) -> str:
    count, revenue, fare_min, fare_max = row
    if count != fold.count or not _close(revenue, fold.revenue):
        return f"count {count} (expected {fold.count}), revenue {revenue} ({fold.revenue})"
    if fare_min != fold.fare_min or fare_max != fold.fare_max:
        return f"min/max fare {fare_min}/{fare_max} ({fold.fare_min}/{fold.fare_max})"
    return ""


def check_streampulse(ref: Reference, got: Iterable[tuple[WindowKey, Mapping[str, Any]]]) -> Check:
    """Every field of every final window, as the integration tests check it."""
    return _check(ref, got, _compare_streampulse)


def check_peer(ref: Reference, got: Iterable[tuple[WindowKey, PeerRow]]) -> Check:
    """``(count, revenue, min fare, max fare)`` per window: what the peers' pipelines compute."""
    return _check(ref, got, _compare_peer)
