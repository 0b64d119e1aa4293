"""What a contender process tells the harness: progress, timing and (for b, c) its windows.

Each contender runs in its own process (its RSS is measured alone) and times itself: the first
record it consumed and the moment its last result was made. A small JSON report is rewritten
every second, so a contender that runs out of time still shows how far it got; its windows go
to a separate file, one line ``size region start count revenue min max`` each.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from pathlib import Path
from typing import IO

import orjson

REPORT_EVERY_S = 1.0


def contender_args(description: str) -> argparse.Namespace:
    """The command line every contender process accepts."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True, help="consumer group / app id, unique per run")
    parser.add_argument("--partitions", type=int, required=True)
    parser.add_argument("--records", type=int, required=True, help="records in the topic (events + controls)")
    parser.add_argument("--windows", type=int, default=0, help="final windows the reference expects")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--report", type=Path, required=True)
    return parser.parse_args()


class Report:
    """Counts and times one contender's run; a daemon thread writes them where the harness looks,
    once a second, so the contender's own loop pays nothing for it and the harness sees progress
    even when the stream has gone quiet (a contender short of windows then shows as settled)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records = 0
        self.events = 0
        self.windows = 0
        self.first_ms: float | None = None
        self.last_ms: float | None = None
        self.done = False
        self._results: IO[bytes] | None = None
        self._lock = threading.Lock()
        threading.Thread(target=self._heartbeat, name="report", daemon=True).start()

    def consumed(self, n: int = 1) -> None:
        if self.first_ms is None:
            self.first_ms = time.time() * 1000
        self.records += n

    def result_made(self) -> None:
        self.last_ms = time.time() * 1000

    def window(self, size: str, region: int, start_ms: int, row: tuple[int, float, float, float]) -> None:
        if self._results is None:
            self._results = self.results_path.open("wb", buffering=1 << 20)
        count, revenue, fare_min, fare_max = row
        self._results.write(
            f"{size} {region} {start_ms} {count} {revenue!r} {fare_min!r} {fare_max!r}\n".encode()
        )
        self.windows += 1

    @property
    def results_path(self) -> Path:
        return self.path.with_suffix(".windows")

    def finish(self) -> None:
        """The last result is made and every window written: the harness may stop this process."""
        self.done = True
        self._write()

    def _heartbeat(self) -> None:
        while not self.done:
            self._write()
            time.sleep(REPORT_EVERY_S)

    def _write(self) -> None:
        with self._lock:
            if self._results is not None:
                self._results.flush()
                if self.done:
                    self._results.close()
                    self._results = None
            data = {
                "done": self.done,
                "records": self.records,
                "events": self.events,
                "windows": self.windows,
                "first_ms": self.first_ms,
                "last_ms": self.last_ms,
            }
            tmp = self.path.with_suffix(".tmp")
            tmp.write_bytes(orjson.dumps(data))
            os.replace(tmp, self.path)
