"""The formats of what the worker writes besides window results: dead letters and late events.

Both are read by people and tools downstream (docs/processing.md gives the fields), so they are
built in one place from plain values.
"""

from __future__ import annotations

from typing import Any

import orjson

from tables.partition_state import LateEvent
from tables.times import format_time_ms

#: Dead-lettered values and keys are cut to these sizes (the original size is in a header):
#: the producer refuses requests over 1,000,000 bytes, and the broker accepts slightly more.
DLQ_VALUE_MAX = 900_000
DLQ_KEY_MAX = 1024


def dlq_record(
    source: str, key: bytes | None, value: bytes | None, reason: str, message: str
) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    """Key, value and headers of a dead letter: the record as it came (cut to a size the
    producer accepts, the original size kept), why it was refused, and where it came from
    (``topic/partition/offset``)."""
    data = value or b""
    headers = [
        ("streampulse-error-reason", reason.encode()),
        ("streampulse-error-message", message.encode()[:1000]),
        ("streampulse-source", source.encode()),
        ("streampulse-original-size", str(len(data)).encode()),
    ]
    if len(data) > DLQ_VALUE_MAX:
        data = data[:DLQ_VALUE_MAX]
        headers.append(("streampulse-truncated", b"true"))
    return (key[:DLQ_KEY_MAX] if key is not None else None), data, headers


def late_record(event: dict[str, Any], late: LateEvent, source: str) -> bytes:
    """Value of a late-events record: the trip, the window it missed and how far time had got."""
    size, start_ms = late.size, late.window_start_ms
    return orjson.dumps(
        {
            "event": event,
            "window": size.name,
            "window_start": format_time_ms(start_ms),
            "window_end": format_time_ms(start_ms + size.size_ms),
            "closed_up_to": format_time_ms(late.frontier_ms),
            "reason": f"the {size.name} window was already final",
            "source": source,
        }
    )
