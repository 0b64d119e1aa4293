"""When each event may be sent: ``--rate`` (events per second) and ``--speed`` (x event-time pace).

The schedule is absolute (event ``i`` is due at ``start + i / rate``), never "sleep 1/rate after
each send": sleeps overshoot, and a relative schedule would add every overshoot to the run time.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Pacer:
    rate: float = 0.0
    speed: float | None = None
    _start_s: float = field(default=0.0, init=False)
    _first_ms: int | None = field(default=None, init=False)

    @property
    def active(self) -> bool:
        return self.rate > 0 or self.speed is not None

    def start(self, now_s: float) -> None:
        self._start_s = now_s

    def due(self, index: int, event_ms: int) -> float:
        """Clock time (same clock as ``start``) at which the ``index``-th event (0-based) may go.

        With both options the slower governs. Under ``--speed`` an event earlier than the first
        (out-of-order input) is due at once; event time never runs backwards.
        """
        due = self._start_s
        if self.rate > 0:
            due += index / self.rate
        if self.speed is not None:
            if self._first_ms is None:
                self._first_ms = event_ms
            due = max(due, self._start_s + max(event_ms - self._first_ms, 0) / 1000 / self.speed)
        return due
