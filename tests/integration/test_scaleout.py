"""Scale-out: 1, 2 and 4 real workers in one consumer group on 8 partitions give the reference's
windows, and each of them does part of the work.

Four workers on this two-core machine is a correctness test, not a speed one: it checks that the
partitions, their RocksDB state and the sink split cleanly however many workers share them.
Every run has its own app id (so its own topics and consumer group).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.readiness import READY_PATH, probe
from support.kafka import read_topic
from support.procs import StackInfo, Worker, launch_worker, wait_for
from support.reference import reference_windows
from tests.integration.pipeline import (
    assert_matches_reference,
    replay,
    sorted_tlc_sample,
    wait_final_windows,
)

PARTITIONS = 8


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    running: list[Worker] = []
    yield running
    for worker in running:
        worker.proc.stop()


def _all_assigned(group: list[Worker]) -> bool:
    """Every worker ready (joined, not rebalancing, state recovered) with partitions of its own."""
    for worker in group:
        if not worker.proc.alive():
            raise AssertionError(f"worker exited:\n{worker.proc.output()[-3000:]}")
        status, body = probe(f"http://127.0.0.1:{worker.port}{READY_PATH}", timeout=2)
        if status != 200 or not body or not body.get("partitions"):
            return False
    return True


@pytest.mark.parametrize("count", [1, 2, 4])
def test_workers_on_eight_partitions_equal_the_reference(
    stack: StackInfo,
    app_id: str,
    sp_env: dict[str, str],
    tmp_path: Path,
    workers: list[Worker],
    count: int,
) -> None:
    env = dict(sp_env, STREAMPULSE_PARTITIONS=str(PARTITIONS))
    workers.extend(launch_worker(env, tmp_path, f"w{i}") for i in range(count))
    wait_for(lambda: _all_assigned(workers), 180, interval=1, what=f"{count} workers sharing the partitions")

    replay(env, str(sorted_tlc_sample(tmp_path / "sample.csv")), "--rejects", str(tmp_path / "rejects.jsonl"))
    records = read_topic(stack.bootstrap, f"{app_id}.events")
    assert len({r.partition for r in records}) == PARTITIONS, "the sample must reach every partition"
    ref = reference_windows(records)
    got = wait_final_windows(stack.redis_url, app_id, len(ref.windows), timeout=180)
    assert_matches_reference(got, ref)
    processed = [worker.processed() for worker in workers]
    assert all(n > 0 for n in processed), f"a worker processed nothing: {processed}"
