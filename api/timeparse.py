"""Time query parameters (``at``, ``start``, ``end``) to epoch milliseconds.

The API accepts the same spellings as the event contract's ``event_time`` (ISO-8601 with ``Z`` or an
offset, a naive time meaning UTC, or epoch seconds), so a client can pass an event's time back as is.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from app.events import EPOCH

_MS = timedelta(milliseconds=1)
_MAX_EPOCH_S = 253_402_300_799  # 9999-12-31T23:59:59Z, the last second a datetime can hold
_EPOCH_SECONDS = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")
# An unencoded ``+`` in a query string arrives as a space: ``...T16:10:00 01:00`` meant ``+01:00``.
_LOST_PLUS = re.compile(r"^(.+T[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]+)?)?) ([0-9]{2}(?::?[0-9]{2})?)$")


def parse_time_ms(text: str) -> int:
    """Epoch milliseconds (floored) of an ISO-8601 time or epoch seconds; ``ValueError`` says why not."""
    raw = text.strip()
    if _EPOCH_SECONDS.match(raw):
        seconds = Decimal(raw)
        if not 0 <= seconds <= _MAX_EPOCH_S:
            raise ValueError(f"epoch seconds must be between 0 and {_MAX_EPOCH_S}, got {raw}")
        return int((seconds * 1000).to_integral_value(rounding="ROUND_FLOOR"))
    lost_plus = _LOST_PLUS.match(raw)
    if lost_plus:
        raw = f"{lost_plus.group(1)}+{lost_plus.group(2)}"
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(
            f"expected an ISO-8601 time (e.g. 2019-03-04T16:10:00Z) or epoch seconds, got {text!r}"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return (parsed - EPOCH) // _MS
    except OverflowError:
        raise ValueError(f"time out of range: {text!r}") from None
