"""Workers dying at the worst moments: before their first commit, and at chosen points of a batch.

A survivor (or a replacement on an empty data dir, so only the changelog can give it the state)
must end with exactly the reference's windows.
"""

from __future__ import annotations

import os
import re
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from support.procs import Proc, StackInfo, Worker, launch_worker, start_replay, wait_for, wait_worker_ready
from tests.faults.harness import committed_offsets, fault_env, topic_of, worker_log_problems
from tests.integration.pipeline import assert_exact, generate_canonical

#: Repetitions of the kill-before-first-commit case; every one must be exact.
REPETITIONS = int(os.environ.get("STREAMPULSE_FAULT_REPETITIONS", "20"))
#: Attempts at one repetition whose victim committed before it died (that attempt tests nothing).
ATTEMPTS = 4
PARALLEL = int(os.environ.get("STREAMPULSE_FAULT_PARALLEL", "2"))
_RECOVERED = re.compile(r"partition (\d+): \d+ open windows recovered")


def _killed_before_commit(
    stack: StackInfo, base: dict[str, str], app_id: str, tmp: Path, data: Path, workers: list[Worker]
) -> bool:
    """One repetition; False when the victim had committed before the kill (so: try again)."""
    env = dict(base, STREAMPULSE_APP_ID=app_id)
    survivor = launch_worker(env, tmp, f"{app_id}-a")
    victim = launch_worker(env, tmp, f"{app_id}-b")
    workers.extend((survivor, victim))
    wait_worker_ready(survivor.proc)
    wait_worker_ready(victim.proc)
    feeder = start_replay(env, tmp, str(data), "--rejects", str(tmp / f"{app_id}-rejects.jsonl"))
    try:

        def victim_processing() -> bool:
            if not victim.proc.alive():
                raise AssertionError(f"victim exited:\n{victim.proc.output()[-3000:]}")
            return victim.processed() > 0 or bool(_RECOVERED.search(victim.proc.output()))

        wait_for(victim_processing, 60, interval=0.05, what="the second worker to process events")
        victim.proc.kill(signal.SIGKILL)
        victim.proc.popen.wait(10)
        owned = {int(p) for p in _RECOVERED.findall(victim.proc.output())}
        committed = committed_offsets(stack.bootstrap, app_id, topic_of(app_id, "events"))
        if not owned or owned & set(committed):
            return False
        wait_for(lambda: not feeder.alive(), 60, what="the replay to finish")
        assert feeder.popen.returncode == 0, feeder.output()[-2000:]
    finally:
        feeder.stop()
    assert_exact(stack, app_id, topic_of(app_id, "events"), timeout=60)
    assert survivor.proc.alive(), survivor.proc.output()[-3000:]
    assert not worker_log_problems(survivor.proc.output()), worker_log_problems(survivor.proc.output())[:5]
    survivor.proc.kill(signal.SIGKILL)  # done with it; a clean shutdown would only cost time
    survivor.proc.stop(timeout=10)
    return True


def _repetition(
    stack: StackInfo, base: dict[str, str], app_id: str, tmp: Path, data: Path, workers: list[Worker]
) -> int:
    """One repetition, retried while the victim had committed before it died; returns the retries."""
    for attempt in range(ATTEMPTS):
        if _killed_before_commit(stack, base, f"{app_id}a{attempt}", tmp, data, workers):
            return attempt
    raise AssertionError(f"{app_id}: the victim had committed before every one of {ATTEMPTS} kills")


def test_a_worker_killed_before_its_first_commit_loses_nothing_twenty_times(
    stack: StackInfo, app_id: str, sp_env: dict[str, str], tmp_path: Path, workers: list[Worker]
) -> None:
    """The survivor takes over partitions that never had a committed offset: nothing stalls or is skipped."""
    data = tmp_path / "events.jsonl"
    generate_canonical(data, 400, seed=202, regions=16)
    base = fault_env(sp_env)
    # Two repetitions at a time (each its own app id, so its own group and topics): a repetition
    # is mostly waiting (start-up, the session timeout), and twenty in a row would take minutes.
    with ThreadPoolExecutor(PARALLEL) as pool:
        runs = [
            pool.submit(_repetition, stack, base, f"{app_id}r{rep}", tmp_path, data, workers)
            for rep in range(REPETITIONS)
        ]
        try:
            skipped = sum(run.result() for run in runs)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    print(f"{REPETITIONS} repetitions exact; {skipped} attempts retried (victim had committed)")


@pytest.mark.parametrize("point", ["after-publish", "mid-state-write", "before-commit"])
def test_sigkill_at_a_point_of_a_batch_recovers_from_the_changelog_alone(
    point: str,
    stack: StackInfo,
    app_id: str,
    sp_env: dict[str, str],
    tmp_path: Path,
    workers: list[Worker],
    procs: list[Proc],
) -> None:
    """``STREAMPULSE_FAULT_POINT`` makes the worker SIGKILL itself there, in a batch with a final window.

    The replacement starts on an empty data dir, so it has only what the changelog holds: a batch
    whose offsets were committed before its state reached the changelog shows as a wrong window.
    """
    data = tmp_path / "events.jsonl"
    generate_canonical(data, 3000, seed=303, regions=12)
    doomed = launch_worker(fault_env(sp_env, fault_point=point), tmp_path, "doomed")
    workers.append(doomed)
    wait_worker_ready(doomed.proc)
    # Paced, so batches are small: each holds open windows as well as the ones it finalizes.
    feeder = start_replay(fault_env(sp_env), tmp_path, str(data), "--rate", "1000")
    procs.append(feeder)
    wait_for(lambda: not doomed.proc.alive(), 60, interval=0.2, what=f"the worker to kill itself at {point}")
    assert doomed.proc.popen.returncode == -signal.SIGKILL, doomed.proc.output()[-3000:]
    fresh = launch_worker(fault_env(sp_env), tmp_path, "fresh")  # new name: an empty data dir
    workers.append(fresh)
    wait_for(lambda: not feeder.alive(), 60, what="the replay to finish")
    assert feeder.popen.returncode == 0, feeder.output()[-2000:]
    assert_exact(stack, app_id, topic_of(app_id, "events"), timeout=90)
    assert fresh.proc.alive()
    assert not worker_log_problems(fresh.proc.output()), worker_log_problems(fresh.proc.output())[:5]
