"""Pipeline state at a glance for the dashboard: /health's checks plus the workers' counters.

The counters come from the hash each worker rewrites every second (``agents/pipeline_stats.py``);
the API reads only Redis, never a worker. A worker whose field is older than
:data:`WORKER_FRESH_MS` has stopped and is not counted. This route answers 200 even when a
check fails (the body says so), so a page polling it keeps its state instead of seeing errors.
"""

from __future__ import annotations

import time

import orjson
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field
from redis.exceptions import RedisError

from api.deps import RedisDep, ServingDep, SettingsDep
from api.metrics import redis_call
from api.models import HealthResponse
from api.routes import health
from tables.times import format_time_ms

router = APIRouter(tags=["dashboard"])

#: Workers write every second; three missed writes mean the worker is gone.
WORKER_FRESH_MS = 5_000


class PipelineState(BaseModel):
    """The health checks and the running workers' summed counters."""

    health: HealthResponse = Field(description="What GET /health answers (its status code aside)")
    workers: int = Field(description="Workers that reported in the last few seconds", ge=0, examples=[1])
    events_per_s: float = Field(description="Valid events folded per second, summed over workers")
    events_processed: int = Field(description="Valid events processed since the workers started", ge=0)
    invalid: int = Field(description="Records sent to the dead-letter topic since the workers started", ge=0)
    late: int = Field(description="Late events (one per missed window size) since the workers started", ge=0)
    windows_finalized: int = Field(description="Windows made final since the workers started", ge=0)
    stats_updated: str | None = Field(description="Newest worker report, ISO-8601 UTC; null without workers")


@router.get(
    "/pipeline",
    response_model=PipelineState,
    include_in_schema=False,
    summary="Health checks and worker counters for the dashboard",
)
async def pipeline_state(
    request: Request, redis: RedisDep, serving: ServingDep, settings: SettingsDep
) -> PipelineState:
    checks = await health.health(request, Response(), redis, serving, settings)
    reports: list[dict[str, float]] = []
    if checks.checks.redis.ok:
        try:
            with redis_call("pipeline_stats"):
                fields = await redis.hgetall(serving.store.keys.pipeline_stats)
        except (RedisError, OSError):
            fields = {}
        now_ms = time.time() * 1000
        reports = [
            r for r in map(orjson.loads, fields.values()) if now_ms - r["updated_ms"] <= WORKER_FRESH_MS
        ]
    newest = max((int(r["updated_ms"]) for r in reports), default=None)
    return PipelineState(
        health=checks,
        workers=len(reports),
        events_per_s=round(sum(r["events_per_s"] for r in reports), 3),
        events_processed=int(sum(r["events_processed"] for r in reports)),
        invalid=int(sum(r["invalid"] for r in reports)),
        late=int(sum(r["late"] for r in reports)),
        windows_finalized=int(sum(r["windows_finalized"] for r in reports)),
        stats_updated=format_time_ms(newest) if newest is not None else None,
    )
