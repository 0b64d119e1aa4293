"""The real stack for integration tests: reuses `make up`'s Kafka + Redis or starts them.

Each test gets its own app id (so its own topics, consumer group, RocksDB dir and Redis keys);
processes a test starts are stopped by pid at teardown.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from app.redis_keys import RedisKeys
from support.procs import ROOT, Proc, StackInfo, ready

STACK = ROOT / "scripts" / "stack.sh"


@pytest.fixture(scope="session")
def stack() -> Iterator[StackInfo]:
    """Session-wide Kafka + Redis; stops at the end only what this session started."""
    already = ready("kafka") and ready("redis")
    if not already:
        subprocess.run([str(STACK), "up"], check=True, cwd=ROOT)
    info = StackInfo(
        bootstrap=os.environ.get("STREAMPULSE_KAFKA_BOOTSTRAP", "localhost:9092"),
        redis_url=os.environ.get("STREAMPULSE_REDIS_URL", "redis://localhost:6379/0"),
    )
    yield info
    if not already:
        subprocess.run([str(STACK), "down"], check=False, cwd=ROOT)


@pytest.fixture
def app_id(stack: StackInfo) -> Iterator[str]:
    """A fresh app id; its Redis keys are deleted afterwards. A long-lived local Redis is capped
    (``maxmemory``, evicting the keys nearest expiry), so keys left by earlier tests would
    otherwise fill it and evict a running test's windows."""
    app = f"t{uuid.uuid4().hex[:10]}"
    yield app
    client = redis.Redis.from_url(stack.redis_url)
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{RedisKeys(app).prefix}*", count=1000):
            batch.append(key)
            if len(batch) == 1000:
                client.unlink(*batch)
                batch = []
        if batch:
            client.unlink(*batch)
    except redis.RedisError:
        pass  # a test that stopped Redis for good: nothing to clean
    finally:
        client.close()


@pytest.fixture
def sp_env(stack: StackInfo, app_id: str, tmp_path: Path) -> dict[str, str]:
    """Environment for subprocesses (worker, replayer, API) isolated to this test's app id."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMPULSE_")}
    env.update(
        STREAMPULSE_KAFKA_BOOTSTRAP=stack.bootstrap,
        STREAMPULSE_REDIS_URL=stack.redis_url,
        STREAMPULSE_APP_ID=app_id,
        STREAMPULSE_PARTITIONS="4",
        STREAMPULSE_DATA_DIR=str(tmp_path / "worker-data"),
        PYTHONPATH=str(ROOT),
        PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
    )
    return env


@pytest.fixture
def processes() -> Iterator[list[Proc]]:
    """Processes a test starts (APIs, redis-servers, replayers), stopped by pid, last first."""
    started: list[Proc] = []
    yield started
    for proc in reversed(started):
        proc.stop(20)
