"""Request dependencies: the shared Redis pool, settings, zone lookup and validated parameters.

Everything per process lives on ``app.state`` (set by :func:`api.main.create_app` and its lifespan)
rather than in module globals, so tests can run several apps with different settings side by side.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from redis.asyncio import Redis

from api.store import WindowStore
from api.timeparse import parse_time_ms
from api.zones import ZoneLookup
from app.settings import Settings
from tables.windows import WindowSize

MAX_REGION_ID = 2**63 - 1


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_redis(request: Request) -> Redis:
    redis: Redis = request.app.state.redis
    return redis


def get_store(request: Request) -> WindowStore:
    store: WindowStore = request.app.state.store
    return store


def get_zones(request: Request) -> ZoneLookup:
    zones: ZoneLookup = request.app.state.zones
    return zones


SettingsDep = Annotated[Settings, Depends(get_settings)]
RedisDep = Annotated[Redis, Depends(get_redis)]
StoreDep = Annotated[WindowStore, Depends(get_store)]
ZonesDep = Annotated[ZoneLookup, Depends(get_zones)]


def invalid_param(name: str, message: str, value: object, where: str = "query") -> RequestValidationError:
    """A 422 in the same shape as FastAPI's own validation errors, naming the parameter."""
    return RequestValidationError(
        [{"type": "value_error", "loc": (where, name), "msg": message, "input": value}]
    )


def allowed_windows(settings: Settings) -> str:
    return ", ".join(size.name for size in settings.window_sizes)


def get_window(
    settings: SettingsDep,
    window: Annotated[str, Query(description="Window size: one of the configured sizes", examples=["1m"])],
) -> WindowSize:
    for size in settings.window_sizes:
        if size.name == window:
            return size
    raise invalid_param(
        "window", f"window must be one of {allowed_windows(settings)} (got {window!r})", window
    )


def parse_time_param(name: str, value: str | None) -> int | None:
    """Epoch ms of an optional time parameter, or a 422 naming it."""
    if value is None:
        return None
    try:
        return parse_time_ms(value)
    except ValueError as exc:
        raise invalid_param(name, f"{name}: {exc}", value) from None


WindowDep = Annotated[WindowSize, Depends(get_window)]
RegionIdPath = Annotated[
    int,
    Path(description="Region id (TLC LocationID), an integer >= 0", ge=0, le=MAX_REGION_ID, examples=[161]),
]
TIME_FORMATS = "ISO-8601 (Z or an offset; a naive time is UTC; encode '+' as %2B) or epoch seconds"
