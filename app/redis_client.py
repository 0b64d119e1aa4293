"""How StreamPulse connects to Redis: the worker's sink, the API and the readiness check all
build their clients here, from the settings.

The URL (which may carry an ACL user and password) is read only here. ``rediss://`` turns TLS
on; redis-py then verifies the server certificate and its host name, against
``REDIS_SSL_CAFILE`` when set (a private CA), else the system store.

``REDIS_CLUSTER`` selects redis-py's cluster client, which learns the slot map from the node the
URL names and sends each command to the node owning its key's slot; every script and pipeline
StreamPulse sends touches one slot (see :mod:`app.redis_keys`). Only readers (the API) may ask
for ``REDIS_READ_FROM_REPLICAS``: plain reads then go round-robin over a slot's primary and
replicas, seeing a replica's slight replication lag; scripts always run on the primary.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.cluster import LoadBalancingStrategy

from app.settings import Settings

#: Either client: both expose the commands, scripts and pipelines StreamPulse uses.
RedisClient = Redis | RedisCluster


def connection_kwargs(settings: Settings, **timeouts: Any) -> dict[str, Any]:
    """Options for redis-py's ``from_url``: TLS verification plus the caller's timeouts and pool options."""
    kwargs = dict(timeouts)
    if settings.redis_dsn.startswith("rediss://"):
        kwargs.update(ssl_cert_reqs="required", ssl_check_hostname=True)
        if settings.redis_ssl_cafile is not None:
            kwargs["ssl_ca_certs"] = str(settings.redis_ssl_cafile)
    return kwargs


def redis_client(settings: Settings, *, replicas: bool = False, **options: Any) -> RedisClient:
    """A client with its own connections; ``options`` are redis-py's (timeouts, retry).
    ``replicas``: reads may go to replicas, when the settings allow it (a reader's client)."""
    if settings.redis_cluster:
        return _cluster(settings, replicas, **options)
    return Redis.from_url(settings.redis_dsn, **connection_kwargs(settings, **options))


def redis_blocking_pool(
    settings: Settings, *, max_connections: int, timeout: float, replicas: bool = False, **options: Any
) -> RedisClient:
    """A client over a bounded pool (the API). On one Redis, callers wait up to ``timeout`` s for
    a free connection; the cluster client bounds each node's pool at ``max_connections`` and
    fails a command that finds it full (redis-py has no waiting pool for clusters)."""
    if settings.redis_cluster:
        return _cluster(settings, replicas, max_connections=max_connections, **options)
    pool = BlockingConnectionPool.from_url(
        settings.redis_dsn,
        **connection_kwargs(settings, max_connections=max_connections, timeout=timeout, **options),
    )
    return Redis.from_pool(pool)


def _cluster(settings: Settings, replicas: bool, **options: Any) -> RedisCluster:
    if replicas and settings.redis_read_from_replicas:
        options["load_balancing_strategy"] = LoadBalancingStrategy.ROUND_ROBIN
    return RedisCluster.from_url(settings.redis_dsn, **connection_kwargs(settings, **options))
