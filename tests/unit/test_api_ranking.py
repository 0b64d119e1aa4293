"""Ranking within one window: highest first, competition ranks, stable ties, missing values last."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.ranking import RankBy, rank_windows


def win(region_id: int, revenue: float, trip_count: int, avg_fare: float | None) -> dict[str, Any]:
    return {"region_id": region_id, "revenue": revenue, "trip_count": trip_count, "avg_fare": avg_fare}


WINDOWS = [
    win(4, 50.0, 5, 10.0),
    win(1, 80.0, 4, 20.0),
    win(7, 50.0, 2, 25.0),
    win(2, 10.0, 5, None),
    win(3, 90.0, 9, 10.0),
]


@pytest.mark.parametrize(
    ("by", "expected"),
    [
        (RankBy.revenue, [(1, 3), (2, 1), (3, 4), (3, 7), (5, 2)]),
        (RankBy.trip_count, [(1, 3), (2, 2), (2, 4), (4, 1), (5, 7)]),
        (RankBy.avg_fare, [(1, 7), (2, 1), (3, 3), (3, 4), (5, 2)]),
    ],
)
def test_order_and_competition_ranks(by: RankBy, expected: list[tuple[int, int]]) -> None:
    ranked = rank_windows(WINDOWS, by, limit=10)
    assert [(rank, w["region_id"]) for rank, w in ranked] == expected


def test_limit_cuts_ties_by_region_id() -> None:
    ranked = rank_windows(WINDOWS, RankBy.revenue, limit=3)
    assert [(rank, w["region_id"]) for rank, w in ranked] == [(1, 3), (2, 1), (3, 4)]


def test_empty() -> None:
    assert rank_windows([], RankBy.revenue, limit=10) == []


@given(
    st.lists(
        st.tuples(st.integers(0, 300), st.floats(0, 1e6, allow_nan=False)),
        unique_by=lambda t: t[0],
        max_size=60,
    ),
    st.integers(1, 80),
)
def test_matches_a_full_sort(rows: list[tuple[int, float]], limit: int) -> None:
    windows = [win(region, revenue, 1, revenue) for region, revenue in rows]
    ranked = rank_windows(windows, RankBy.revenue, limit)
    full = sorted(windows, key=lambda w: (-w["revenue"], w["region_id"]))[:limit]
    assert [w for _, w in ranked] == full
    for (rank, w), position in zip(ranked, range(1, limit + 1), strict=False):
        first_equal = next(i for i, other in enumerate(full, 1) if other["revenue"] == w["revenue"])
        assert rank == first_equal <= position
