"""Child processes of a run: started in their own process group, sampled, stopped by pid.

Processes are :class:`support.procs.Proc`, the tests' too, so the benchmark starts and stops
workers exactly as the tests do.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import psutil

from support.procs import Proc

SAMPLE_EVERY_S = 0.2
#: Thread groups kept in a row's details: enough to see a JVM's JIT compilers beside its stream
#: thread, or Faust's event loop beside the consumer thread.
THREAD_GROUPS = 8


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system, the whole life so far) of one process's threads, by thread
    name with trailing digits and ``#`` dropped (``C2 CompilerThread0`` and ``...1`` add up), the
    biggest first. Linux only; empty when the process is gone."""
    hz = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            name = (task / "comm").read_text().strip().rstrip("0123456789#").strip() or "?"
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / hz
    top = sorted(out.items(), key=lambda kv: -kv[1])[:THREAD_GROUPS]
    return {name: round(cpu, 2) for name, cpu in top}


class RssSampler:
    """Samples the resident memory and the CPU time of process trees (each process plus its
    children) in a thread.

    Samples carry their wall-clock time, so the peak can be taken over the measured span only
    (a contender writing its windows out for the check afterwards is not charged for it), and so
    can the CPU: user + system time (``utime + stime`` of ``/proc/<pid>/stat``, read by psutil)
    interpolated at the span's start and end, so neither the start-up (a JVM's class loading and
    JIT, Faust's topic set-up) nor the idle time after the last result is counted.
    """

    def __init__(self, pids: Iterable[int]) -> None:
        self._pids = list(pids)
        self.samples: list[tuple[float, int]] = []
        self.cpu: list[tuple[float, float]] = []
        #: Per root process, its threads' CPU seconds when sampling stopped (see thread_cpu).
        self.threads: dict[int, dict[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        rss, cpu = self._tree()  # one sample after the span's end, which the caller learns last
        now = time.time()
        self.samples.append((now, rss))
        self.cpu.append((now, cpu))
        self.threads = {pid: thread_cpu(pid) for pid in self._pids}

    def _tree(self) -> tuple[int, float]:
        """Resident bytes and CPU seconds of every tree."""
        rss, cpu = 0, 0.0
        for pid in self._pids:
            try:
                root = psutil.Process(pid)
                for proc in [root, *root.children(recursive=True)]:
                    with proc.oneshot():
                        rss += proc.memory_info().rss
                        times = proc.cpu_times()
                        cpu += times.user + times.system
            except psutil.Error:
                continue
        return rss, cpu

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.time()
            rss, cpu = self._tree()
            self.samples.append((now, rss))
            self.cpu.append((now, cpu))
            self._stop.wait(SAMPLE_EVERY_S)

    def _cpu_at(self, t_s: float) -> float | None:
        """CPU seconds used by ``t_s``, linear between the two samples around it."""
        before = [(t, c) for t, c in self.cpu if t <= t_s]
        after = [(t, c) for t, c in self.cpu if t >= t_s]
        if not before or not after:
            return None
        (t0, c0), (t1, c1) = before[-1], after[0]
        return c0 if t1 == t0 else c0 + (c1 - c0) * (t_s - t0) / (t1 - t0)

    def cpu_seconds(self, from_s: float, to_s: float) -> float | None:
        """CPU seconds the trees used between two wall-clock times; ``None`` outside the samples.

        CPU time only grows, but a child that exited takes its count with it: the difference is
        floored at zero rather than reported negative."""
        start, end = self._cpu_at(from_s), self._cpu_at(to_s)
        if start is None or end is None:
            return None
        return max(0.0, end - start)

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
