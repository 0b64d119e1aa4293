"""aiokafka's clients with their metadata requests paced as the Java client paces them.

It touches two private names of aiokafka's client. It lives apart from :mod:`app.internals` (the
door to every other library internal, which lists these names too, so that
``tests/unit/test_internals.py`` checks them) because the replayer needs it and must not import
Faust: Faust reads the command line at import and takes the replayer's ``--loop`` for its own.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Sequence
from typing import Any

import aiokafka

#: ``(owner, name)`` pairs for :data:`app.internals.PRIVATE_NAMES`.
PRIVATE_NAMES: Sequence[tuple[object, str]] = (
    (aiokafka.AIOKafkaClient, "_metadata_update"),
    (aiokafka.AIOKafkaClient, "_retry_backoff"),
)

#: When each client's last metadata request ended.
_metadata_ended: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


def pace_metadata_updates() -> None:
    """Space each aiokafka client's metadata requests at least ``retry_backoff_ms`` apart.

    aiokafka's producer asks for new metadata whenever a partition's leader is unknown and asks
    again as soon as the answer comes back, with no pause. While the broker is down the answer
    is an immediate connection refusal, and while it restarts the partitions have no leader
    yet, so every producer spins: a whole core per process, and a flood of metadata requests
    at the broker that is trying to come back. The Java client waits ``retry.backoff.ms``
    between metadata refreshes; this gives every aiokafka client in the process the same rule.
    Idempotent; called at start-up by the worker and the replayer.
    """
    client_cls: Any = aiokafka.AIOKafkaClient
    if getattr(client_cls._metadata_update, "paced", False):
        return
    unpaced = client_cls._metadata_update

    async def paced(self: Any, cluster_metadata: Any, topics: Any) -> Any:
        ended = _metadata_ended.get(self)
        if ended is not None:
            wait = ended + self._retry_backoff - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        try:
            return await unpaced(self, cluster_metadata, topics)
        finally:
            _metadata_ended[self] = time.monotonic()

    paced.paced = True  # type: ignore[attr-defined]
    client_cls._metadata_update = paced
