"""The regions that have results, for pickers and dashboards."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import ServingDep, WindowParam
from api.models import RegionSummary
from api.routes import INVALID, UNAVAILABLE
from tables.times import format_time_ms

router = APIRouter(tags=["regions"])


@router.get(
    "/regions",
    response_model=list[RegionSummary],
    responses={**INVALID, **UNAVAILABLE},
    summary="Regions with a retained final window of this size (an empty list when none)",
)
async def list_regions(window: WindowParam, serving: ServingDep) -> list[RegionSummary]:
    size = serving.window(window)
    starts = await serving.store.latest_starts(size)
    out = []
    for region_id in sorted(starts):
        zone = serving.zones.get(region_id)
        out.append(
            RegionSummary(
                region_id=region_id,
                region_name=zone.name,
                borough=zone.borough,
                last_window_end=format_time_ms(starts[region_id] + size.size_ms),
            )
        )
    return out
