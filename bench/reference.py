"""The benchmark's checks of every contender against the one reference (:mod:`support.reference`).

StreamPulse is compared on every field it publishes, as the integration tests compare it; the
peers compute count, revenue and min/max fare, so they are compared on those.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from support.kafka import Record, topic_chunks
from support.reference import (
    ABS_TOL,
    LATENESS_MS,
    REL_TOL,
    SIZES_MS,
    Fold,
    Reference,
    WindowKey,
    window_problems,
)

__all__ = ["LATENESS_MS", "SIZES_MS", "Check", "Reference", "WindowKey", "check_peer", "check_streampulse"]

PeerRow = tuple[int, float, float, float]  # count, revenue, min fare, max fare
T = TypeVar("T")


async def reference_from_topic(bootstrap: str, topic: str, partitions: int) -> Reference:
    """The reference over the topic as stored, read partition by partition (streamed)."""
    ref = Reference()
    partition: list[Record] = []
    async for chunk in topic_chunks(bootstrap, topic, partitions):
        for rec in chunk:
            if partition and rec.partition != partition[0].partition:
                ref.fold_partition(partition)
                partition = []
            partition.append(rec)
    ref.fold_partition(partition)
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


def _check(
    ref: Reference, got: Iterable[tuple[WindowKey, T]], compare: Callable[[WindowKey, Fold, T], str]
) -> Check:
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
        problem = compare(key, fold, value)
        if problem:
            check.wrong += 1
            check.example(f"{key}: {problem}")
    missing = ref.windows.keys() - seen
    check.missing = len(missing)
    for key in sorted(missing)[:3]:
        check.example(f"missing {key}")
    return check


def _compare_streampulse(key: WindowKey, fold: Fold, win: Mapping[str, Any]) -> str:
    return ", ".join(window_problems(key, fold, win))


def _compare_peer(key: WindowKey, fold: Fold, row: PeerRow) -> str:
    count, revenue, fare_min, fare_max = row
    if count != fold.count or not math.isclose(revenue, fold.revenue, rel_tol=REL_TOL, abs_tol=ABS_TOL):
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
