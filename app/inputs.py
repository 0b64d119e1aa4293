"""What a record of the events topic is to the fold: a trip, a control record or a rejection.

The one place that applies the event model and the control-record rules to a Kafka record, so
the fold (:mod:`tables.fold`) stays free of Kafka and pydantic.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from app.control import control_kind, decode_control
from app.events import Rejection, default_limits, parse_event
from tables.fold import Record, Rejected, Tick

log = logging.getLogger(__name__)


def _headers(headers: Any) -> list[tuple[str, bytes]]:
    if isinstance(headers, Mapping):
        return list(headers.items())
    return list(headers or ())


def decode(offset: int, timestamp: float | None, value: bytes | None, headers: Any) -> Record:
    """Never raises: a record that cannot even be decoded is rejected with the error."""
    ts = timestamp or 0.0
    try:
        kind = control_kind(_headers(headers)) if headers else None
        if kind is not None:
            control = decode_control(kind, value, default_limits().latest_ms())
            if isinstance(control, Rejection):
                return (offset, ts, Rejected(control.reason, control.message))
            return (offset, ts, Tick(kind, control.event_time_ms))
        parsed = parse_event(value if value is not None else b"")
        if isinstance(parsed, Rejection):
            return (offset, ts, Rejected(parsed.reason, parsed.message))
        return (offset, ts, parsed)
    except Exception as exc:  # a worker never crashes on one record
        log.exception("record at offset %d could not be decoded", offset)
        return (offset, ts, Rejected("processing_error", repr(exc)))
