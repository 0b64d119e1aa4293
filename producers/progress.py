"""The progress bar of a replay on a terminal (never in pipes, logs or tests)."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress

_REFRESH_S = 0.25


class Progress:
    """Sent, rate and rejects, redrawn at most four times a second; a no-op off a terminal."""

    def __init__(self, total: int | None, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._started = time.monotonic()
        self._next = 0.0
        self._bar: RichProgress | None = None
        self._task: TaskID | None = None
        if self.enabled:
            self._bar = RichProgress(
                TextColumn("[bold]replay"),
                BarColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._task = self._bar.add_task("", total=total)
            self._bar.start()

    def update(self, sent: int, rejected: int) -> None:
        if self._bar is None or self._task is None:
            return
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + _REFRESH_S
        rate = sent / max(now - self._started, 1e-9)
        self._bar.update(
            self._task, completed=sent, description=f"sent {sent:,} · {rate:,.0f}/s · rejected {rejected:,}"
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
