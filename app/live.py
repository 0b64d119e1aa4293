"""Open windows waiting for the live mirror: the hand-off between the aggregate agent, which
marks the windows a batch changed, and the sink, which mirrors them to Redis.

The aggregate itself is kept, not its record: the record is built only when the mirror runs
(at most ``LIVE_MIRROR_RATE`` times a second), not for every window on every batch. A window
that becomes final is taken out, so live never overwrites final.
"""

from __future__ import annotations

import asyncio
import time

from tables.aggregate import TripAggregate
from tables.partition_state import WindowKey

#: Changed open windows, with the oldest unmirrored record timestamp (the freshness clock).
live_dirty: dict[WindowKey, tuple[TripAggregate, float]] = {}


class LiveChanged:
    """Set when ``live_dirty`` gained windows (the mirror writes them as soon as its rate
    allows), remembering since when: the mirror's wait is one stage of a record's freshness."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._since: float | None = None

    def set(self) -> None:
        if self._since is None:
            self._since = time.monotonic()
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()

    def clear(self) -> float:
        """Clear it; seconds since it was first set (0 if it was not)."""
        since, self._since = self._since, None
        self._event.clear()
        return 0.0 if since is None else time.monotonic() - since


live_changed = LiveChanged()
