"""The API's Prometheus metrics, served at ``GET /metrics``.

Labels stay bounded: the route is the template (``/metrics/region/{region_id}``, never the id),
requests that match no route share ``route="unmatched"``, and Redis operations are a fixed set of
names chosen in :mod:`api.store`. Buckets start at 0.5 ms because the latency target is 10 ms p99.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics
from starlette.types import ASGIApp, Message, Receive, Scope, Send

disable_created_metrics()  # like the worker's (app/metrics.py, docs/monitoring.md)

API_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
REDIS_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0)
UNMATCHED = "unmatched"
#: Routes whose responses last as long as the client stays (push): their duration is not latency.
LONG_LIVED_ROUTES = frozenset({"/stream"})
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})

REQUESTS = Counter(
    "streampulse_api_requests_total",
    "HTTP requests by route template, method and status",
    ["route", "method", "status"],
)
REQUEST_SECONDS = Histogram(
    "streampulse_api_request_duration_seconds",
    "Time from request to the end of the response, by route template and method",
    ["route", "method"],
    buckets=API_BUCKETS,
)
REDIS_SECONDS = Histogram(
    "streampulse_api_redis_call_duration_seconds",
    "Duration of one Redis round trip (command or pipeline) made by the API, by operation",
    ["operation"],
    buckets=REDIS_BUCKETS,
)
REDIS_ERRORS = Counter(
    "streampulse_api_redis_errors_total", "Redis round trips that failed, by operation", ["operation"]
)
PUSH_SECONDS = Histogram(
    "streampulse_api_push_latency_seconds",
    "From the sink's Redis write of a window update to its sending to a /stream subscriber",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
PUSH_SUBSCRIBERS = Gauge("streampulse_api_push_subscribers", "Open /stream connections")
PUSH_DROPPED = Counter(
    "streampulse_api_push_dropped_total", "/stream subscribers dropped because they read too slowly"
)
INVALID_STORED = Counter(
    "streampulse_api_invalid_stored_windows_total",
    "Windows read from Redis that were malformed or stored under another window's key, and ignored",
)


# Label lookups hash and lock on every call; the label sets are few and fixed, so keep the children.
_redis_seconds = lru_cache(maxsize=64)(REDIS_SECONDS.labels)
_requests = lru_cache(maxsize=1024)(REQUESTS.labels)
_request_seconds = lru_cache(maxsize=256)(REQUEST_SECONDS.labels)


@contextmanager
def redis_call(operation: str) -> Iterator[None]:
    """Time one Redis round trip; a failure is counted and re-raised for the error handlers."""
    started = time.perf_counter()
    try:
        yield
    except Exception:
        REDIS_ERRORS.labels(operation).inc()
        raise
    finally:
        _redis_seconds(operation).observe(time.perf_counter() - started)


class MetricsMiddleware:
    """Pure ASGI (not ``BaseHTTPMiddleware``), so it adds no task or queue per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            method = scope["method"] if scope["method"] in _METHODS else "other"
            _requests(route, method, str(status)).inc()
            if route not in LONG_LIVED_ROUTES:
                _request_seconds(route, method).observe(time.perf_counter() - started)
