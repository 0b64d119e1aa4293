"""Ranking regions within the latest final window."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from api.deps import ServingDep, WindowParam
from api.models import TopEntry, TopResponse
from api.ranking import RankBy, rank_windows
from api.routes import INVALID, NOT_FOUND, UNAVAILABLE
from tables.times import format_time_ms

router = APIRouter(tags=["ranking"])

MAX_TOP_LIMIT = 1_000


@router.get(
    "/metrics/top",
    response_model=TopResponse,
    responses={**NOT_FOUND, **INVALID, **UNAVAILABLE},
    summary="Regions ranked by an aggregate in the latest final window",
    description="The latest final window is the newest window start any region has as final. Regions whose "
    "window of that start is not final yet (their partition's watermark lags) are not ranked.",
)
async def top_regions(
    window: WindowParam,
    serving: ServingDep,
    by: Annotated[RankBy, Query(description="Aggregate to rank by, highest first")] = RankBy.revenue,
    limit: Annotated[
        int, Query(description="Most regions returned", ge=1, le=MAX_TOP_LIMIT, examples=[10])
    ] = 10,
) -> TopResponse:
    size = serving.window(window)
    windows = await serving.store.newest_final_windows(size)
    if not windows:
        raise HTTPException(404, f"no final {size.name} window yet")
    start_ms = int(windows[0]["window_start_ms"])
    items = []
    for rank, win in rank_windows(windows, by, limit):
        zone = serving.zones.get(int(win["region_id"]))
        items.append(
            TopEntry(
                rank=rank,
                region_id=int(win["region_id"]),
                region_name=zone.name,
                borough=zone.borough,
                value=win[by.value],
                trip_count=win["trip_count"],
                revenue=win["revenue"],
                avg_fare=win["avg_fare"],
            )
        )
    return TopResponse(
        window=size.name,
        by=by,
        window_start=format_time_ms(start_ms),
        window_end=format_time_ms(start_ms + size.size_ms),
        items=items,
    )
