"""``GET /stream``: window updates pushed as Server-Sent Events, resumable with Last-Event-ID."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from api.deps import ServingDep, WindowParam, invalid_param
from api.metrics import INVALID_STORED, PUSH_SECONDS, PUSH_SUBSCRIBERS
from api.models import RegionWindow, StoredWindow
from api.push import DROPPED, Entry, UpdatesHub, entry_ms, id_after, valid_id
from api.routes import INVALID, UNAVAILABLE
from app.zones import ZoneLookup

router = APIRouter(tags=["stream"])

#: A comment line this often keeps proxies and the browser from closing an idle connection.
HEARTBEAT_S = 15.0
#: What EventSource waits before reconnecting (it then sends Last-Event-ID).
RETRY_MS = 2_000

DESCRIPTION = f"""Server-Sent Events: one `event: window` per update of a window of this size — its
open numbers as they change (`final: false`) and its final result once (`final: true`) — with the
same JSON as `/metrics/region/{{region_id}}` (`current` is null). Each event has an `id:`; a client
that reconnects with the `Last-Event-ID` header (EventSource does this by itself) receives every
update after it that the stream still retains (`PUSH_RETENTION` updates per size), then the live
ones, without gaps or duplicates. A comment line is sent every {HEARTBEAT_S:.0f} s. A client that
reads too slowly is sent `event: dropped` and disconnected (it may reconnect and resume); it never
slows the others. Every API replica serves every client: the updates live in Redis."""


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, **INVALID, **UNAVAILABLE},
    summary="Window updates as Server-Sent Events (live and final), resumable",
    description=DESCRIPTION,
)
async def stream(
    request: Request,
    window: WindowParam,
    serving: ServingDep,
    region_id: Annotated[
        list[int] | None, Query(description="Only these regions (repeat the parameter); default: all")
    ] = None,
    last_event_id: Annotated[str | None, Header(description="Resume after this event id")] = None,
) -> StreamingResponse:
    size = serving.window(window)
    if last_event_id is not None and not valid_id(last_event_id):
        raise invalid_param("Last-Event-ID", "Last-Event-ID must be an event id", last_event_id)
    regions = frozenset(region_id) if region_id else None
    hub: UpdatesHub = request.app.state.updates
    return StreamingResponse(
        _events(hub, size.name, serving.zones, regions, last_event_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(
    hub: UpdatesHub, size: str, zones: ZoneLookup, regions: frozenset[int] | None, last: str | None
) -> AsyncIterator[bytes]:
    sub = hub.subscribe(size)  # before the catch-up read, so nothing falls between the two
    PUSH_SUBSCRIBERS.inc()
    try:
        yield f"retry: {RETRY_MS}\n\n".encode()
        if last is not None:
            async for page in hub.since(size, last):
                for entry in page:
                    event = _event(entry, size, zones, regions)
                    if event:
                        yield event
                    last = entry[0]
        while True:
            try:
                entry = await asyncio.wait_for(sub.queue.get(), HEARTBEAT_S)
            except TimeoutError:
                yield b": heartbeat\n\n"
                continue
            if entry is DROPPED:
                detail = {"reason": "the client read too slowly", "last_event_id": last}
                yield b"event: dropped\ndata: " + orjson.dumps(detail) + b"\n\n"
                return
            if last is not None and not id_after(entry[0], last):
                continue  # already sent by the catch-up read
            event = _event(entry, size, zones, regions)
            if event:
                yield event
            last = entry[0]
    finally:
        hub.unsubscribe(sub)
        PUSH_SUBSCRIBERS.dec()


def _event(entry: Entry, size: str, zones: ZoneLookup, regions: frozenset[int] | None) -> bytes | None:
    """The SSE event of one stream entry, or ``None`` (another region; not a valid window)."""
    entry_id, raw = entry
    record = _window(raw, size)
    if record is None or (regions is not None and record["region_id"] not in regions):
        return None
    zone = zones.get(record["region_id"])
    body = RegionWindow.model_validate(
        {**record, "region_name": zone.name, "borough": zone.borough, "current": None}
    ).model_dump_json()
    PUSH_SECONDS.observe(max(0.0, time.time() - entry_ms(entry_id) / 1000))
    return f"id: {entry_id}\nevent: window\ndata: {body}\n\n".encode()


def _window(raw: bytes, size: str) -> dict[str, Any] | None:
    """A stored window as the sink wrote it; anything else in the stream is ignored (Redis is
    not trusted to hold only what the sink wrote)."""
    try:
        record = orjson.loads(raw)
        StoredWindow.model_validate(record)
    except (orjson.JSONDecodeError, ValidationError):
        INVALID_STORED.inc()
        return None
    if not isinstance(record, dict) or record.get("window") != size:
        INVALID_STORED.inc()
        return None
    return record
