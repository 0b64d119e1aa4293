"""Control records on the events topic: they advance event time without being events.

A control record has a Kafka header named ``streampulse-control`` whose value is its kind, and a
JSON value ``{"control": kind, "event_time_ms": T}``:

- ``end-of-stream`` (written by the replayer to every partition after its last event): event time
  has passed ``T``, the replay's highest event time, so every window holding an event at or before
  ``T`` is closed.
- ``idle`` (written by a worker to a partition that is caught up and has been silent for
  ``IDLE_TIMEOUT``): the same, with ``T`` = the highest event time seen on that partition.
  Putting the decision into the log keeps recovery deterministic: a restarted worker replays the
  same control record.

Anything else carrying the header (an unknown kind, a malformed value, a time before 1970 or
beyond ``MAX_FUTURE``) is dead-lettered, never applied. Consumers of the events topic other than
StreamPulse skip records carrying this header.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import orjson

from app.events import FUTURE, Rejection

CONTROL_HEADER = "streampulse-control"
END_OF_STREAM = "end-of-stream"
IDLE = "idle"
KINDS = frozenset({END_OF_STREAM, IDLE})
INVALID_CONTROL = "invalid_control"


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


def control_kind(headers: Iterable[tuple[str, bytes | None]] | None) -> str | None:
    """The kind named by the control header (its exact name), or ``None`` for an ordinary
    record. The kind is returned as found, known or not: :func:`decode_control` judges it."""
    for name, value in headers or ():
        if name == CONTROL_HEADER:
            return value.decode("utf-8", "replace") if value else ""
    return None


def decode_control(kind: str, value: bytes | None, latest_ms: int) -> Control | Rejection:
    """The control record, or why it is invalid (it then goes to the dead-letter topic).

    A control record moves event time forward for good (its state is changelogged), so only
    what the replayer and the workers write is accepted: a known kind, the same kind in the
    value, and a time bounded like an event time (not before 1970, at most ``latest_ms``).
    """
    if kind not in KINDS:
        return Rejection(INVALID_CONTROL, f"unknown control kind {kind[:40]!r}")
    try:
        data = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return Rejection(INVALID_CONTROL, "control record value is not JSON")
    if not isinstance(data, dict) or data.get("control") != kind:
        return Rejection(INVALID_CONTROL, f'control record value is not {{"control": "{kind}", ...}}')
    t_ms = data.get("event_time_ms")
    if type(t_ms) is not int or t_ms < 0:
        return Rejection(INVALID_CONTROL, "control record without a non-negative integer event_time_ms")
    if t_ms > latest_ms:
        return Rejection(FUTURE, "control record event_time_ms is more than MAX_FUTURE ahead of the clock")
    return Control(kind, t_ms)
