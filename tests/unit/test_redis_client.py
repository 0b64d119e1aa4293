"""Which Redis client the settings select, and the cluster settings' rules (nothing connects here:
redis-py's clients connect on their first command)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from redis.asyncio import Redis, RedisCluster

from app.redis_client import redis_blocking_pool, redis_client
from app.settings import Settings


def test_one_redis_by_default() -> None:
    client = redis_client(Settings(redis_url="redis://127.0.0.1:6399/0"))
    assert isinstance(client, Redis)


async def test_cluster_setting_selects_the_cluster_client_for_writers_and_readers() -> None:
    settings = Settings(redis_url="redis://127.0.0.1:6399/0", redis_cluster=True)
    writer = redis_client(settings)
    reader = redis_blocking_pool(settings, max_connections=8, timeout=1.0, replicas=True)
    assert isinstance(writer, RedisCluster) and isinstance(reader, RedisCluster)
    assert reader.load_balancing_strategy is None, "replica reads are off unless asked for"
    await writer.aclose()
    await reader.aclose()


async def test_replica_reads_only_for_a_reader_that_asks() -> None:
    settings = Settings(
        redis_url="redis://127.0.0.1:6399/0", redis_cluster=True, redis_read_from_replicas=True
    )
    reader = redis_client(settings, replicas=True)
    sink = redis_client(settings)
    assert isinstance(reader, RedisCluster) and isinstance(sink, RedisCluster)
    assert reader.load_balancing_strategy is not None
    assert sink.load_balancing_strategy is None
    await reader.aclose()
    await sink.aclose()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"redis_read_from_replicas": True}, "REDIS_READ_FROM_REPLICAS needs"),
        ({"redis_cluster": True, "redis_url": "unix:///tmp/redis.sock"}, "REDIS_CLUSTER needs a redis://"),
    ],
)
def test_cluster_settings_that_cannot_work_fail_at_start_up(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**values)  # type: ignore[arg-type]
