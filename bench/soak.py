"""Soak: a steady replay with a worker SIGKILLed and restarted on a schedule, then checked.

``python -m bench.soak`` (``make soak``) replays at ``--rate`` events/s for ``--minutes``, SIGKILLs
the worker every ``--kill-every`` seconds and restarts it on its own data dir, samples the worker's
resident memory once a second, and at the end compares every final window in Redis with the
bench's independent reference over the events topic. The report (rates, restarts, the RSS curve,
the check) goes to ``bench/results/soak-<date>-<commit>.json`` and, with matplotlib, a PNG.

The default rate is half the single-worker live rate measured in docs/benchmarks.md (17,334
events/s): a soak is about staying correct and bounded under restarts, not about the ceiling,
and a worker at its ceiling could never catch up after a restart. The fault suite runs a
2-minute version at a lower rate (:func:`run_soak` is shared), so its check stays quick.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.redis_io import delete_run_keys
from bench.reference import check_streampulse, reference_from_topic
from support.procs import (
    ROOT,
    SESSION_TIMEOUT,
    StackInfo,
    Worker,
    launch_worker,
    rss_bytes,
    start_replay,
    wait_for,
    wait_worker_ready,
)
from support.redis_io import final_windows

DEFAULT_RATE = 17_334 // 2
RESULTS = ROOT / "bench" / "results"
PARTITIONS = 4
#: Event time advances this many events per second of event time: few windows, all busy.
EVENTS_PER_EVENT_S = 100
#: One file of at most this many events, replayed with ``--loop`` (event times shifted each loop).
FILE_EVENTS = 200_000
#: RSS is flat when the last lifetime's peak stays within this of the first's.
RSS_GROWTH_FACTOR, RSS_GROWTH_SLACK_MB = 1.3, 48.0


@dataclass
class Lifetime:
    started_s: float
    ended_s: float | None = None
    pid: int = 0
    rss_mb: list[tuple[float, float]] = field(default_factory=list)

    @property
    def peak_mb(self) -> float:
        return max((mb for _, mb in self.rss_mb), default=0.0)


def write_input(path: Path, events: int, seed: int, regions: int = 20) -> None:
    """In-order trips with jitter inside the lateness and 1 % late ones, as canonical JSON lines."""
    rng = random.Random(seed)
    t0 = datetime(2025, 9, 1, tzinfo=UTC)
    with path.open("w") as out:
        for i in range(events):
            when = t0 + timedelta(seconds=i / EVENTS_PER_EVENT_S - rng.uniform(0, 20))
            if rng.random() < 0.01:
                when -= timedelta(seconds=rng.uniform(120, 900))
            event = {
                "trip_id": f"s{seed}-{i}",
                "region_id": rng.randint(1, regions),
                "event_time": when.isoformat().replace("+00:00", "Z"),
                "fare": round(rng.uniform(2.5, 80), 2),
                "duration": rng.randint(60, 3600),
                "distance": round(rng.uniform(0.1, 25), 2),
            }
            out.write(json.dumps(event) + "\n")


def soak_env(info: StackInfo, app_id: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMPULSE_")}
    env.update(
        STREAMPULSE_KAFKA_BOOTSTRAP=info.bootstrap,
        STREAMPULSE_REDIS_URL=info.redis_url,
        STREAMPULSE_APP_ID=app_id,
        STREAMPULSE_PARTITIONS=str(PARTITIONS),
        STREAMPULSE_SESSION_TIMEOUT=SESSION_TIMEOUT,
        PYTHONPATH=str(ROOT),
        PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
    )
    return env


def run_soak(
    info: StackInfo,
    workdir: Path,
    *,
    seconds: float,
    kill_every_s: float,
    rate: int,
    app_id: str | None = None,
    seed: int = 1,
) -> dict[str, Any]:
    """Run one soak and return its report (``exact`` and ``rss_flat`` say whether it passed)."""
    app_id = app_id or f"soak{uuid.uuid4().hex[:8]}"
    workdir.mkdir(parents=True, exist_ok=True)
    env = soak_env(info, app_id)
    total = max(1, int(rate * seconds))
    per_file = min(total, FILE_EVENTS)
    loops = -(-total // per_file)
    data = workdir / "soak.jsonl"
    write_input(data, per_file, seed)
    lifetimes: list[Lifetime] = []
    worker: Worker | None = None
    exact = False
    t0 = time.monotonic()

    def start() -> Worker:
        w = launch_worker(env, workdir, "soak")  # same name: restarts onto its own data dir
        lifetimes.append(Lifetime(time.monotonic() - t0, pid=w.proc.pid))
        wait_worker_ready(w.proc)
        return w

    worker = start()
    feeder = start_replay(
        env, workdir, str(data), "--loop", str(loops), "--limit", str(total), "--rate", str(rate)
    )
    replay_started = time.monotonic()
    restarts: list[float] = []
    processed_before_kills = 0.0
    try:
        while feeder.alive():
            now = time.monotonic() - t0
            rss = rss_bytes(worker.proc.pid)
            if rss is not None:
                lifetimes[-1].rss_mb.append((round(now, 1), round(rss / 2**20, 1)))
            if now - lifetimes[-1].started_s >= kill_every_s:
                processed_before_kills += worker.processed()
                worker.proc.kill(signal.SIGKILL)
                worker.proc.popen.wait(10)
                lifetimes[-1].ended_s = now
                restarts.append(round(now, 1))
                worker = start()
            if not worker.proc.alive():
                raise AssertionError(f"soak worker exited:\n{worker.proc.output()[-3000:]}")
            time.sleep(1)
        replay_s = time.monotonic() - replay_started
        summary = json.loads((feeder.output().strip().splitlines() or ["{}"])[-1])
        assert feeder.popen.returncode == 0, feeder.output()[-2000:]

        events_topic = f"{app_id}.events"
        ref = asyncio.run(reference_from_topic(info.bootstrap, events_topic, PARTITIONS))

        def settled() -> bool:
            rss = rss_bytes(worker.proc.pid)
            if rss is not None:
                lifetimes[-1].rss_mb.append((round(time.monotonic() - t0, 1), round(rss / 2**20, 1)))
            return sum(1 for _ in final_windows(info.redis_url, app_id)) >= len(ref.windows)

        try:
            wait_for(settled, 300, interval=2, what="every reference window final in Redis")
        except AssertionError:
            pass  # the check below says which windows are missing
        settle_s = time.monotonic() - t0 - (replay_started - t0) - replay_s
        got = dict(final_windows(info.redis_url, app_id))
        check = check_streampulse(ref, got.items())
        exact = check.correct
        worker_alive = worker.proc.alive()
    finally:
        feeder.stop()
        worker.proc.stop(timeout=10)
        if exact:  # checked: the windows leave Redis; a failed soak keeps them to look at
            delete_run_keys(info.redis_url, f"{app_id}:")
    lifetimes[-1].ended_s = time.monotonic() - t0
    full = [life for life in lifetimes if life.rss_mb]
    first_peak, last_peak = (full[0].peak_mb, full[-1].peak_mb) if full else (0.0, 0.0)
    rss_flat = last_peak <= first_peak * RSS_GROWTH_FACTOR + RSS_GROWTH_SLACK_MB
    return {
        "app_id": app_id,
        "seconds": seconds,
        "kill_every_s": kill_every_s,
        "rate_target": rate,
        "events": total,
        "replay": summary,
        "replay_seconds": round(replay_s, 1),
        "settle_seconds": round(settle_s, 1),
        "restarts": restarts,
        "lifetimes": [
            {
                "started_s": life.started_s,
                "ended_s": life.ended_s,
                "pid": life.pid,
                "peak_rss_mb": life.peak_mb,
            }
            for life in lifetimes
        ],
        "rss_mb": [point for life in lifetimes for point in life.rss_mb],
        "rss_flat": rss_flat,
        "windows_expected": check.expected,
        "windows_got": check.got,
        "missing": check.missing,
        "unexpected": check.unexpected,
        "wrong": check.wrong,
        "examples": check.examples,
        "exact": check.correct,
        "late_events": len(ref.late),
        "worker_alive_at_end": worker_alive,
    }


def write_report(report: dict[str, Any], out_dir: Path = RESULTS) -> Path:
    """``soak-<date>-<commit>.json`` (and ``.png`` of the RSS curve when matplotlib is there)."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()
    stem = out_dir / f"soak-{datetime.now(UTC):%Y-%m-%d}-{commit or 'unknown'}"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = stem.with_suffix(".json")
    path.write_text(json.dumps(report, indent=2) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return path
    fig, ax = plt.subplots(figsize=(9, 4))
    for life in report["lifetimes"]:
        points = [(t, mb) for t, mb in report["rss_mb"] if life["started_s"] <= t <= (life["ended_s"] or t)]
        if points:
            ax.plot([t for t, _ in points], [mb for _, mb in points], color="tab:blue")
    for t in report["restarts"]:
        ax.axvline(t, color="tab:red", linestyle=":", linewidth=1)
    ax.set_xlabel("seconds since start (red: SIGKILL + restart)")
    ax.set_ylabel("worker RSS (MB)")
    ax.set_title(
        f"soak at {report['rate_target']} events/s: exact={report['exact']}, RSS flat={report['rss_flat']}"
    )
    fig.tight_layout()
    fig.savefig(stem.with_suffix(".png"))
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--kill-every", type=float, default=120.0, help="seconds between worker SIGKILLs")
    parser.add_argument("--rate", type=int, default=DEFAULT_RATE, help=f"events/s (default {DEFAULT_RATE})")
    parser.add_argument("--workdir", type=Path, default=ROOT / ".data" / "soak")
    args = parser.parse_args(argv)
    info = StackInfo(
        os.environ.get("STREAMPULSE_KAFKA_BOOTSTRAP", "localhost:9092"),
        os.environ.get("STREAMPULSE_REDIS_URL", "redis://localhost:6379/0"),
    )
    report = run_soak(
        info, args.workdir, seconds=args.minutes * 60, kill_every_s=args.kill_every, rate=args.rate
    )
    path = write_report(report)
    print(
        json.dumps({k: report[k] for k in ("exact", "rss_flat", "events", "restarts", "windows_expected")}),
        f"report: {path.relative_to(ROOT)}",
    )
    return 0 if report["exact"] and report["rss_flat"] else 1


if __name__ == "__main__":
    sys.exit(main())
