"""How StreamPulse connects to Redis: the worker's sink, the API and the readiness check all
build their clients here, from the settings.

The URL (which may carry an ACL user and password) is read only here. ``rediss://`` turns TLS
on; redis-py then verifies the server certificate and its host name, against
``REDIS_SSL_CAFILE`` when set (a private CA), else the system store.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis

from app.settings import Settings


def connection_kwargs(settings: Settings, **timeouts: Any) -> dict[str, Any]:
    """Options for redis-py's ``from_url``: TLS verification plus the caller's timeouts and pool options."""
    kwargs = dict(timeouts)
    if settings.redis_dsn.startswith("rediss://"):
        kwargs.update(ssl_cert_reqs="required", ssl_check_hostname=True)
        if settings.redis_ssl_cafile is not None:
            kwargs["ssl_ca_certs"] = str(settings.redis_ssl_cafile)
    return kwargs


def redis_client(settings: Settings, **options: Any) -> Redis:
    """A client with its own connection pool; ``options`` are redis-py's (timeouts, retry)."""
    return Redis.from_url(settings.redis_dsn, **connection_kwargs(settings, **options))


def redis_blocking_pool(settings: Settings, **options: Any) -> Redis:
    """A client over a bounded pool whose callers wait for a free connection (the API)."""
    pool = BlockingConnectionPool.from_url(settings.redis_dsn, **connection_kwargs(settings, **options))
    return Redis(connection_pool=pool)
