"""City-wide totals per window for the dashboard's overview charts.

Summing every region's history through ``/metrics/region/{id}/history`` would cost the page one
request per region per refresh; this route does the same sums in three pipelined Redis round
trips. The series ends at the newest final window start of the size (as ``/metrics/top`` does)
and has one point per window, zero where no region had a trip. The regions' open windows are
summed separately per start, since their numbers still change.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.deps import ServingDep, WindowParam
from api.metrics import redis_call
from api.store import WindowStore
from tables.times import format_time_ms
from tables.windows import WindowSize

router = APIRouter(tags=["dashboard"])

MAX_POINTS = 500


class CityPoint(BaseModel):
    """All regions' trips in one window."""

    window_start: str = Field(description="Inclusive start, ISO-8601 UTC")
    window_start_ms: int = Field(description="The same start, epoch ms (for charts)")
    final: bool = Field(description="false while any summed window is still open")
    regions: int = Field(description="Regions with trips in the window", ge=0)
    trip_count: int = Field(description="Trips in the window, all regions", ge=0)
    revenue: float = Field(description="Sum of fares (USD), all regions")
    avg_fare: float | None = Field(description="revenue / trip_count; null without trips")


class CitySeries(BaseModel):
    """The last ``points`` final windows of a size, summed over regions, and the open ones."""

    window: str = Field(description="Window size of every point")
    items: list[CityPoint] = Field(description="Final windows, oldest first; empty before the first")
    open: list[CityPoint] = Field(description="Open windows newer than the last final one, oldest first")


@router.get(
    "/metrics/city",
    response_model=CitySeries,
    include_in_schema=False,
    summary="All regions' trips, revenue and average fare per window, for the overview charts",
)
async def city_series(
    window: WindowParam,
    serving: ServingDep,
    points: Annotated[int, Query(description="Final windows returned", ge=1, le=MAX_POINTS)] = 60,
) -> CitySeries:
    size = serving.window(window)
    store = serving.store
    with redis_call("latest_index"):
        entries: Any = await store.redis.zrange(store.keys.latest(size.name), 0, -1, withscores=True)
    latest = [(int(member), int(score)) for member, score in entries]
    newest = max((score for _, score in latest), default=None)
    items: list[CityPoint] = []
    if newest is not None:
        lower = newest - (points - 1) * size.size_ms
        regions = [region for region, _ in latest]
        sums = await _final_sums(store, size, regions, lower, newest)
        items = [
            _point(start, sums.get(start), final=True) for start in range(lower, newest + 1, size.size_ms)
        ]
    open_sums = await _open_sums(store, size, newest)
    return CitySeries(
        window=size.name,
        items=items,
        open=[_point(start, open_sums[start], final=False) for start in sorted(open_sums)],
    )


async def _final_sums(
    store: WindowStore, size: WindowSize, regions: list[int], lower: int, upper: int
) -> dict[int, list[float]]:
    with redis_call("history_index"):
        pipe = store.redis.pipeline(transaction=False)
        for region in regions:
            pipe.zrange(store.keys.history(size.name, region), lower, upper, byscore=True)
        indexes = await pipe.execute()
    keys = [
        store.keys.window(size.name, region, int(start))
        for region, starts in zip(regions, indexes, strict=True)
        for start in starts
    ]
    return _sum(await _records(store, keys), want_final=True)


async def _open_sums(
    store: WindowStore, size: WindowSize, newest_final: int | None
) -> dict[int, list[float]]:
    with redis_call("regions"):
        members = await store.redis.smembers(store.keys.regions)
    regions = sorted(int(m) for m in members)
    with redis_call("open_pointer"):
        pipe = store.redis.pipeline(transaction=False)
        for region in regions:
            pipe.get(store.keys.open_window(size.name, region))
        starts = await pipe.execute()
    keys = [
        store.keys.window(size.name, region, int(start))
        for region, start in zip(regions, starts, strict=True)
        if start is not None and (newest_final is None or int(start) > newest_final)
    ]
    return _sum(await _records(store, keys), want_final=False)


async def _records(store: WindowStore, keys: list[str]) -> list[tuple[Any, Any]]:
    if not keys:
        return []
    with redis_call("windows"):
        pipe = store.redis.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(key, "final", "data")
        rows: list[tuple[Any, Any]] = await pipe.execute()
    return rows


def _sum(rows: list[tuple[Any, Any]], *, want_final: bool) -> dict[int, list[float]]:
    """Window start -> [regions, trips, revenue] over the rows that exist and are (not) final."""
    sums: dict[int, list[float]] = defaultdict(lambda: [0, 0, 0.0])
    for final, data in rows:
        if data is None or (final in (b"1", "1")) != want_final:
            continue
        record = orjson.loads(data)
        acc = sums[int(record["window_start_ms"])]
        acc[0] += 1
        acc[1] += record["trip_count"]
        acc[2] += record["revenue"]
    return sums


def _point(start_ms: int, acc: list[float] | None, *, final: bool) -> CityPoint:
    regions, trips, revenue = acc if acc is not None else (0, 0, 0.0)
    return CityPoint(
        window_start=format_time_ms(start_ms),
        window_start_ms=start_ms,
        final=final,
        regions=int(regions),
        trip_count=int(trips),
        revenue=round(revenue, 6),
        avg_fare=round(revenue / trips, 6) if trips else None,
    )
