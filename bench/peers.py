"""Running the peer contenders (b)–(f) as processes and turning their reports into rows."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench import kstreams, procs
from bench.reference import PeerRow, WindowKey, check_peer
from bench.run import Loaded, Row, Run, apply_check, cpu_per_1k, rate
from support.procs import Proc

POLL_S = 0.5
STALL_S = 15.0


@dataclass(frozen=True)
class Peer:
    name: str
    #: A Python module run with this interpreter, or ``JVM`` for the Kafka Streams jar.
    module: str
    #: Ceilings compute nothing: no results to check, their speed is a bound, not a score.
    ceiling: bool
    #: Arguments after the common ones (the Kafka Streams variants).
    extra: tuple[str, ...] = ()

    def command(self) -> list[str]:
        if self.module == JVM:
            return kstreams.command()
        return [sys.executable, "-m", self.module]


JVM = "jvm:kafka-streams"
#: The variants of the Kafka Streams contender: its docs' throughput settings with
#: exactly-once (the headline row) and at-least-once, and exactly-once with every default.
KSTREAMS_VARIANTS = {
    "kafka-streams": ("--guarantee", "exactly_once_v2", "--tuned"),
    "kafka-streams-alos": ("--guarantee", "at_least_once", "--tuned"),
    "kafka-streams-defaults": ("--guarantee", "exactly_once_v2", "--defaults"),
}

PEERS = {
    p.name: p
    for p in (
        Peer("naive-faust", "bench.contenders.naive_faust", ceiling=False),
        Peer("quix", "bench.contenders.quix", ceiling=False),
        *(Peer(name, JVM, ceiling=False, extra=extra) for name, extra in KSTREAMS_VARIANTS.items()),
        Peer("bare-faust", "bench.contenders.bare_faust", ceiling=True),
        Peer("bare-aiokafka", "bench.contenders.bare_aiokafka", ceiling=True),
    )
}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = orjson.loads(path.read_bytes())
        return data
    except (OSError, orjson.JSONDecodeError):
        return None


def _read_windows(path: Path) -> Iterator[tuple[WindowKey, PeerRow]]:
    if not path.exists():  # a contender that made no window writes no file
        return
    with path.open() as fh:
        for line in fh:
            size, region, start, count, revenue, fare_min, fare_max = line.split()
            yield (
                (size, int(region), int(start)),
                (int(count), float(revenue), float(fare_min), float(fare_max)),
            )


def _follow(run: Run, proc: Proc, report_path: Path, w: Loaded) -> tuple[dict[str, Any] | None, bool]:
    """Wait for the contender's final report; ``settled`` when it consumed every record but its
    report stopped moving short of done (a peer missing windows waits for them forever)."""
    started = last_change = time.monotonic()
    report: dict[str, Any] | None = None
    seen: dict[str, Any] | None = None
    while time.monotonic() - started < run.timeout_s and proc.alive():
        report = _read_json(report_path)
        if report and report["done"]:
            return report, False
        if report != seen:
            seen, last_change = report, time.monotonic()
        elif report and report["records"] >= w.records and time.monotonic() - last_change > STALL_S:
            return report, True
        time.sleep(POLL_S)
    return _read_json(report_path), False


def run_peer(run: Run, peer: Peer, w: Loaded) -> Row:
    group = f"{run.run_id}-{peer.name}-{w.name}"
    report_path = run.work_dir / f"{group}.json"
    row = Row(peer.name, w.name, w.events, windows_expected=None if peer.ceiling else len(w.ref.windows))
    try:
        command = peer.command()
    except kstreams.BuildError as exc:
        row.status, row.note = "failed", str(exc)[:200]
        return row
    args = [
        *command,
        "--bootstrap",
        run.bootstrap,
        "--topic",
        w.topic,
        "--group",
        group,
        "--partitions",
        str(run.partitions),
        "--records",
        str(w.records),
        "--windows",
        str(len(w.ref.windows)),
        "--data-dir",
        str(run.work_dir / f"data-{group}"),
        "--report",
        str(report_path),
        *peer.extra,
    ]
    proc = procs.start(args, run.env(), run.work_dir / f"{group}.log")
    try:
        with procs.RssSampler([proc.pid]) as rss:
            report, settled = _follow(run, proc, report_path, w)
            stopped_ms = time.time() * 1000
            timed_out = proc.alive() and not settled and not (report and report["done"])
    finally:
        procs.stop_all([proc])
    last_ms = report.get("last_ms") if report else None
    row.peak_rss_mb = rss.peak_mb(last_ms / 1000 + 1 if last_ms else None)
    row.details["cpu_s_by_thread"] = rss.threads.get(proc.pid, {})
    row.processed = report.get("records") if report else 0
    if not report or not (report["done"] or settled) or report["first_ms"] is None:
        return _unfinished(row, report, timed_out, proc.output(), run.timeout_s, stopped_ms)
    if report["last_ms"] is not None:
        row.seconds = round((report["last_ms"] - report["first_ms"]) / 1000, 2)
        # Only for a finished run: a timed-out one did not process all the events it is divided by.
        row.cpu_ms_per_1k_events = cpu_per_1k(
            rss.cpu_seconds(report["first_ms"] / 1000, report["last_ms"] / 1000),
            w.records if peer.ceiling else w.events,
        )
    speed = rate(w.records if peer.ceiling else w.events, report["first_ms"], report["last_ms"])
    if peer.ceiling:
        row.status, row.events_per_s = "ceiling, computes nothing", speed
        return row
    check = check_peer(w.ref, _read_windows(Path(report_path).with_suffix(".windows")))
    return apply_check(row, check, speed)


def _unfinished(
    row: Row, report: dict[str, Any] | None, timed_out: bool, output: str, timeout_s: float, stopped_ms: float
) -> Row:
    if timed_out:
        row.status = f"timeout after {timeout_s:.0f}s"
        if report and report.get("first_ms"):
            # Records consumed until it was stopped (a peer may make no result before the end).
            partial = rate(report["records"], report["first_ms"], stopped_ms)
            row.note = f"processed {report['records']:,} records ({partial} records/s until then)"
            row.details["partial_events_per_s"] = partial
    else:
        row.status = "failed"
        row.note = output.strip().splitlines()[-1][:200] if output.strip() else "exited without a report"
    return row
