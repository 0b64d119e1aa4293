"""The one reference computation every check of the pipeline's output is made against.

Plain Python written from the contract's text (docs/processing.md, app/control.py), sharing no
code with the worker's window, watermark or aggregate code: it takes the events topic as stored,
partition by partition in offset order, and folds each (window size, region, start) with plain
sums, min/max and the exact list of durations. From the product it takes only the contract's
constants (window sizes, lateness, bounds, the control header) and the one time parser, so a
constant changed in one place cannot leave the reference checking an older contract.

Control records follow the strict rules: only the exact header name, a known kind, the same kind
in the value and a time bounded like an event time close windows; anything else carrying the
header is invalid (dead-lettered), and a header that merely starts with that name makes no
control record at all, so its record is judged as an event.
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from app.control import CONTROL_HEADER, KINDS
from app.redis_keys import RedisKeys
from app.settings import Settings
from support.kafka import Record
from tables.times import parse_time_ms

#: The contract's defaults, as the settings declare them (not as this process's environment
#: overrides them): a run with other settings passes its lateness explicitly.
CONTRACT = Settings.model_construct()
SIZES_MS = {size.name: size.size_ms for size in CONTRACT.window_sizes}
LATENESS_MS = CONTRACT.lateness_ms
MAX_FUTURE_MS = CONTRACT.max_future_ms
MAX_REGION_ID = CONTRACT.max_region_id
CONTROL_KINDS = KINDS
#: StreamPulse reports sums rounded to 6 decimals; other pipelines sum floats in another order.
REL_TOL, ABS_TOL = 1e-9, 2e-6
#: The DDSketch's stated relative accuracy (1 %), with room for float noise.
QUANTILE_REL_TOL = 0.0101
_NEVER = -(2**62)

WindowKey = tuple[str, int, int]  # (size name, region id, window start ms)


def window_pattern(app_id: str) -> str:
    """The Redis key pattern of every stored window of ``app_id``."""
    return RedisKeys(app_id).window("*", 0, 0).split("*", 1)[0] + "*"


@dataclass(frozen=True, slots=True)
class Event:
    trip_id: str
    region: int
    t_ms: int
    fare: float
    duration: float
    distance: float


@dataclass(slots=True)
class Fold:
    """One window's aggregate, kept plainly (the exact durations, not a sketch)."""

    count: int = 0
    revenue: float = 0.0
    fare_min: float = math.inf
    fare_max: float = -math.inf
    duration_sum: float = 0.0
    distance_sum: float = 0.0
    first_ms: int = 2**62
    last_ms: int = _NEVER
    durations: list[float] = field(default_factory=list)

    def add(self, ev: Event) -> None:
        self.count += 1
        self.revenue += ev.fare
        self.fare_min = min(self.fare_min, ev.fare)
        self.fare_max = max(self.fare_max, ev.fare)
        self.duration_sum += ev.duration
        self.distance_sum += ev.distance
        self.first_ms = min(self.first_ms, ev.t_ms)
        self.last_ms = max(self.last_ms, ev.t_ms)
        self.durations.append(ev.duration)


def _now_ms(now_ms: int | None) -> int:
    return round(time.time() * 1000) if now_ms is None else now_ms


def _time_in_bounds(t_ms: int, now_ms: int | None) -> bool:
    """Not before 1970, not more than MAX_FUTURE ahead of the wall clock (reason ``future``)."""
    return 0 <= t_ms <= _now_ms(now_ms) + MAX_FUTURE_MS


def _event_time_ms(when: Any) -> int | None:
    """An ISO-8601 string or epoch seconds, through the product's one time rule."""
    if not isinstance(when, str | int | float):
        return None
    try:
        return parse_time_ms(when)
    except ValueError:
        return None


def valid_event(value: bytes | None, now_ms: int | None = None) -> Event | None:
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
    t_ms = _event_time_ms(when)
    if t_ms is None or not _time_in_bounds(t_ms, now_ms):
        return None
    return Event(trip_id, region, t_ms, float(fare), float(duration), float(distance))


def control_of(rec: Record, now_ms: int | None = None) -> tuple[bool, int | None]:
    """(is a control record, its time or None when it is an invalid one), per the contract.

    A control record carries the header named exactly ``streampulse-control`` whose value is a
    known kind, and a JSON value ``{"control": kind, "event_time_ms": T}`` with T bounded like
    event times. A record with that header that breaks any of this is invalid (dead-lettered).
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

    lateness_ms: int = LATENESS_MS
    now_ms: int | None = None
    windows: dict[WindowKey, Fold] = field(default_factory=dict)
    late: set[tuple[str, str]] = field(default_factory=set)  # (trip_id, window size)
    events: int = 0
    invalid: int = 0
    controls: int = 0

    def fold_partition(self, records: Iterable[Record]) -> None:
        """Fold one partition's records, in offset order: each record is judged against the
        frontier the records before it left, then moves it."""
        highest: int | None = None
        closed = dict.fromkeys(SIZES_MS, _NEVER)
        for rec in records:
            is_control, t = control_of(rec, self.now_ms)
            if is_control:
                if t is None:
                    self.invalid += 1
                    continue
                self.controls += 1
                for name, size in SIZES_MS.items():
                    closed[name] = max(closed[name], t - t % size + size)
                continue
            ev = valid_event(rec.value, self.now_ms)
            if ev is None:
                self.invalid += 1
                continue
            self.events += 1
            for name, size in SIZES_MS.items():
                start = ev.t_ms - ev.t_ms % size
                if start + size <= closed[name]:
                    self.late.add((ev.trip_id, name))
                    continue
                fold = self.windows.get((name, ev.region, start))
                if fold is None:
                    fold = self.windows[(name, ev.region, start)] = Fold()
                fold.add(ev)
            if highest is None or ev.t_ms > highest:
                highest = ev.t_ms
                for name in SIZES_MS:
                    closed[name] = max(closed[name], highest - self.lateness_ms)


def reference_windows(
    records: Iterable[Record], lateness_ms: int = LATENESS_MS, now_ms: int | None = None
) -> Reference:
    """The reference over records of any partitions (each partition's in offset order)."""
    ref = Reference(lateness_ms, now_ms)
    by_part: dict[int, list[Record]] = defaultdict(list)
    for rec in records:
        by_part[rec.partition].append(rec)
    for partition in sorted(by_part):
        ref.fold_partition(by_part[partition])
    return ref


def exact_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


def _close(a: Any, b: float) -> bool:
    return (
        isinstance(a, int | float)
        and not isinstance(a, bool)
        and math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)
    )


def _ms(text: Any) -> int | None:
    if not isinstance(text, str):
        return None
    try:
        return parse_time_ms(text)
    except ValueError:
        return None


def window_problems(key: WindowKey, fold: Fold, win: Mapping[str, Any]) -> list[str]:
    """The published fields of a final window that disagree with the reference (none: exact)."""
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
    if win.get("trip_count") != n:
        bad.append("trip_count")
    for name, q in (("p50_duration", 0.5), ("p95_duration", 0.95)):
        value = win.get(name)
        if not isinstance(value, int | float) or not math.isclose(
            value, exact_rank(fold.durations, q), rel_tol=QUANTILE_REL_TOL, abs_tol=1e-9
        ):
            bad.append(name)
    if _ms(win.get("first_event_time")) != fold.first_ms or _ms(win.get("last_event_time")) != fold.last_ms:
        bad.append("first/last_event_time")
    size, _, start = key
    if win.get("window_start_ms") != start or win.get("window_end_ms") != start + SIZES_MS[size]:
        bad.append("window_start_ms/window_end_ms")
    if win.get("final") is not True:
        bad.append("final")
    return sorted(set(bad))
