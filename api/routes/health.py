"""Service health: Redis answers and final results are fresh; and readiness, Redis alone.

``/ready`` is the API's side of the one readiness rule (app/readiness.py), what orchestrators and
scripts wait for before sending traffic. It is left out of the OpenAPI schema: it is for probes,
not clients, and its body is the same on the worker, whose web server has no schema.

What "fresh" means before any result exists: a newly started stack has nothing final until its
first windows close, which is not a failure, while a pipeline that never produces anything is. So
until the first final write, the API's own start time stands in for it: /health passes for
``stale_after`` after the API starts and then fails with "no final result written yet". Once a
final write exists, its age is compared with ``stale_after`` as usual. ``stale_after`` 0 turns the
freshness check off (Redis is still checked).
"""

from __future__ import annotations

import logging
import time

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from api.deps import RedisDep, ServingDep, SettingsDep
from api.metrics import redis_call
from api.models import FreshnessCheck, HealthCheck, HealthChecks, HealthResponse
from app.readiness import READY_PATH, api_readiness
from tables.times import format_time_ms

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


@router.get(
    "/health",
    response_model=HealthResponse,
    responses={503: {"model": HealthResponse, "description": "A check failed; the body names it"}},
    summary="200 when Redis answers and final results are fresh, else 503 with the failing checks",
)
async def health(
    request: Request, response: Response, redis: RedisDep, serving: ServingDep, settings: SettingsDep
) -> HealthResponse:
    stale_after_ms = settings.stale_after_ms
    started = time.perf_counter()
    try:
        with redis_call("ping"):
            await redis.ping()
        redis_check = HealthCheck(ok=True, detail=f"PONG in {(time.perf_counter() - started) * 1000:.1f} ms")
        last_ms = await serving.store.last_final_ms()
    except (RedisError, OSError) as exc:
        log.warning("health check: Redis unreachable: %s", exc)
        redis_check = HealthCheck(ok=False, detail="Redis unavailable")
        freshness = FreshnessCheck(
            ok=False,
            detail="not checked: Redis is unreachable",
            last_final_write=None,
            age_s=None,
            stale_after_s=stale_after_ms / 1000,
        )
    else:
        freshness = _freshness(last_ms, request.app.state.started_ms, stale_after_ms)
    failing = [name for name, check in (("redis", redis_check), ("freshness", freshness)) if not check.ok]
    if failing:
        response.status_code = 503
    return HealthResponse(
        status="failing" if failing else "ok",
        detail="failing: " + ", ".join(failing) if failing else "all checks passed",
        checks=HealthChecks(redis=redis_check, freshness=freshness),
    )


@router.get(READY_PATH, include_in_schema=False)
async def ready(redis: RedisDep) -> JSONResponse:
    try:
        with redis_call("ping"):
            await redis.ping()
    except (RedisError, OSError) as exc:
        log.warning("readiness: Redis unreachable: %s", exc)
        readiness = api_readiness(redis_answers=False)
    else:
        readiness = api_readiness(redis_answers=True)
    return JSONResponse(readiness.body(), status_code=readiness.status)


def _freshness(last_ms: int | None, api_started_ms: int, stale_after_ms: int) -> FreshnessCheck:
    now_ms = int(time.time() * 1000)
    limit = f"limit {stale_after_ms / 1000:g} s"
    if last_ms is None:
        waited_ms = now_ms - api_started_ms
        ok = stale_after_ms == 0 or waited_ms <= stale_after_ms
        detail = f"no final result written yet; API up {waited_ms / 1000:.1f} s ({limit} since start)"
        return FreshnessCheck(
            ok=ok, detail=detail, last_final_write=None, age_s=None, stale_after_s=stale_after_ms / 1000
        )
    age_ms = max(0, now_ms - last_ms)
    ok = stale_after_ms == 0 or age_ms <= stale_after_ms
    bound = "not checked" if stale_after_ms == 0 else limit
    return FreshnessCheck(
        ok=ok,
        detail=f"last final write {age_ms / 1000:.1f} s ago ({bound})",
        last_final_write=format_time_ms(last_ms),
        age_s=round(age_ms / 1000, 3),
        stale_after_s=stale_after_ms / 1000,
    )
