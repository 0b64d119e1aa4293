"""Ranking regions within one window (no I/O, so the order rules are unit-tested on their own)."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any


class RankBy(StrEnum):
    """The aggregates a ranking may order by."""

    revenue = "revenue"
    trip_count = "trip_count"
    avg_fare = "avg_fare"


def rank_windows(
    windows: Iterable[Mapping[str, Any]], by: RankBy, limit: int
) -> list[tuple[int, Mapping[str, Any]]]:
    """The ``limit`` best windows by ``by`` (highest first) with their competition rank (1, 2, 2, 4).

    Equal values share a rank and are listed by region id, so the order is stable across calls;
    a missing value ranks last. At the cut-off, ties are cut by region id as well.
    """

    def order(win: Mapping[str, Any]) -> tuple[bool, float, int]:
        value = win.get(by.value)
        return (value is None, -(value or 0), int(win["region_id"]))

    best = heapq.nsmallest(limit, windows, key=order)
    ranked: list[tuple[int, Mapping[str, Any]]] = []
    for position, win in enumerate(best, start=1):
        tied = bool(ranked) and ranked[-1][1].get(by.value) == win.get(by.value)
        ranked.append((ranked[-1][0] if tied else position, win))
    return ranked
