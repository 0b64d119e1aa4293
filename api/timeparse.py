"""Time query parameters (``at``, ``start``, ``end``) to epoch milliseconds.

The rule is the event contract's own (:func:`tables.times.parse_time`), so a client can pass an
event's time back as is; what is added here is only what a query string does to a time: spaces
around it, and an unencoded ``+`` arriving as a space (``...T16:10:00 01:00`` meant ``+01:00``).
"""

from __future__ import annotations

import re

from tables.times import parse_time_ms as _parse_time_ms

_LOST_PLUS = re.compile(r"^(.+T[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]+)?)?) ([0-9]{2}(?::?[0-9]{2})?)$")


def parse_time_ms(text: str) -> int:
    """Epoch milliseconds (floored) of an ISO-8601 time or epoch seconds; ``ValueError`` says why not."""
    raw = text.strip()
    lost_plus = _LOST_PLUS.match(raw)
    if lost_plus:
        raw = f"{lost_plus.group(1)}+{lost_plus.group(2)}"
    return _parse_time_ms(raw)
