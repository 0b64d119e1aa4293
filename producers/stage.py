"""Runs the pure, CPU-heavy chunk work inline or in worker processes, results in input order.

Order matters: Kafka gets the events in file order, so results are taken strictly first-in
first-out, with a bounded number of chunks in flight to cap memory.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
from collections import deque
from collections.abc import AsyncGenerator, Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Generic, TypeVar

C = TypeVar("C")
Job = tuple[Callable[..., Any], tuple[Any, ...], C]


def _worker_init() -> None:
    """Ctrl-C is the main process's business: it stops reading and flushes; workers just finish."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.set_wakeup_fd(-1)


def _ready() -> None:
    """Submitted once so that every worker is forked before the event loop exists."""


class Stage(Generic[C]):
    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        if workers > 0:
            self._pool = ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("fork"), initializer=_worker_init
            )
            self._pool.submit(_ready).result()

    async def run(self, jobs: Iterable[Job[C]]) -> AsyncGenerator[tuple[Any, C], None]:
        """Yield ``(fn(*args), context)`` for each job, in order."""
        if self._pool is None:
            for fn, args, context in jobs:
                yield fn(*args), context
                await asyncio.sleep(0)
            return
        pending: deque[tuple[Future[Any], C]] = deque()
        depth = 2 * self.workers + 1
        try:
            for fn, args, context in jobs:
                pending.append((self._pool.submit(fn, *args), context))
                if len(pending) >= depth:
                    future, ctx = pending.popleft()
                    yield await asyncio.wrap_future(future), ctx
            while pending:
                future, ctx = pending.popleft()
                yield await asyncio.wrap_future(future), ctx
        finally:
            for future, _ in pending:
                future.cancel()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
