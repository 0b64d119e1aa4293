"""Time formatting for results: one rule, shared by the worker's records and the API's answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
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
