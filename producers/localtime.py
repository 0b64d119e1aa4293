"""Source-local wall-clock times to UTC, with a fixed rule for the hours daylight saving breaks.

A local time at a DST transition names either no instant (spring forward: 02:30 in New York on
2019-03-10) or two (fall back: 01:30 on 2019-11-03). Both are resolved deterministically, so the
same file always gives the same event times:

- nonexistent (in the gap): read with the offset in force *before* the jump (PEP 495 ``fold=0``),
  i.e. moved forward by the gap: 02:30 EST = 07:30Z = 03:30 EDT. A taxi meter whose clock had not
  yet been moved forward would print exactly this.
- ambiguous (repeated hour): the first occurrence (``fold=0``, daylight time), unless the caller
  passes ``not_before`` and the first occurrence precedes it while the second does not: a drop-off
  at 01:10 after a pick-up at 01:50 must be the second 01:10. This picks the shortest trip
  duration that is not negative.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

#: Zone names that need no conversion: the event model already reads naive times as UTC.
_UTC_NAMES = frozenset({"utc", "etc/utc", "z", "zulu", "gmt", "etc/gmt"})


def zone(name: str) -> tzinfo | None:
    """The zone called ``name``; ``None`` for UTC (nothing to convert). Raises ``ValueError``."""
    if name.strip().lower() in _UTC_NAMES:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r} (use an IANA name such as America/New_York)") from exc


def local_to_utc(naive: datetime, tz: tzinfo, not_before: datetime | None = None) -> datetime:
    """The UTC instant of the local wall-clock time ``naive`` in ``tz`` (rules in the module doc)."""
    first = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if not_before is not None and first < not_before:
        second = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
        if second >= not_before:
            return second
    return first


def parse_local(text: str, tz: tzinfo | None, not_before: datetime | None = None) -> datetime:
    """Parse an ISO-8601 date-time; a naive one is local time in ``tz`` (UTC when ``tz`` is None).

    Raises ``ValueError`` when ``text`` is not a date-time.
    """
    parsed = datetime.fromisoformat(text.strip())
    if parsed.tzinfo is not None:
        return parsed.astimezone(UTC)
    if tz is None:
        return parsed.replace(tzinfo=UTC)
    return local_to_utc(parsed, tz, not_before)
