"""The per-window trip aggregate: pure fold / merge / result, with a compact serializable state.

Shaped like Quix Streams' aggregators (initialize, add, merge, result): no I/O, so the same code
serves the worker and the unit tests. ``last_offset`` is the highest source offset already folded
in; the worker skips events at or below it, which makes replays after a crash idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.events import format_time_ms
from tables.sketch import RELATIVE_ACCURACY, merge_bins, quantile, sketch_key

#: Decimal places kept in reported sums and averages: hides float summation-order noise while
#: keeping far more precision than fares (cents) or distances (hundredths of a mile) carry.
ROUND_DIGITS = 6

__all__ = ["RELATIVE_ACCURACY", "ROUND_DIGITS", "TripAggregate"]


@dataclass(slots=True)
class TripAggregate:
    """Running aggregate of one (region, window size, window start)."""

    count: int = 0
    fare_sum: float = 0.0
    fare_min: float = float("inf")
    fare_max: float = float("-inf")
    duration_sum: float = 0.0
    distance_sum: float = 0.0
    first_ms: int | None = None
    last_ms: int | None = None
    zero_durations: int = 0
    bins: dict[int, int] = field(default_factory=dict)
    last_offset: int = -1

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
        if dkey is None:
            self.zero_durations += 1
        else:
            self.bins[dkey] = self.bins.get(dkey, 0) + 1

    def add_event(self, fare: float, duration: float, distance: float, t_ms: int) -> None:
        self.add(fare, duration, distance, t_ms, sketch_key(duration))

    def merge(self, other: TripAggregate) -> TripAggregate:
        """Combine two partial aggregates of the same window (associative and commutative)."""
        firsts = [t for t in (self.first_ms, other.first_ms) if t is not None]
        lasts = [t for t in (self.last_ms, other.last_ms) if t is not None]
        return TripAggregate(
            count=self.count + other.count,
            fare_sum=self.fare_sum + other.fare_sum,
            fare_min=min(self.fare_min, other.fare_min),
            fare_max=max(self.fare_max, other.fare_max),
            duration_sum=self.duration_sum + other.duration_sum,
            distance_sum=self.distance_sum + other.distance_sum,
            first_ms=min(firsts) if firsts else None,
            last_ms=max(lasts) if lasts else None,
            zero_durations=self.zero_durations + other.zero_durations,
            bins=merge_bins(self.bins, other.bins),
            last_offset=max(self.last_offset, other.last_offset),
        )

    def to_state(self) -> list[Any]:
        """Compact JSON-able state for the changelogged table (a list encodes faster than a dict)."""
        return [
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
        ]

    @classmethod
    def from_state(cls, state: list[Any]) -> TripAggregate:
        (count, fare_sum, fare_min, fare_max, dur, dist, first, last, zero, bins, last_offset) = state
        return cls(
            count=count,
            fare_sum=fare_sum,
            fare_min=float("inf") if fare_min is None else fare_min,
            fare_max=float("-inf") if fare_max is None else fare_max,
            duration_sum=dur,
            distance_sum=dist,
            first_ms=first,
            last_ms=last,
            zero_durations=zero,
            bins={int(k): int(c) for k, c in bins},
            last_offset=last_offset,
        )

    def metrics(self) -> dict[str, Any]:
        """The contract's aggregate fields (window identity is added by the caller)."""
        n = self.count
        r = ROUND_DIGITS
        p50 = quantile(self.bins, self.zero_durations, 0.5)
        p95 = quantile(self.bins, self.zero_durations, 0.95)
        return {
            "trip_count": n,
            "revenue": round(self.fare_sum, r),
            "avg_fare": round(self.fare_sum / n, r) if n else None,
            "min_fare": self.fare_min if n else None,
            "max_fare": self.fare_max if n else None,
            "avg_duration": round(self.duration_sum / n, r) if n else None,
            "p50_duration": round(p50, r) if p50 is not None else None,
            "p95_duration": round(p95, r) if p95 is not None else None,
            "total_distance": round(self.distance_sum, r),
            "avg_distance": round(self.distance_sum / n, r) if n else None,
            "first_event_time": format_time_ms(self.first_ms) if self.first_ms is not None else None,
            "last_event_time": format_time_ms(self.last_ms) if self.last_ms is not None else None,
        }
