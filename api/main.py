"""The FastAPI app: ``uvicorn api.main:app`` (``make api``).

:func:`create_app` takes the settings so tests can run an app against another Redis or app id;
the module-level ``app`` reads them from the environment, so a bad value fails at start-up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from api import errors, security
from api.deps import Serving
from api.metrics import MetricsMiddleware
from api.push import BLOCK_MS, UpdatesHub
from api.routes import city, dashboard, health, pipeline, prometheus, regions, stream, top, windows
from api.store import WindowStore
from app.logs import configure_logging
from app.redis_client import RedisClient, redis_blocking_pool, redis_client
from app.redis_keys import RedisKeys
from app.settings import Settings, get_settings
from app.version import package_version
from app.zones import load_zones

log = logging.getLogger(__name__)

#: Short timeouts so a dead or unreachable Redis turns into a 503 within about a second instead of
#: holding requests; connecting locally takes well under a millisecond when Redis is up.
REDIS_CONNECT_TIMEOUT_S = 0.5
REDIS_SOCKET_TIMEOUT_S = 1.0
#: One immediate retry replaces a pooled connection that died with a Redis restart, so the first
#: request after Redis returns succeeds; more retries would only delay the 503.
REDIS_RETRIES = 1
#: Bounded pool: under a burst, requests wait up to REDIS_POOL_TIMEOUT_S for a connection
#: rather than opening thousands of sockets.
REDIS_MAX_CONNECTIONS = 64
REDIS_POOL_TIMEOUT_S = 1.0

DESCRIPTION = """Windowed trip aggregates per region, served from Redis as the StreamPulse worker writes them.

Times are accepted as ISO-8601 (`Z` or an offset; a naive time is UTC) or epoch seconds, and returned as
ISO-8601 UTC. Errors are JSON `{"detail": ...}`: 422 names the invalid parameter and the allowed values,
404 means no data, 503 means Redis is unreachable (retry after `Retry-After`)."""


def redis_pool(settings: Settings) -> RedisClient:
    return redis_blocking_pool(
        settings,
        replicas=True,
        max_connections=REDIS_MAX_CONNECTIONS,
        timeout=REDIS_POOL_TIMEOUT_S,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S,
        socket_timeout=REDIS_SOCKET_TIMEOUT_S,
        retry=Retry(NoBackoff(), REDIS_RETRIES),
    )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    zones = await asyncio.to_thread(load_zones, settings.zones_file)
    redis = redis_pool(settings)
    app.state.redis = redis
    # Its own connections: each window size's reader blocks on one for up to BLOCK_MS.
    push_redis = redis_client(
        settings,
        replicas=True,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S,
        socket_timeout=BLOCK_MS / 1000 + 5,
    )
    app.state.updates = UpdatesHub(push_redis, RedisKeys(settings.app_id), settings.push_client_buffer)
    app.state.serving = Serving(
        WindowStore(redis, RedisKeys(settings.app_id), settings.max_future_ms), zones, app.state.windows
    )
    app.state.started_ms = int(time.time() * 1000)
    try:
        await redis.ping()
    except RedisError as exc:
        log.warning(
            "Redis at %s is not answering yet (%s); serving 503 until it does",
            settings.redis_url_masked,
            exc,
        )
    try:
        yield
    finally:
        await app.state.updates.close()
        await push_redis.aclose()
        await redis.aclose()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="StreamPulse API",
        version=package_version(),
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.windows = {size.name: size for size in settings.window_sizes}
    errors.install(app)
    app.add_middleware(MetricsMiddleware)
    security.install(app, settings)
    for module in (windows, top, regions, health, prometheus, city, pipeline, stream, dashboard):
        app.include_router(module.router)
    app.openapi = _openapi(app, settings)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI, settings: Settings) -> Callable[[], dict[str, Any]]:
    """The schema with ``window`` restricted to the configured sizes, known only at start-up."""
    names = [size.name for size in settings.window_sizes]

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            for path in schema["paths"].values():
                for operation in path.values():
                    for param in operation.get("parameters", []):
                        if param["name"] == "window":
                            param["schema"].update(enum=names, examples=names[:1])
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi


# uvicorn has configured its own logging by the time it loads this module: this replaces it.
configure_logging(get_settings())
app = create_app()
