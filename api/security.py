"""Closing the API: optional API keys, a per-client rate limit, and CORS origins.

All three are off by default (the local demo is open) and configured by ``API_KEYS``,
``RATE_LIMIT`` and ``CORS_ORIGINS``. Keys and the limit are one ASGI middleware in front of every
route but ``/health`` and ``/ready``, which load balancers and orchestrators probe without
credentials. The dashboard's page and assets need no key either: they are the same files for
everyone and hold no data, and a browser must load them before the page can ask for a key (every
number it then shows comes from the data routes, with the key). It is plain ASGI rather than a
route dependency so that ``/docs``, ``/openapi.json`` and ``/metrics`` are covered too, and
rather than Starlette's ``BaseHTTPMiddleware``, which costs a task per request on the API's hot
path. The limit itself is the ``limits`` library's moving window.
"""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Iterable

import orjson
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.readiness import READY_PATH
from app.settings import Settings

#: Routes reachable without a key and never rate limited: the probes (they carry no key).
OPEN_PATHS = frozenset({"/health", READY_PATH})
#: The dashboard (``api/routes/dashboard.py``): reachable without a key, rate limited by address.
DASHBOARD_PAGE = "/"
DASHBOARD_ASSETS = "/static/"
API_KEY_HEADER = b"x-api-key"


class AccessMiddleware:
    """401 without a valid key (when keys are configured), 429 past the per-client limit.

    A client is its API key when keys are on (several hosts behind one NAT share nothing), else
    its address. Keys are compared in constant time so response timing does not leak them.
    """

    def __init__(self, app: ASGIApp, keys: Iterable[str], limits: Iterable[RateLimitItem]) -> None:
        self.app = app
        self.keys = [key.encode() for key in keys]
        self.limits = list(limits)
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        client = "-"
        path = scope["path"]
        if self.keys and not (path == DASHBOARD_PAGE or path.startswith(DASHBOARD_ASSETS)):
            presented = _presented_key(scope)
            if presented is None or not any(hmac.compare_digest(presented, key) for key in self.keys):
                await _reply(send, 401, "missing or invalid API key", {b"www-authenticate": b"Bearer"})
                return
            client = "key:" + presented.decode(errors="replace")
        elif scope.get("client"):
            client = "addr:" + str(scope["client"][0])
        for item in self.limits:
            if not self.limiter.hit(item, client):
                reset_at, _ = self.limiter.get_window_stats(item, client)
                retry_after = max(1, math.ceil(reset_at - time.time()))
                await _reply(
                    send, 429, f"rate limit exceeded ({item})", {b"retry-after": str(retry_after).encode()}
                )
                return
        await self.app(scope, receive, send)


def _presented_key(scope: Scope) -> bytes | None:
    """The key from ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return bytes(token.strip())
        elif name == API_KEY_HEADER and value.strip():
            return bytes(value.strip())
    return None


async def _reply(send: Send, status: int, detail: str, headers: dict[bytes, bytes]) -> None:
    body = orjson.dumps({"detail": detail})
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *headers.items(),
        ],
    }
    await send(start)
    await send({"type": "http.response.body", "body": body})


def install(app: FastAPI, settings: Settings) -> None:
    """Add the access middleware and, outside it, CORS: a browser's preflight is answered
    without a key, and a 401 or 429 still carries the CORS headers the page needs to read it."""
    keys = settings.api_key_set
    limits = parse_many(settings.rate_limit) if settings.rate_limit else []
    if keys or limits:
        app.add_middleware(AccessMiddleware, keys=keys, limits=limits)
    origins = settings.cors_origin_list
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET"],
            allow_headers=["Authorization", "X-API-Key"],
            expose_headers=["Retry-After"],
        )
