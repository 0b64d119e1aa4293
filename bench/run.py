"""One benchmark run: its names, settings, environment, and the rows it produces."""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.reference import Check, Reference
from support.procs import ROOT


@dataclass(frozen=True)
class Run:
    """Everything a run creates is named after ``run_id``: topics, consumer groups, app ids (and
    so changelogs and Redis keys), data directories; cleaning up means deleting those names."""

    run_id: str
    bootstrap: str
    redis_url: str
    work_dir: Path
    timeout_s: float
    partitions: int = 8

    def topic(self, name: str) -> str:
        return f"{self.run_id}.{name}"

    def env(self) -> dict[str, str]:
        """The environment of child processes: this virtualenv, the repo on the path, and no
        ``STREAMPULSE_*`` value leaking in from the caller's shell."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMPULSE_")}
        env["PYTHONPATH"] = str(ROOT)
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
        return env


@dataclass
class Loaded:
    """A workload as written to its topic, with the reference computed from that topic."""

    name: str
    topic: str
    events: int
    records: int
    ref: Reference
    load_s: float


@dataclass
class Row:
    """One contender on one workload: a row of the table and of ``contenders`` in the JSON."""

    name: str
    workload: str
    events: int
    events_per_s: float | None = None
    correct: bool | None = None
    peak_rss_mb: float | None = None
    #: Process CPU (user + system, the whole process tree) from the first record consumed to the
    #: last result, per 1,000 events (records, for a ceiling), in milliseconds.
    cpu_ms_per_1k_events: float | None = None
    status: str = "ok"
    note: str = ""
    seconds: float | None = None
    processed: int | None = None
    workers: int = 1
    windows_expected: int | None = None
    windows_got: int | None = None
    open_window_latency_p50_ms: float | None = None
    open_window_latency_p99_ms: float | None = None
    final_latency_p50_ms: float | None = None
    final_latency_p99_ms: float | None = None
    push_latency_p50_ms: float | None = None
    push_latency_p99_ms: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rate(events: int, first_ms: float | None, last_ms: float | None) -> float | None:
    """Sustained events/s from the first record consumed to the last result written."""
    if first_ms is None or last_ms is None or last_ms <= first_ms:
        return None
    return round(events / ((last_ms - first_ms) / 1000), 1)


def cpu_per_1k(cpu_s: float | None, events: int) -> float | None:
    """Milliseconds of CPU per 1,000 events: ``cpu_s`` seconds spread over ``events``."""
    if cpu_s is None or events <= 0:
        return None
    return round(cpu_s * 1_000_000 / events, 2)


def apply_check(row: Row, check: Check, speed: float | None) -> Row:
    """Record the check; a contender whose windows are wrong gets no speed figure."""
    row.windows_got, row.correct = check.got, check.correct
    if check.correct:
        row.events_per_s = speed
    else:
        row.status = "wrong results"
        row.note = (
            f"{check.missing} missing, {check.unexpected} unexpected, {check.wrong} wrong windows; "
            + "; ".join(check.examples[:3])
        )
    return row
