"""Window updates pushed to subscribers: one Redis Streams reader per window size, fanned out.

The worker's sink appends every change of a stored window to ``updates:<size>`` (see
:mod:`app.redis_keys`), in the same script that stores it. Each API process reads each size's
stream once (``XREAD BLOCK`` on its own connection) and hands every entry to the queues of that
size's subscribers, so a thousand dashboards cost Redis one reader, and any replica can serve any
client: the stream, not the process, is the source of truth. An entry id (``<ms>-<seq>``) is the
SSE event id; a client that reconnects with ``Last-Event-ID`` reads what it missed from the
stream itself (:meth:`UpdatesHub.since`) within its retention.

A subscriber's queue is bounded. The reader never waits for a subscriber: when a queue is full,
that subscriber is dropped (its queue gets :data:`DROPPED`), and the others are not slowed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from api.metrics import PUSH_DROPPED
from app.redis_client import RedisClient
from app.redis_keys import RedisKeys

log = logging.getLogger(__name__)

#: How long one XREAD waits for new entries; also how soon a reader notices it should stop.
BLOCK_MS = 5_000
#: Entries per XREAD / XRANGE call.
READ_COUNT = 500
RETRY_S = 1.0
#: Put in a subscriber's queue when it is dropped.
DROPPED = ("", b"")

Entry = tuple[str, bytes]


def entry_ms(entry_id: str) -> int:
    """Wall-clock ms at which Redis appended the entry (the first part of its id)."""
    return int(entry_id.split("-", 1)[0])


def id_after(entry_id: str, last: str) -> bool:
    """Whether stream id ``entry_id`` comes after ``last`` (both ``<ms>-<seq>``)."""
    a_ms, _, a_seq = entry_id.partition("-")
    b_ms, _, b_seq = last.partition("-")
    return (int(a_ms), int(a_seq or 0)) > (int(b_ms), int(b_seq or 0))


def valid_id(text: str) -> bool:
    ms, sep, seq = text.partition("-")
    return ms.isdigit() and len(ms) <= 15 and (not sep or (seq.isdigit() and len(seq) <= 15))


@dataclass(eq=False)
class Subscription:
    size: str
    queue: asyncio.Queue[Entry]
    dropped: bool = False

    def offer(self, entry: Entry) -> bool:
        """Queue an entry; False (and the subscriber is dropped) when its queue is full."""
        if self.dropped:
            return False
        try:
            self.queue.put_nowait(entry)
            return True
        except asyncio.QueueFull:
            self.dropped = True
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(DROPPED)
            return False


class UpdatesHub:
    """The readers of one API process, started lazily per window size on first subscription."""

    def __init__(self, redis: RedisClient, keys: RedisKeys, client_buffer: int) -> None:
        self.redis = redis
        self.keys = keys
        #: Entries a subscriber may have waiting before it is dropped as too slow.
        self.client_buffer = client_buffer
        self._subscribers: dict[str, set[Subscription]] = {}
        self._readers: dict[str, asyncio.Task[None]] = {}
        self._last_id: dict[str, str] = {}

    def subscribe(self, size: str) -> Subscription:
        sub = Subscription(size, asyncio.Queue(self.client_buffer))
        self._subscribers.setdefault(size, set()).add(sub)
        if size not in self._readers:
            self._readers[size] = asyncio.create_task(self._read(size), name=f"updates-{size}")
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.get(sub.size, set()).discard(sub)

    def subscribers(self, size: str) -> int:
        return len(self._subscribers.get(size, ()))

    async def ready(self, size: str) -> None:
        """Wait until the reader of ``size`` has its starting position (tests, start-up)."""
        while size not in self._last_id:
            await asyncio.sleep(0.01)

    async def since(self, size: str, last: str) -> AsyncIterator[list[Entry]]:
        """Entries after ``last`` still in the stream, a page at a time (a resumed client)."""
        start = f"({last}"
        while True:
            page = await self.redis.xrange(self.keys.updates(size), start, "+", count=READ_COUNT)
            if not page:
                return
            entries = _entries(page)
            yield entries
            if len(page) < READ_COUNT:
                return
            start = f"({entries[-1][0]}"

    async def close(self) -> None:
        for task in self._readers.values():
            task.cancel()
        for task in self._readers.values():
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._readers.clear()

    async def _read(self, size: str) -> None:
        key = self.keys.updates(size)
        while True:
            try:
                if size not in self._last_id:
                    newest = await self.redis.xrevrange(key, "+", "-", count=1)
                    self._last_id[size] = _entries(newest)[0][0] if newest else "0-0"
                found = await self.redis.xread({key: self._last_id[size]}, count=READ_COUNT, block=BLOCK_MS)
            except RedisError as exc:
                log.warning("reading %s failed (%s); retrying", key, exc)
                await asyncio.sleep(RETRY_S)
                continue
            streams: Any = found or ()
            for _, page in streams:
                entries = _entries(page)
                self._last_id[size] = entries[-1][0]
                self._fan_out(size, entries)

    def _fan_out(self, size: str, entries: Iterable[Entry]) -> None:
        subs = self._subscribers.get(size)
        if not subs:
            return
        for entry in entries:
            for sub in list(subs):
                if not sub.offer(entry):
                    subs.discard(sub)
                    PUSH_DROPPED.inc()
                    log.warning("an updates subscriber of %s was too slow and was dropped", size)


def _entries(page: Any) -> list[Entry]:
    out = []
    for entry_id, fields in page:
        text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
        out.append((text, fields.get(b"w", b"")))
    return out
