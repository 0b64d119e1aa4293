"""Child processes of a run: started in their own process group, sampled, stopped by pid.

Processes come from :class:`tests.integration.stack.Proc` (the integration tests' helper), so the
benchmark starts and stops workers exactly as the tests do.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import psutil

from tests.integration.stack import Proc

SAMPLE_EVERY_S = 0.2


class RssSampler:
    """Samples the resident memory of process trees (each process plus its children) in a thread.

    Samples carry their wall-clock time, so the peak can be taken over the measured span only
    (a contender writing its windows out for the check afterwards is not charged for it).
    """

    def __init__(self, pids: Iterable[int]) -> None:
        self._pids = list(pids)
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _tree_rss(self) -> int:
        total = 0
        for pid in self._pids:
            try:
                root = psutil.Process(pid)
                for proc in [root, *root.children(recursive=True)]:
                    total += proc.memory_info().rss
            except psutil.Error:
                continue
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), self._tree_rss()))
            self._stop.wait(SAMPLE_EVERY_S)

    def peak_mb(self, until_s: float | None = None) -> float | None:
        values = [rss for t, rss in self.samples if until_s is None or t <= until_s]
        return round(max(values) / 2**20, 1) if values else None


def start(args: list[str], env: Mapping[str, str], log: Path) -> Proc:
    log.parent.mkdir(parents=True, exist_ok=True)
    return Proc(args, env, log)


def stop_all(procs: Iterable[Proc]) -> None:
    """SIGTERM each process group, SIGKILL what is still there after the grace period."""
    for proc in procs:
        proc.stop(timeout=15)
