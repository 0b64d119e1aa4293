"""A fresh app id, or a fresh broker with the demo's default app id, works within seconds.

The worker and the replayer are started together, as a new user does, so a worker that
subscribes before its topics exist in the broker's metadata (and then waits for the consumer's
five-minute metadata refresh) misses the 30 s bound.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from support.procs import Proc, StackInfo, Worker, launch_worker, start_replay, wait_for
from tests.faults.harness import (
    PrivateStack,
    fault_env,
    first_final_window,
    topic_of,
    worker_log_problems,
)
from tests.integration.pipeline import assert_exact, generate_canonical

FIRST_FINAL_WITHIN_S = 30


def _fresh_start(
    info: StackInfo, env: dict[str, str], app_id: str, tmp: Path, workers: list[Worker], procs: list[Proc]
) -> None:
    data = tmp / "fresh.jsonl"
    generate_canonical(data, 400, seed=101, regions=6)
    started = time.monotonic()
    workers.append(launch_worker(env, tmp, "w1"))
    procs.append(start_replay(env, tmp, str(data), "--rejects", str(tmp / "rejects.jsonl")))
    worker = workers[-1]

    def first_final() -> bool:
        if not worker.proc.alive():
            raise AssertionError(f"worker exited:\n{worker.proc.output()[-3000:]}")
        return first_final_window(info.redis_url, app_id)

    wait_for(first_final, FIRST_FINAL_WITHIN_S + 15, interval=0.25, what="the first final window")
    took = time.monotonic() - started
    assert took <= FIRST_FINAL_WITHIN_S, f"first final window {took:.1f}s after the worker's start"
    wait_for(lambda: not procs[-1].alive(), 60, what="the replay to finish")
    assert procs[-1].popen.returncode == 0, procs[-1].output()[-2000:]
    assert_exact(info, app_id, topic_of(app_id, "events"), timeout=60)
    assert not worker_log_problems(worker.proc.output()), worker_log_problems(worker.proc.output())[:5]
    assert worker.proc.alive()


def test_new_app_id_gets_its_first_final_window_within_30s(
    stack: StackInfo,
    app_id: str,
    sp_env: dict[str, str],
    tmp_path: Path,
    workers: list[Worker],
    procs: list[Proc],
) -> None:
    _fresh_start(stack, fault_env(sp_env), app_id, tmp_path, workers, procs)


def test_default_app_id_on_a_fresh_broker_gets_its_first_final_window_within_30s(
    private_stack: PrivateStack,
    sp_env: dict[str, str],
    tmp_path: Path,
    workers: list[Worker],
    procs: list[Proc],
) -> None:
    """The demo's path: app id ``streampulse``, bare topic names, a broker that has never seen them."""
    env = fault_env(sp_env, private_stack.info, app_id="streampulse")
    _fresh_start(private_stack.info, env, "streampulse", tmp_path, workers, procs)


def test_a_worker_started_while_the_broker_is_down_waits_for_it(
    private_stack: PrivateStack,
    app_id: str,
    sp_env: dict[str, str],
    tmp_path: Path,
    workers: list[Worker],
    procs: list[Proc],
) -> None:
    """Provisioning the topics is retried for as long as the broker cannot answer: the worker
    does not exit, says that it is retrying, and works exactly once the broker is back."""
    info = private_stack.info
    env = fault_env(sp_env, info)
    private_stack.kill("kafka", signal.SIGTERM)
    workers.append(launch_worker(env, tmp_path, "w1"))
    worker = workers[-1]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert worker.proc.alive(), f"worker exited without a broker:\n{worker.proc.output()[-3000:]}"
        time.sleep(0.5)
    assert "provisioning the topics failed" in worker.proc.output()
    private_stack.up()
    data = tmp_path / "late-broker.jsonl"
    generate_canonical(data, 400, seed=111, regions=6)
    procs.append(start_replay(env, tmp_path, str(data), "--rejects", str(tmp_path / "rejects.jsonl")))
    wait_for(lambda: not procs[-1].alive(), 120, what="the replay to finish")
    assert procs[-1].popen.returncode == 0, procs[-1].output()[-2000:]
    assert_exact(info, app_id, topic_of(app_id, "events"), timeout=120)
    assert worker.proc.alive()
