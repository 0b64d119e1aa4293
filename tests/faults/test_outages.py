"""Outages of the services the pipeline depends on, while events flow.

The broker is a private one (this test stops and kills it); Redis is a private redis-server. The
replayer and the worker must ride through either outage and end with the reference's windows.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from support.procs import (
    Proc,
    RedisServer,
    StackInfo,
    Worker,
    launch_worker,
    metric_values,
    start_replay,
    wait_for,
    wait_worker_ready,
)
from tests.faults.harness import (
    PrivateStack,
    fault_env,
    late_records,
    not_idle_marker,
    topic_of,
    worker_log_problems,
)
from tests.integration.pipeline import assert_exact, generate_canonical

OUTAGE_S = 30
REDIS_OUTAGE_S = 90
IDLE_TIMEOUT = "10s"


def _hold(seconds: float, worker: Worker, what: str) -> None:
    """Let an outage last ``seconds``, failing as soon as the worker dies during it."""
    end = time.monotonic() + seconds

    def over() -> bool:
        if not worker.proc.alive():
            raise AssertionError(f"worker exited during {what}:\n{worker.proc.output()[-3000:]}")
        return time.monotonic() >= end

    wait_for(over, seconds + 5, interval=0.5, what=what)


def _worker_and_feed(
    env: dict[str, str],
    tmp: Path,
    workers: list[Worker],
    procs: list[Proc],
    events: int,
    seed: int,
    rate: int,
) -> tuple[Worker, Proc]:
    """A ready worker and a slow replay of generated events into it (an outage happens mid-replay),
    both stopped by the fixtures at teardown."""
    data = tmp / "events.jsonl"
    generate_canonical(data, events, seed=seed, regions=10)
    worker = launch_worker(env, tmp, "w1")
    workers.append(worker)
    wait_worker_ready(worker.proc)
    feeder = start_replay(env, tmp, str(data), "--rate", str(rate), "--rejects", str(tmp / "rej.jsonl"))
    procs.append(feeder)
    return worker, feeder


def _processes_more(worker: Worker, feeder: Proc, events: int, timeout: float, what: str) -> None:
    """Wait for ``events`` more processed events; on a timeout the failure carries both logs' tails."""
    start = worker.processed()
    try:
        wait_for(lambda: worker.processed() > start + events, timeout, what=what)
    except AssertionError as exc:
        logs = f"--- worker ---\n{worker.proc.output()[-8000:]}\n--- replayer ---\n{feeder.output()[-2000:]}"
        raise AssertionError(f"{exc}\n{logs}") from None


def test_broker_stopped_and_killed_for_30s_mid_replay(
    private_stack: PrivateStack,
    app_id: str,
    sp_env: dict[str, str],
    tmp_path: Path,
    workers: list[Worker],
    procs: list[Proc],
) -> None:
    """SIGTERM (clean shutdown) then SIGKILL (no shutdown at all) of the broker, 30 s each."""
    info = private_stack.info
    env = fault_env(sp_env, info)
    # 200 s of replay: two 30 s outages, the broker's restarts and the checks between them fit in
    # it with room to spare on a loaded machine, so the replay is still running at each outage.
    worker, feeder = _worker_and_feed(env, tmp_path, workers, procs, 12_000, seed=404, rate=60)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        _processes_more(worker, feeder, 200, 60, "processing before the outage")
        assert feeder.alive(), feeder.output()[-2000:]
        private_stack.kill("kafka", sig)
        _hold(OUTAGE_S, worker, f"the broker outage ({sig.name})")
        private_stack.up()
        assert feeder.alive(), (
            f"the replayer did not ride through the {sig.name} outage: {feeder.output()[-1500:]}"
        )
        _processes_more(worker, feeder, 100, 90, f"processing after the {sig.name} outage")
    wait_for(lambda: not feeder.alive(), 240, what="the replay to finish")
    assert feeder.popen.returncode == 0, f"the replayer did not ride through: {feeder.output()[-2000:]}"
    assert_exact(info, app_id, topic_of(app_id, "events"), timeout=120)
    assert worker.proc.alive()
    assert not worker_log_problems(worker.proc.output()), worker_log_problems(worker.proc.output())[:5]


def _members(bootstrap: str, group: str) -> list[str]:
    """Member ids of the group: the same id before and after an outage means it never left."""

    async def _describe() -> list[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
        await admin.start()
        try:
            responses = await admin.describe_consumer_groups([group])
        finally:
            await admin.close()
        return sorted(member[0] for resp in responses for g in resp.groups for member in g[5])

    return asyncio.run(_describe())


def test_redis_down_90s_closes_no_window_early_and_loses_nothing(
    stack: StackInfo,
    app_id: str,
    sp_env: dict[str, str],
    tmp_path: Path,
    workers: list[Worker],
    procs: list[Proc],
) -> None:
    """Longer than IDLE_TIMEOUT and the session timeout: no idle marker behind a backlog, no rebalance."""
    redis = RedisServer(tmp_path / "redis", persistent=True)
    info = StackInfo(stack.bootstrap, redis.url)
    env = fault_env(sp_env, info, idle_timeout=IDLE_TIMEOUT)
    procs.append(redis.start())
    worker, feeder = _worker_and_feed(env, tmp_path, workers, procs, 6000, seed=505, rate=50)
    wait_for(lambda: worker.processed() > 300, 60, what="processing before the outage")
    members = _members(stack.bootstrap, app_id)
    assert len(members) == 1, members
    redis.stop()
    _hold(REDIS_OUTAGE_S, worker, "the Redis outage")
    assert feeder.alive(), "the outage must happen while events flow"
    assert sum(metric_values(worker.port, "streampulse_sink_errors_total")) > 0, (
        "the sink never saw the outage"
    )
    procs.append(redis.start())
    assert _members(stack.bootstrap, app_id) == members, "the worker left the group during the outage"
    wait_for(lambda: not feeder.alive(), 180, what="the replay to finish")
    assert feeder.popen.returncode == 0, feeder.output()[-2000:]
    # The reference ignores idle markers: none may be needed (events never stop), so the windows
    # and the late events must be what the replayer's records alone give.
    ref = assert_exact(info, app_id, topic_of(app_id, "events"), timeout=120, keep=not_idle_marker)
    late = late_records(stack.bootstrap, topic_of(app_id, "events-late"), len(ref.late))
    assert late == ref.late, f"late but not per the reference: {sorted(late - ref.late)[:10]}"
    assert worker.proc.alive()
    assert _members(stack.bootstrap, app_id) == members
