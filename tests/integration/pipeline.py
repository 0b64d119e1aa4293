"""Checking the real pipeline's output from tests: final windows in Redis against the reference.

The reference computation and the process helpers live in :mod:`support` (the benchmark checks
against the same ones); this module adds the tests' view: waiting for windows and asserting.
"""

from __future__ import annotations

import csv
import json
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from support.kafka import Record, read_topic
from support.procs import (
    ROOT,
    StackInfo,
    metric_values,
    replay,
    start_replay,
    start_worker,
    wait_for,
    wait_worker_ready,
)
from support.redis_io import final_windows
from support.reference import Reference, WindowKey, reference_windows, window_problems

__all__ = [
    "Record",
    "Subscriber",
    "generate_canonical",
    "Reference",
    "assert_exact",
    "assert_matches_reference",
    "metric_values",
    "read_topic",
    "redis_final_windows",
    "reference_windows",
    "replay",
    "sorted_tlc_sample",
    "start_replay",
    "start_worker",
    "wait_final_windows",
    "wait_worker_ready",
]

TLC_SAMPLE = ROOT / "data" / "tlc" / "tlc_trips_2019-03_sample.csv"


def sorted_tlc_sample(dest: Path, rows: int | None = None) -> Path:
    """The bundled sample (its first ``rows`` trips, default all) ordered by drop-off time (its
    event time), as ``make demo`` replays it: the file is a random draw across the month, and
    replayed as is most trips would be late."""
    with TLC_SAMPLE.open(newline="") as fh:
        reader = csv.DictReader(fh)
        ordered = sorted(reader, key=lambda r: r["tpep_dropoff_datetime"])
        fields = reader.fieldnames or []
    with dest.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(ordered[:rows])
    return dest


def generate_canonical(path: Path, n: int, seed: int, regions: int = 12, bad_rows: int = 0) -> None:
    """Trips mostly in order, out of order within the lateness, some late, some invalid rows."""
    rng = random.Random(seed)
    t0 = datetime(2025, 8, 15, 10, 0, tzinfo=UTC)
    lines = []
    for i in range(n):
        base = t0 + timedelta(seconds=i * 1.1)
        jitter = -rng.uniform(0, 25)  # out of order, within the 30 s lateness
        if rng.random() < 0.03:
            jitter = -rng.uniform(120, 1500)  # late for the small windows
        when = base + timedelta(seconds=jitter)
        duration = rng.choice([0, rng.randint(60, 3600)])
        event = {
            "trip_id": f"g{seed}-{i}",
            "region_id": rng.randint(1, regions),
            "event_time": when.isoformat().replace("+00:00", "Z"),
            "fare": round(rng.uniform(2.5, 80), 2),
            "duration": duration,
            "distance": round(rng.uniform(0.1, 25), 2),
        }
        lines.append(json.dumps(event))
    bad = [
        '{"trip_id": "x", "region_id": -1, "event_time": "2025-08-15T10:00:00Z", '
        '"fare": 1, "duration": 1, "distance": 1}',
        '{"trip_id": "x", "region_id": 1, "event_time": "not a time", '
        '"fare": 1, "duration": 1, "distance": 1}',
        '{"trip_id": "x", "region_id": 1, "event_time": "2025-08-15T10:00:00Z", "fare": NaN, '
        '"duration": 1, "distance": 1}',
        "{not json",
        '{"region_id": 1}',
    ]
    for j in range(bad_rows):
        lines.insert(rng.randint(0, len(lines)), bad[j % len(bad)])
    path.write_text("\n".join(lines) + "\n")


def redis_final_windows(redis_url: str, app_id: str) -> dict[WindowKey, dict[str, Any]]:
    return dict(final_windows(redis_url, app_id))


def wait_final_windows(
    redis_url: str, app_id: str, expected: int, timeout: float = 120
) -> dict[WindowKey, dict[str, Any]]:
    """Poll Redis until the expected number of final windows is there."""

    seen = 0

    def enough() -> dict[WindowKey, dict[str, Any]] | None:
        nonlocal seen
        got = redis_final_windows(redis_url, app_id)
        seen = len(got)
        return got if len(got) >= expected else None

    try:
        got = wait_for(enough, timeout, interval=0.5, what=f"{expected} final windows in Redis")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; {seen} final windows were there") from None
    assert got is not None
    return got


def assert_matches_reference(got: Mapping[WindowKey, Mapping[str, Any]], ref: Reference) -> None:
    """The same windows as the reference, each with every published field right."""
    missing = set(ref.windows) - set(got)
    extra = set(got) - set(ref.windows)
    assert not missing and not extra, f"missing {sorted(missing)[:5]}, unexpected {sorted(extra)[:5]}"
    wrong = {
        key: problems
        for key, fold in ref.windows.items()
        if (problems := window_problems(key, fold, got[key]))
    }
    assert not wrong, f"{len(wrong)} windows differ from the reference, e.g. {sorted(wrong.items())[:3]}"


def assert_exact(
    info: StackInfo,
    app_id: str,
    events_topic: str,
    timeout: float = 120,
    keep: Callable[[Record], bool] | None = None,
) -> Reference:
    """The final windows in Redis equal the reference over the events topic as stored.

    ``keep`` drops records from the reference's input: the worker's own idle markers are in the
    topic, and a reference that followed a marker written at the wrong moment would agree with it.
    """
    records = read_topic(info.bootstrap, events_topic)
    ref = reference_windows([r for r in records if keep is None or keep(r)])
    assert ref.windows, "the input must give final windows for this check to mean anything"
    try:
        got = wait_final_windows(info.redis_url, app_id, len(ref.windows), timeout=timeout)
    except AssertionError:
        got = redis_final_windows(info.redis_url, app_id)  # say which windows are missing
    assert_matches_reference(got, ref)
    return ref


@dataclass
class Subscriber:
    """An SSE client in a thread: every event it received, in order, until told to stop."""

    url: str
    last_event_id: str | None = None
    events: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    connected: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, daemon=True)
        thread.start()
        assert self.connected.wait(15), "the subscriber did not connect"
        return thread

    def _run(self) -> None:
        headers = {"Last-Event-ID": self.last_event_id} if self.last_event_id else {}
        try:
            with httpx.stream("GET", self.url, headers=headers, timeout=httpx.Timeout(5, read=30)) as resp:
                assert resp.status_code == 200, resp.status_code
                self.connected.set()
                event_id, kind, data = "", "", ""
                for line in resp.iter_lines():
                    if self.stop.is_set():
                        return
                    if line.startswith("id: "):
                        event_id = line[4:]
                    elif line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: "):
                        data = line[6:]
                    elif line == "" and kind:
                        self.events.append((event_id, kind, json.loads(data)))
                        event_id, kind, data = "", "", ""
        except BaseException as exc:  # reported by the test
            if not self.stop.is_set():
                self.error = exc

    def finals(self) -> list[dict[str, Any]]:
        return [data for _, kind, data in self.events if kind == "window" and data["final"]]
