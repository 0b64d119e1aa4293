"""Exception handlers: every error is JSON ``{"detail": ...}`` and none becomes a 500.

Redis being unreachable or failing is the service being unavailable (503, retry later), not a bug
in the request, so Redis errors from any route end here. The body says only "Redis unavailable":
the exception text names hosts and ports, which belong in the log, not in a response. 422 bodies
keep FastAPI's list shape but only ``loc``/``msg``/``type``, and a missing ``window`` lists the
configured sizes.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from api.deps import allowed_windows

log = logging.getLogger(__name__)

#: Seconds a client should wait before retrying after a 503 (reconnecting to Redis is fast).
RETRY_AFTER_S = 1


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    windows = allowed_windows(request)
    detail: list[dict[str, Any]] = []
    for err in exc.errors():
        loc = [part if isinstance(part, int) else str(part) for part in err.get("loc", ())]
        msg = str(err.get("msg", "invalid value"))
        if loc[-1:] == ["window"] and err.get("type") == "missing":
            msg = f"window is required: one of {windows}"
        detail.append({"loc": loc, "msg": msg, "type": str(err.get("type", "value_error"))})
    return JSONResponse({"detail": detail}, status_code=422)


async def redis_unreachable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("Redis unreachable serving %s: %s", request.url.path, exc)
    return JSONResponse(
        {"detail": "Redis unavailable"},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


async def redis_failed(request: Request, exc: Exception) -> JSONResponse:
    log.error("Redis error serving %s: %r", request.url.path, exc)
    return JSONResponse(
        {"detail": "Redis unavailable"}, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)}
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(RedisConnectionError, redis_unreachable)
    app.add_exception_handler(RedisTimeoutError, redis_unreachable)
    app.add_exception_handler(RedisError, redis_failed)
