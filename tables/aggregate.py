"""The per-window trip aggregate: pure fold / merge / result, with a compact serializable state.

Shaped like Quix Streams' aggregators (initialize, add, merge, result): no I/O, so the same code
serves the worker and the unit tests. ``last_offset`` is the highest source offset already folded
in; the worker skips events at or below it, which makes replays after a crash idempotent.

Duration quantiles follow one rank rule, the value at rank ⌊q·(n−1)⌋ of the window's sorted
durations, and never leave the observed range:

- a window of at most ``EXACT_MAX_COUNT`` trips keeps its durations themselves (sorted) and
  answers exactly: most 1-minute windows of a region are that small, and there a sketch's 1 %
  is visible (a single 959 s trip read back as 963.12 s);
- a bigger window answers from the DDSketch (within ``RELATIVE_ACCURACY`` of the exact value),
  clamped to the window's minimum and maximum duration, which can only move an estimate closer
  to the exact value, since that value lies in the range.
"""

from __future__ import annotations

import math
from bisect import insort
from dataclasses import dataclass, field
from typing import Any

from tables.sketch import RELATIVE_ACCURACY, merge_bins, quantile, sketch_bins, sketch_key
from tables.times import format_time_ms

#: Decimal places kept in reported sums and averages: hides float summation-order noise while
#: keeping far more precision than fares (cents) or distances (hundredths of a mile) carry.
ROUND_DIGITS = 6
#: Windows with at most this many trips keep every duration and answer quantiles exactly. A sorted
#: list of 64 floats is no bigger than the sparse bin map of the same trips, so small windows
#: cost no more state than before; beyond it the state stays bounded by the sketch.
EXACT_MAX_COUNT = 64
#: First item of the current state format. The first format (a plain 11-item list starting with
#: the count) is still decoded: a worker restarted on state written before min/max durations and
#: exact small windows existed recovers, its open windows answering from the sketch alone.
STATE_TAG = "v2"
_V1_LENGTH = 11

__all__ = ["EXACT_MAX_COUNT", "RELATIVE_ACCURACY", "ROUND_DIGITS", "STATE_TAG", "TripAggregate"]

_INF = float("inf")


@dataclass(slots=True)
class TripAggregate:
    """Running aggregate of one (region, window size, window start).

    Durations live in exactly one of two places: ``durations`` (sorted, every trip's duration)
    while the window has at most ``EXACT_MAX_COUNT`` trips, else ``bins`` (the sketch, zero
    durations counted in ``zero_durations``) with ``durations`` set to ``None``. ``duration_min``
    and ``duration_max`` are ``inf``/``-inf`` for an empty window (the merge identity) and
    ``-inf``/``inf`` when unknown (restored from first-format state): clamping to that range is a
    no-op and ``min``/``max`` keep it unknown through folds and merges.
    """

    count: int = 0
    fare_sum: float = 0.0
    fare_min: float = _INF
    fare_max: float = -_INF
    duration_sum: float = 0.0
    distance_sum: float = 0.0
    first_ms: int | None = None
    last_ms: int | None = None
    zero_durations: int = 0
    bins: dict[int, int] = field(default_factory=dict)
    last_offset: int = -1
    duration_min: float = _INF
    duration_max: float = -_INF
    durations: list[float] | None = field(default_factory=list)

    def add(self, fare: float, duration: float, distance: float, t_ms: int, dkey: int | None) -> None:
        """Fold one event in; ``dkey`` is ``sketch_key(duration)``, computed once per event."""
        self.count += 1
        self.fare_sum += fare
        if fare < self.fare_min:
            self.fare_min = fare
        if fare > self.fare_max:
            self.fare_max = fare
        self.duration_sum += duration
        self.distance_sum += distance
        if self.first_ms is None or t_ms < self.first_ms:
            self.first_ms = t_ms
        if self.last_ms is None or t_ms > self.last_ms:
            self.last_ms = t_ms
        if duration < self.duration_min:
            self.duration_min = duration
        if duration > self.duration_max:
            self.duration_max = duration
        if dkey is None:
            self.zero_durations += 1
        exact = self.durations
        if exact is not None:
            if self.count <= EXACT_MAX_COUNT:
                insort(exact, float(duration))
                return
            self.bins = sketch_bins(exact)  # outgrew the exact list: from here on, the sketch
            self.durations = None
        if dkey is not None:
            self.bins[dkey] = self.bins.get(dkey, 0) + 1

    def add_event(self, fare: float, duration: float, distance: float, t_ms: int) -> None:
        self.add(fare, duration, distance, t_ms, sketch_key(duration))

    def sketch(self) -> dict[int, int]:
        """The sketch bins of every duration folded in, whichever form the window keeps them in."""
        return self.bins if self.durations is None else sketch_bins(self.durations)

    def merge(self, other: TripAggregate) -> TripAggregate:
        """Combine two partial aggregates of the same window (associative and commutative).

        The result keeps exact durations exactly when both parts do and the sum still fits, so it
        depends only on the multiset of durations, not on how the parts were grouped.
        """
        firsts = [t for t in (self.first_ms, other.first_ms) if t is not None]
        lasts = [t for t in (self.last_ms, other.last_ms) if t is not None]
        count = self.count + other.count
        durations: list[float] | None = None
        bins: dict[int, int] = {}
        if self.durations is not None and other.durations is not None and count <= EXACT_MAX_COUNT:
            durations = sorted(self.durations + other.durations)
        else:
            bins = merge_bins(self.sketch(), other.sketch())
        return TripAggregate(
            count=count,
            fare_sum=self.fare_sum + other.fare_sum,
            fare_min=min(self.fare_min, other.fare_min),
            fare_max=max(self.fare_max, other.fare_max),
            duration_sum=self.duration_sum + other.duration_sum,
            distance_sum=self.distance_sum + other.distance_sum,
            first_ms=min(firsts) if firsts else None,
            last_ms=max(lasts) if lasts else None,
            zero_durations=self.zero_durations + other.zero_durations,
            bins=bins,
            last_offset=max(self.last_offset, other.last_offset),
            duration_min=min(self.duration_min, other.duration_min),
            duration_max=max(self.duration_max, other.duration_max),
            durations=durations,
        )

    def to_state(self) -> list[Any]:
        """Compact JSON-able state for the changelogged table (a list encodes faster than a dict).

        Infinities are not JSON: an empty or unknown bound is written as ``null`` and told apart
        on decoding by the count (an empty window has none).
        """
        return [
            STATE_TAG,
            self.count,
            self.fare_sum,
            self.fare_min if self.count else None,
            self.fare_max if self.count else None,
            self.duration_sum,
            self.distance_sum,
            self.first_ms,
            self.last_ms,
            self.zero_durations,
            [[k, c] for k, c in self.bins.items()],
            self.last_offset,
            self.duration_min if math.isfinite(self.duration_min) else None,
            self.duration_max if math.isfinite(self.duration_max) else None,
            self.durations,
        ]

    @classmethod
    def from_state(cls, state: list[Any]) -> TripAggregate:
        """Decode either state format; anything else is a ``ValueError``.

        The first format (untagged) kept no duration bounds nor exact durations, so a window that
        had trips gets unknown bounds and only its sketch; an empty one starts like a new one."""
        tail: list[Any]
        if len(state) == _V1_LENGTH and not isinstance(state[0], str):
            head, tail = state, [None, None, None if state[0] else []]
        elif state and state[0] == STATE_TAG:
            head, tail = state[1:12], state[12:]
        else:
            raise ValueError(f"unknown aggregate state format: {str(state)[:80]}")
        (count, fare_sum, fare_min, fare_max, dur, dist, first, last, zero, bins, last_offset) = head
        dmin, dmax, durations = tail
        return cls(
            count=count,
            fare_sum=fare_sum,
            fare_min=_INF if fare_min is None else fare_min,
            fare_max=-_INF if fare_max is None else fare_max,
            duration_sum=dur,
            distance_sum=dist,
            first_ms=first,
            last_ms=last,
            zero_durations=zero,
            bins={int(k): int(c) for k, c in bins},
            last_offset=last_offset,
            duration_min=(-_INF if count else _INF) if dmin is None else dmin,
            duration_max=(_INF if count else -_INF) if dmax is None else dmax,
            durations=None if durations is None else [float(d) for d in durations],
        )

    def duration_quantile(self, q: float) -> float | None:
        """Duration at rank ⌊q·(n−1)⌋: exact while the durations are kept, else the sketch's
        estimate rounded to ``ROUND_DIGITS`` and then clamped (so rounding cannot leave the
        range either); ``None`` without trips."""
        if self.count == 0:
            return None
        exact = self.durations
        if exact is not None and exact:
            return exact[math.floor(q * (len(exact) - 1))]
        estimate = quantile(self.bins, self.zero_durations, q)
        if estimate is None:
            return None
        return min(max(round(estimate, ROUND_DIGITS), self.duration_min), self.duration_max)

    def metrics(self) -> dict[str, Any]:
        """The contract's aggregate fields (window identity is added by the caller)."""
        n = self.count
        r = ROUND_DIGITS
        return {
            "trip_count": n,
            "revenue": round(self.fare_sum, r),
            "avg_fare": round(self.fare_sum / n, r) if n else None,
            "min_fare": self.fare_min if n else None,
            "max_fare": self.fare_max if n else None,
            "avg_duration": round(self.duration_sum / n, r) if n else None,
            "p50_duration": self.duration_quantile(0.5),
            "p95_duration": self.duration_quantile(0.95),
            "total_distance": round(self.distance_sum, r),
            "avg_distance": round(self.distance_sum / n, r) if n else None,
            "first_event_time": format_time_ms(self.first_ms) if self.first_ms is not None else None,
            "last_event_time": format_time_ms(self.last_ms) if self.last_ms is not None else None,
        }
