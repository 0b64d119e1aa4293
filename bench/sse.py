"""A subscriber of ``GET /stream`` as a dashboard is one: one HTTP connection, events parsed as
they arrive, each stamped with the wall clock on receipt.

httpx streaming in the benchmark's own event loop (no browser): what is measured is the API's
push, plus the parse of this client, which is a few microseconds per event. The connection is
open, and the API has registered it, once the first bytes (``retry:``) arrive, since the API
subscribes the client before it sends anything.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import httpx

#: One line per request would be printed in the middle of the bench's own output.
logging.getLogger("httpx").setLevel(logging.WARNING)


@dataclass(frozen=True, slots=True)
class SseEvent:
    id: str
    event: str
    data: bytes
    #: ``time.time()`` when the event's last line was read.
    received_s: float


class SseParser:
    """Lines of a ``text/event-stream`` in, events out (``id``, ``event`` and ``data`` fields;
    a ``data`` field over several lines is joined with newlines, as EventSource does)."""

    def __init__(self) -> None:
        self._fields: dict[str, list[str]] = {}

    def feed(self, line: str, now_s: float) -> SseEvent | None:
        """One line without its line break; an event when the line is the blank one ending it."""
        if line:
            if not line.startswith(":"):  # a comment (the heartbeat) carries nothing
                name, _, value = line.partition(":")
                self._fields.setdefault(name, []).append(value.removeprefix(" "))
            return None
        fields, self._fields = self._fields, {}
        if "data" not in fields:
            return None
        return SseEvent(
            fields.get("id", [""])[-1],
            fields.get("event", ["message"])[-1],
            "\n".join(fields["data"]).encode(),
            now_s,
        )


async def subscribe(
    base_url: str,
    window: str,
    regions: Iterable[int],
    on_event: Callable[[SseEvent], None],
    connected: asyncio.Event,
) -> None:
    """Read ``/stream?window=...&region_id=...`` until cancelled, calling ``on_event`` per event."""
    params: dict[str, str | list[str]] = {"window": window, "region_id": [str(r) for r in regions]}
    timeout = httpx.Timeout(10.0, read=None)
    parser = SseParser()
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=timeout) as client,
        client.stream("GET", "/stream", params=params) as resp,
    ):
        resp.raise_for_status()
        async for line in resp.aiter_lines():
            connected.set()
            event = parser.feed(line, time.time())
            if event is not None:
                on_event(event)
