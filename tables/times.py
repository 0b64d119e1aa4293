"""Times: the one way a time is read (events, API parameters, the replayer's options) and the one
way a result's time is written."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_MIN_FORMATTABLE_MS = (datetime.min.replace(tzinfo=UTC) - EPOCH) // _MS
_MAX_FORMATTABLE_MS = (datetime.max.replace(tzinfo=UTC) - EPOCH) // _MS


@lru_cache(maxsize=65_536)
def format_time_ms(t_ms: int) -> str:
    """ISO-8601 UTC with a ``Z``; milliseconds only when there are some. Cached: every region
    of a window shares its start and end, and a worker formats them for each result.

    Never raises: a time outside what ``datetime`` can hold (only state written before event
    times were bounded could carry one) is clamped to the nearest representable instant, so
    formatting a result can never stop its partition."""
    t_ms = min(max(int(t_ms), _MIN_FORMATTABLE_MS), _MAX_FORMATTABLE_MS)
    dt = EPOCH + timedelta(milliseconds=t_ms)
    # isoformat, not strftime: "%Y" does not pad years before 1000 to four digits on Linux.
    text = dt.replace(tzinfo=None, microsecond=0).isoformat()
    if t_ms % 1000:
        return f"{text}.{t_ms % 1000:03d}Z"
    return text + "Z"


#: The last second a ``datetime`` can hold: 9999-12-31T23:59:59Z.
MAX_EPOCH_S = 253_402_300_799
_NUMERIC = re.compile(r"^\s*[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$", re.ASCII)


def parse_time(value: str | int | float) -> datetime:
    """The one reading of a time, for events, API parameters and the replayer's options: an
    ISO-8601 text (``Z`` or ``z`` or an offset; naive means UTC) or epoch seconds, as a number or
    as numeric text (never guessed to be milliseconds), from 0 to :data:`MAX_EPOCH_S`. Returns an
    aware UTC datetime; ``ValueError`` says why not."""
    if isinstance(value, bool):
        raise ValueError("a time is an ISO-8601 text or epoch seconds, not a boolean")
    seconds: Decimal | float | None = None
    if isinstance(value, str):
        if _NUMERIC.match(value):
            seconds = Decimal(value)  # exact: "1.0005" is 1000.5 ms, not 1000.4999...
    else:
        seconds = value
    if seconds is not None:
        if not math.isfinite(seconds) or not 0 <= seconds <= MAX_EPOCH_S:
            raise ValueError(f"epoch seconds must be between 0 and {MAX_EPOCH_S}, got {value}")
        if isinstance(seconds, Decimal):
            return EPOCH + timedelta(microseconds=int(seconds * 1_000_000))
        return EPOCH + timedelta(seconds=seconds)  # a float: to the nearest microsecond
    assert isinstance(value, str)
    text = value[:-1] + "Z" if value.endswith("z") else value
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"expected an ISO-8601 time (e.g. 2019-03-04T16:10:00Z) or epoch seconds, got {value!r}"
        ) from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"time out of range: {value!r}") from None


def parse_time_ms(value: str | int | float) -> int:
    """:func:`parse_time` in epoch milliseconds, floored."""
    return (parse_time(value) - EPOCH) // _MS
