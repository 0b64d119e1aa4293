"""A region's windows: the latest final one (or the one containing a time) and its history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from api.cursor import Cursor, decode_cursor, encode_cursor
from api.deps import (
    TIME_FORMATS,
    RegionIdPath,
    ServingDep,
    WindowParam,
    invalid_param,
    parse_time_param,
)
from api.models import HistoryPage, RegionWindow, WindowMetrics
from api.routes import INVALID, NOT_FOUND, UNAVAILABLE
from tables.windows import WindowSize

router = APIRouter(prefix="/metrics/region", tags=["windows"])

MAX_HISTORY_LIMIT = 10_000


@router.get(
    "/{region_id}",
    response_model=RegionWindow,
    responses={**NOT_FOUND, **INVALID, **UNAVAILABLE},
    summary="A region's latest final window, or the window containing a time",
)
async def region_window(
    region_id: RegionIdPath,
    window: WindowParam,
    serving: ServingDep,
    at: Annotated[
        str | None,
        Query(
            description="Return the window containing this time instead of the latest final one "
            f"(it may still be open: final=false); {TIME_FORMATS}",
            max_length=64,
            examples=["2019-03-04T21:19:30Z"],
        ),
    ] = None,
    include_current: Annotated[
        bool, Query(description="Also return the region's open window (live numbers) in `current`")
    ] = False,
) -> RegionWindow:
    size = serving.window(window)
    at_ms = parse_time_param("at", at)
    if at_ms is None:
        record = await serving.store.latest_final(size, region_id)
    else:
        record = await serving.store.window(size, region_id, size.start(at_ms))
    if record is None:
        raise HTTPException(404, _missing(size, region_id, at))
    current = await serving.store.open_window(size, region_id) if include_current else None
    zone = serving.zones.get(region_id)
    return RegionWindow.model_validate(
        {
            **record,
            "region_id": region_id,
            "region_name": zone.name,
            "borough": zone.borough,
            "current": current,
        }
    )


@router.get(
    "/{region_id}/history",
    response_model=HistoryPage,
    responses={**NOT_FOUND, **INVALID, **UNAVAILABLE},
    summary="A region's final windows in a time range, oldest first, paginated",
)
async def region_history(
    region_id: RegionIdPath,
    window: WindowParam,
    serving: ServingDep,
    start: Annotated[
        str | None,
        Query(
            description="Windows overlapping [start, end): from the window containing start; "
            f"{TIME_FORMATS}. Default: the oldest retained",
            max_length=64,
            examples=["2019-03-04T00:00:00Z"],
        ),
    ] = None,
    end: Annotated[
        str | None,
        Query(
            description=f"Only windows starting before this time (exclusive); {TIME_FORMATS}. "
            "Default: the newest",
            max_length=64,
            examples=["2019-03-05T00:00:00Z"],
        ),
    ] = None,
    limit: Annotated[
        int, Query(description="Most windows per page", ge=1, le=MAX_HISTORY_LIMIT, examples=[100])
    ] = 100,
    cursor: Annotated[
        str | None,
        Query(
            description="`next` of the previous page; keep the other parameters the same",
            max_length=128,
            examples=["MTo1bToxNjE6MTU1MTczNDQwMDAwMA"],
        ),
    ] = None,
) -> HistoryPage:
    size = serving.window(window)
    start_ms = parse_time_param("start", start)
    end_ms = parse_time_param("end", end)
    if start_ms is not None and end_ms is not None and start_ms >= end_ms:
        raise invalid_param("end", f"end must be after start (start={start!r}, end={end!r})", end)
    lower_ms = size.start(start_ms) if start_ms is not None else None
    if cursor is not None:
        after_ms = _cursor_after(cursor, size, region_id)
        lower_ms = after_ms + 1 if lower_ms is None else max(lower_ms, after_ms + 1)
    page = await serving.store.history(size, region_id, lower_ms, end_ms, limit)
    if not page.items and cursor is None and not await serving.store.has_history(size, region_id):
        raise HTTPException(404, _missing(size, region_id, None))
    next_cursor = None
    if page.has_more:
        next_cursor = encode_cursor(Cursor(size.name, region_id, int(page.items[-1]["window_start_ms"])))
    zone = serving.zones.get(region_id)
    return HistoryPage(
        region_id=region_id,
        region_name=zone.name,
        borough=zone.borough,
        window=size.name,
        items=[WindowMetrics.model_validate(item) for item in page.items],
        next=next_cursor,
    )


def _cursor_after(cursor: str, size: WindowSize, region_id: int) -> int:
    try:
        decoded = decode_cursor(cursor)
    except ValueError as exc:
        raise invalid_param("cursor", f"cursor: {exc}", cursor) from None
    if decoded.window != size.name or decoded.region_id != region_id:
        raise invalid_param(
            "cursor",
            f"cursor was issued for region {decoded.region_id} window {decoded.window}, "
            f"not region {region_id} window {size.name}",
            cursor,
        )
    return decoded.after_ms


def _missing(size: WindowSize, region_id: int, at: str | None) -> str:
    if at is not None:
        return f"region {region_id} has no {size.name} window containing {at}"
    return f"region {region_id} has no final {size.name} window"
