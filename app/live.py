"""Open windows waiting for the live mirror: the hand-off between the aggregate agent, which
marks the windows a batch changed, and the sink, which mirrors them to Redis.

The aggregate itself is kept, not its record: the record is built only when the mirror runs
(at most ``LIVE_MIRROR_RATE`` times a second), not for every window on every batch. A window
that becomes final is taken out, so live never overwrites final.
"""

from __future__ import annotations

import asyncio

from tables.aggregate import TripAggregate
from tables.partition_state import WindowKey

#: Changed open windows, with the oldest unmirrored record timestamp (the freshness clock).
live_dirty: dict[WindowKey, tuple[TripAggregate, float]] = {}
#: Set when ``live_dirty`` gained windows: the mirror writes them as soon as its rate allows.
live_changed = asyncio.Event()
