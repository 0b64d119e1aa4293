"""Response models: the API's JSON shapes, separate from the stored window record.

Every field carries a description and an example because ``/docs`` and ``/openapi.json`` are the
reference clients read, and schemathesis checks each response against these schemas.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import JsonDict

from api.ranking import RankBy
from tables.sketch import RELATIVE_ACCURACY

_ISO: JsonDict = {"format": "date-time"}
_ACCURACY = f"within {RELATIVE_ACCURACY:.0%} relative error (DDSketch)"

EXAMPLE_WINDOW: dict[str, Any] = {
    "window": "1m",
    "window_start": "2019-03-04T21:19:00Z",
    "window_end": "2019-03-04T21:20:00Z",
    "final": True,
    "trip_count": 3,
    "revenue": 27.5,
    "avg_fare": 9.166667,
    "min_fare": 5.0,
    "max_fare": 14.5,
    "avg_duration": 611.333333,
    "p50_duration": 422.8,
    "p95_duration": 1003.1,
    "total_distance": 5.84,
    "avg_distance": 1.946667,
    "first_event_time": "2019-03-04T21:19:05Z",
    "last_event_time": "2019-03-04T21:19:58Z",
}
EXAMPLE_REGION: dict[str, Any] = {"region_id": 161, "region_name": "Midtown Center", "borough": "Manhattan"}


class RegionInfo(BaseModel):
    """Which region a result is about, named from the TLC zone lookup."""

    region_id: int = Field(description="Region (TLC LocationID) the trips started in", ge=0, examples=[161])
    region_name: str | None = Field(
        description="Zone name from the TLC lookup; null for an id the lookup does not know",
        examples=["Midtown Center", None],
    )
    borough: str | None = Field(
        description="Borough from the TLC lookup; null for an id the lookup does not know",
        examples=["Manhattan", None],
    )


class WindowBounds(BaseModel):
    """Which tumbling window: its size and its bounds."""

    window: str = Field(description="Window size, one of the configured sizes", examples=["1m"])
    window_start: str = Field(
        description="Inclusive start, ISO-8601 UTC, aligned to the Unix epoch",
        examples=["2019-03-04T21:19:00Z"],
        json_schema_extra=_ISO,
    )
    window_end: str = Field(
        description="Exclusive end (window_start + size), ISO-8601 UTC",
        examples=["2019-03-04T21:20:00Z"],
        json_schema_extra=_ISO,
    )


class WindowMetrics(WindowBounds):
    """One tumbling window of one region: its bounds, whether it is final, and every aggregate."""

    model_config = ConfigDict(extra="ignore")

    final: bool = Field(
        description="true once the watermark passed window_end, so the numbers can no longer change; "
        "false for an open window's live numbers",
        examples=[True],
    )
    trip_count: int = Field(description="Trips whose event time falls in the window", ge=0, examples=[3])
    revenue: float = Field(description="Sum of fares (USD)", examples=[27.5])
    avg_fare: float | None = Field(description="Mean fare (USD); null without trips", examples=[9.166667])
    min_fare: float | None = Field(description="Lowest fare (USD); null without trips", examples=[5.0])
    max_fare: float | None = Field(description="Highest fare (USD); null without trips", examples=[14.5])
    avg_duration: float | None = Field(
        description="Mean trip duration (s); null without trips", examples=[611.3]
    )
    p50_duration: float | None = Field(
        description=f"Median trip duration (s), {_ACCURACY}; null without trips", examples=[422.8]
    )
    p95_duration: float | None = Field(
        description=f"95th-percentile trip duration (s), {_ACCURACY}; null without trips", examples=[1003.1]
    )
    total_distance: float = Field(description="Sum of trip distances (miles)", examples=[5.84])
    avg_distance: float | None = Field(
        description="Mean trip distance (miles); null without trips", examples=[1.95]
    )
    first_event_time: str | None = Field(
        description="Earliest event time in the window, ISO-8601 UTC",
        examples=["2019-03-04T21:19:05Z"],
        json_schema_extra=_ISO,
    )
    last_event_time: str | None = Field(
        description="Latest event time in the window, ISO-8601 UTC",
        examples=["2019-03-04T21:19:58Z"],
        json_schema_extra=_ISO,
    )


class StoredWindow(WindowMetrics):
    """A window as the sink stores it in Redis, checked before the API serves it: Redis is not
    trusted to hold only what the sink wrote."""

    region_id: int = Field(ge=0)
    window_start_ms: int
    window_end_ms: int


class RegionWindow(WindowMetrics, RegionInfo):
    """A region's final window (the latest, or the one containing ``at``), optionally with its open one."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{**EXAMPLE_REGION, **EXAMPLE_WINDOW, "current": None}]}
    )

    current: WindowMetrics | None = Field(
        None,
        description="With include_current=true: the region's newest open window (final=false), live "
        "numbers that still change; null when not asked for or when no window is open",
        examples=[None, {**EXAMPLE_WINDOW, "final": False}],
    )


class HistoryPage(RegionInfo):
    """One page of a region's final windows, oldest first."""

    window: str = Field(description="Window size of every item", examples=["5m"])
    items: list[WindowMetrics] = Field(
        description="Final windows in ascending window_start order", examples=[[EXAMPLE_WINDOW]]
    )
    next: str | None = Field(
        description="Pass as cursor (keeping the other parameters) for the next page; null on the last page",
        examples=["MTo1bToxNjE6MTU1MTczNDQwMDAwMA", None],
    )


class RegionSummary(RegionInfo):
    """A region with at least one retained final window of the requested size."""

    last_window_end: str = Field(
        description="End of the region's newest final window of this size, ISO-8601 UTC",
        examples=["2019-03-04T21:20:00Z"],
        json_schema_extra=_ISO,
    )


class TopEntry(RegionInfo):
    """A region's place in the ranking."""

    rank: int = Field(
        description="1 for the highest value; equal values share a rank (1, 2, 2, 4)", examples=[1]
    )
    value: float | None = Field(
        description="The value ranked by (the aggregate named by `by`)", examples=[27.5]
    )
    trip_count: int = Field(description="Trips in the window", ge=0, examples=[3])
    revenue: float = Field(description="Sum of fares (USD)", examples=[27.5])
    avg_fare: float | None = Field(description="Mean fare (USD)", examples=[9.166667])


class TopResponse(WindowBounds):
    """Regions ranked within the latest final window of a size: the newest start any region has final."""

    by: RankBy = Field(description="Aggregate ranked by", examples=["revenue"])
    items: list[TopEntry] = Field(
        description="Best first; only regions whose window is final and retained",
        examples=[
            [
                {
                    "rank": 1,
                    **EXAMPLE_REGION,
                    "value": 27.5,
                    "trip_count": 3,
                    "revenue": 27.5,
                    "avg_fare": 9.166667,
                }
            ]
        ],
    )


class HealthCheck(BaseModel):
    """The outcome of one health check."""

    ok: bool = Field(description="Whether the check passed", examples=[True])
    detail: str = Field(description="What was checked and what was found", examples=["PONG in 0.4 ms"])


class FreshnessCheck(HealthCheck):
    """Whether final results are still arriving."""

    last_final_write: str | None = Field(
        description="Wall-clock time of the newest final window write, ISO-8601 UTC; null before the first",
        examples=["2024-05-01T12:00:03.120Z", None],
        json_schema_extra=_ISO,
    )
    age_s: float | None = Field(description="Seconds since that write; null before the first", examples=[4.2])
    stale_after_s: float = Field(
        description="Limit from STREAMPULSE_RESULTS_STALE_AFTER (0: freshness not checked)", examples=[900.0]
    )


class HealthChecks(BaseModel):
    """Every check /health runs."""

    redis: HealthCheck = Field(
        description="Redis answers PING", examples=[{"ok": True, "detail": "PONG in 0.4 ms"}]
    )
    freshness: FreshnessCheck = Field(
        description="The newest final write is younger than stale_after_s",
        examples=[
            {
                "ok": True,
                "detail": "last final write 4.2 s ago (limit 900 s)",
                "last_final_write": "2024-05-01T12:00:03.120Z",
                "age_s": 4.2,
                "stale_after_s": 900.0,
            }
        ],
    )


class HealthResponse(BaseModel):
    """Service health: 200 when every check passes, else 503 with the same body."""

    status: Literal["ok", "failing"] = Field(description="ok when every check passed", examples=["ok"])
    detail: str = Field(description="Summary naming the failing checks", examples=["all checks passed"])
    checks: HealthChecks = Field(
        description="Each check's outcome",
        examples=[
            {
                "redis": {"ok": True, "detail": "PONG in 0.4 ms"},
                "freshness": {
                    "ok": True,
                    "detail": "last final write 4.2 s ago (limit 900 s)",
                    "last_final_write": "2024-05-01T12:00:03.120Z",
                    "age_s": 4.2,
                    "stale_after_s": 900.0,
                },
            }
        ],
    )


class ErrorBody(BaseModel):
    """Error body of 404 and 503 responses."""

    detail: str = Field(description="What went wrong", examples=["region 7 has no final 1m window"])


class FieldError(BaseModel):
    """One invalid parameter."""

    loc: list[str | int] = Field(
        description="Where: part of the request and parameter name", examples=[["query", "window"]]
    )
    msg: str = Field(
        description="Why, with the allowed values",
        examples=["window must be one of 1m, 5m, 15m, 1h (got '2m')"],
    )
    type: str = Field(description="Machine-readable error kind", examples=["value_error"])


class ValidationErrorBody(BaseModel):
    """Error body of 422 responses: one entry per invalid parameter."""

    detail: list[FieldError] = Field(
        description="The invalid parameters",
        examples=[
            [
                {
                    "loc": ["query", "window"],
                    "msg": "window must be one of 1m, 5m, 15m, 1h (got '2m')",
                    "type": "value_error",
                }
            ]
        ],
    )
