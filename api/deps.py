"""Request dependencies: the shared Redis pool, settings, zone lookup and validated parameters.

Everything per process lives on ``app.state`` (set by :func:`api.main.create_app` and its lifespan)
rather than in module globals, so tests can run several apps with different settings side by side.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.exceptions import RequestValidationError

from api.store import WindowStore
from api.timeparse import parse_time_ms
from app.redis_client import RedisClient
from app.settings import Settings
from app.zones import ZoneLookup
from tables.windows import WindowSize

MAX_REGION_ID = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Serving:
    """What the data routes read with, resolved as one dependency: at 1,000 requests/s every
    dependency FastAPI resolves per request is a measurable share of the latency budget."""

    store: WindowStore
    zones: ZoneLookup
    windows: Mapping[str, WindowSize]

    def window(self, name: str) -> WindowSize:
        """The configured size called ``name``, or a 422 listing the configured ones."""
        size = self.windows.get(name)
        if size is None:
            raise invalid_param(
                "window", f"window must be one of {', '.join(self.windows)} (got {name!r})", name
            )
        return size


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_redis(request: Request) -> RedisClient:
    redis: RedisClient = request.app.state.redis
    return redis


async def get_serving(request: Request) -> Serving:
    serving: Serving = request.app.state.serving
    return serving


SettingsDep = Annotated[Settings, Depends(get_settings)]
RedisDep = Annotated[RedisClient, Depends(get_redis)]
ServingDep = Annotated[Serving, Depends(get_serving)]


def invalid_param(name: str, message: str, value: object, where: str = "query") -> RequestValidationError:
    """A 422 in the same shape as FastAPI's own validation errors, naming the parameter."""
    return RequestValidationError(
        [{"type": "value_error", "loc": (where, name), "msg": message, "input": value}]
    )


def allowed_windows(request: Request) -> str:
    return ", ".join(request.app.state.windows)


def parse_time_param(name: str, value: str | None) -> int | None:
    """Epoch ms of an optional time parameter, or a 422 naming it."""
    if value is None:
        return None
    try:
        return parse_time_ms(value)
    except ValueError as exc:
        raise invalid_param(name, f"{name}: {exc}", value) from None


WindowParam = Annotated[str, Query(description="Window size: one of the configured sizes", examples=["1m"])]
RegionIdPath = Annotated[
    int,
    Path(description="Region id (TLC LocationID), an integer >= 0", ge=0, le=MAX_REGION_ID, examples=[161]),
]
TIME_FORMATS = "ISO-8601 (Z or an offset; a naive time is UTC; encode '+' as %2B) or epoch seconds"
