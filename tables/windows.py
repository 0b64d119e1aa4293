"""Tumbling event-time window math, aligned to the Unix epoch in UTC (no I/O).

All times are integer milliseconds so that window boundaries are exact and the same on every
worker; floats would put an event on a boundary into different windows on different machines.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION_RE = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d)?\s*$")
_WINDOW_RE = re.compile(r"^(\d+)(s|m|h|d)$")


def parse_duration_ms(text: str, *, allow_zero: bool = False) -> int:
    """Parse ``"30s"``, ``"5m"``, ``"1h"``, ``"250ms"`` or plain seconds (``"30"``) to ms."""
    match = _DURATION_RE.match(str(text))
    if not match:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 5m, 1h, 250ms)")
    value = int(match.group(1)) * _UNIT_MS[match.group(2) or "s"]
    if value == 0 and not allow_zero:
        raise ValueError(f"duration must be positive: {text!r}")
    return value


@dataclass(frozen=True, order=True)
class WindowSize:
    """A configured tumbling window size; ``name`` is how the API and Redis keys spell it."""

    size_ms: int
    name: str

    def start(self, t_ms: int) -> int:
        """Start of the window containing ``t_ms`` (floor, also for times before 1970)."""
        return t_ms - (t_ms % self.size_ms)

    def end(self, t_ms: int) -> int:
        """Exclusive end of the window containing ``t_ms``."""
        return self.start(t_ms) + self.size_ms


def parse_windows(text: str) -> list[WindowSize]:
    """Parse ``"1m,5m,15m,1h"``; sizes are unique and returned smallest first."""
    sizes: dict[int, WindowSize] = {}
    for raw in (part.strip() for part in text.split(",")):
        match = _WINDOW_RE.match(raw)
        if not match or int(match.group(1)) == 0:
            raise ValueError(f"unknown window size {raw!r} (use e.g. 1m,5m,15m,1h)")
        size_ms = int(match.group(1)) * _UNIT_MS[match.group(2)]
        if size_ms in sizes:
            raise ValueError(f"window size {raw!r} is listed twice")
        sizes[size_ms] = WindowSize(size_ms, raw)
    if not sizes:
        raise ValueError("at least one window size is required")
    return sorted(sizes.values())


def size_names(sizes: Iterable[WindowSize]) -> dict[int, str]:
    """Window size in ms -> its name (``60000`` -> ``"1m"``): how records and keys name a size."""
    return {size.size_ms: size.name for size in sizes}
