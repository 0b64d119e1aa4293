"""Fixtures of the fault suite: the shared stack's fixtures, workers and private stacks torn down by pid."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.procs import Proc, Worker
from tests.faults.harness import PrivateStack
from tests.integration.conftest import app_id, sp_env, stack

__all__ = ["app_id", "sp_env", "stack"]


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    """Workers a test starts; each is stopped (SIGTERM, then SIGKILL) at teardown."""
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.proc.stop(timeout=10)


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Other processes a test starts (replayers, redis-servers), stopped by pid at teardown."""
    started: list[Proc] = []
    yield started
    for proc in started:
        proc.stop(timeout=10)


@pytest.fixture
def private_stack(tmp_path: Path) -> Iterator[PrivateStack]:
    """A fresh Kafka broker + Redis of this test alone; `stack.sh down` with the same env at teardown."""
    stack = PrivateStack(tmp_path / "stack")
    try:
        stack.up()
        yield stack
    finally:
        stack.down()
