"""Control records on the events topic: they advance event time without being events.

A control record has a Kafka header named ``streampulse-control`` whose value is its kind, and a
JSON value ``{"control": kind, "event_time_ms": T}``:

- ``end-of-stream`` (written by the replayer to every partition after its last event): event time
  has passed ``T``, the replay's highest event time, so every window holding an event at or before
  ``T`` is closed.
- ``idle`` (written by a worker to a partition that has been silent for ``IDLE_TIMEOUT``): the same,
  with ``T`` = the highest event time seen on that partition. Putting the decision into the log
  keeps recovery deterministic: a restarted worker replays the same control record.

Consumers of the events topic other than StreamPulse skip records carrying this header.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import orjson

CONTROL_HEADER = "streampulse-control"
END_OF_STREAM = "end-of-stream"
IDLE = "idle"
KINDS = frozenset({END_OF_STREAM, IDLE})


@dataclass(frozen=True, slots=True)
class Control:
    kind: str
    event_time_ms: int


def encode_control(kind: str, event_time_ms: int) -> tuple[bytes, list[tuple[str, bytes]]]:
    """Value and headers of a control record."""
    if kind not in KINDS:
        raise ValueError(f"unknown control kind {kind!r}")
    value = orjson.dumps({"control": kind, "event_time_ms": int(event_time_ms)})
    return value, [(CONTROL_HEADER, kind.encode())]


def control_kind(headers: Iterable[tuple[str, bytes]] | None) -> str | None:
    """The control kind named by the headers, or ``None`` for an ordinary record."""
    for name, value in headers or ():
        if name.startswith(CONTROL_HEADER):
            return value.decode("utf-8", "replace") if value else END_OF_STREAM
    return None


def decode_control(kind: str, value: bytes | None) -> Control | None:
    """Parse a control record's value; ``None`` when it is malformed (it then goes to the DLQ)."""
    try:
        data = orjson.loads(value or b"")
        return Control(kind, int(data["event_time_ms"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
