"""NYC TLC trip records (yellow ``tpep_*``, green ``lpep_*``) mapped to the event's fields.

The mapping only renames and derives fields; whether the result is a valid event is decided by
:func:`app.events.parse_event` like for every other input. A trip becomes an event when it
completes, so the event time is the drop-off time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, tzinfo
from hashlib import blake2b
from typing import Any

from app.events import Rejection
from producers.localtime import parse_local

PICKUP_COLUMNS = ("tpep_pickup_datetime", "lpep_pickup_datetime")
DROPOFF_COLUMNS = ("tpep_dropoff_datetime", "lpep_dropoff_datetime")
REGION_COLUMN = "PULocationID"
#: Event field <- TLC column, copied as they are (the model converts the text to numbers).
COPIED = (("region_id", REGION_COLUMN), ("fare", "fare_amount"), ("distance", "trip_distance"))
TRIP_ID_PREFIX = "tlc-"


def is_tlc(keys: Iterable[str]) -> bool:
    """A record is TLC when it has the pick-up zone and a drop-off time: the two the event needs most."""
    names = set(keys)
    return REGION_COLUMN in names and any(col in names for col in DROPOFF_COLUMNS)


def trip_id(record: Mapping[str, Any]) -> str:
    """A stable id from the record's content: the same row always gets the same id.

    Columns are hashed in name order, so a file with its columns reordered gives the same ids;
    ``None`` and the empty string are the same missing value.
    """
    text = "\x1e".join(f"{k}\x1f{'' if v is None else v}" for k, v in sorted(record.items()))
    return TRIP_ID_PREFIX + blake2b(text.encode("utf-8", "surrogatepass"), digest_size=10).hexdigest()


def _column(record: Mapping[str, Any], names: tuple[str, ...]) -> tuple[str, Any]:
    for name in names:
        if name in record:
            return name, record[name]
    return names[0], None


def _time(
    record: Mapping[str, Any], names: tuple[str, ...], field: str, tz: tzinfo | None, after: datetime | None
) -> datetime | Rejection:
    column, value = _column(record, names)
    if value is None or value == "":
        return Rejection(f"missing:{field}", f"{column}: field required")
    if not isinstance(value, str):
        return Rejection(f"invalid:{field}", f"{column}: not a date-time (got {value!r:.80})")
    try:
        return parse_local(value, tz, after)
    except ValueError:
        return Rejection(f"invalid:{field}", f"{column}: not a date-time (got {value!r:.80})")


def tlc_fields(record: Mapping[str, Any], tz: tzinfo | None) -> dict[str, Any] | Rejection:
    """The event fields of one TLC record, times read as local time in ``tz`` (UTC when None).

    duration = drop-off - pick-up in seconds, both converted to UTC first so that a trip across a
    DST change gets its true length; see :mod:`producers.localtime` for the DST rules.
    """
    pickup = _time(record, PICKUP_COLUMNS, "duration", tz, None)
    if isinstance(pickup, Rejection):
        return pickup
    dropoff = _time(record, DROPOFF_COLUMNS, "event_time", tz, pickup)
    if isinstance(dropoff, Rejection):
        return dropoff
    fields: dict[str, Any] = {
        "trip_id": trip_id(record),
        "event_time": dropoff,
        "duration": (dropoff - pickup).total_seconds(),
    }
    for field, column in COPIED:
        value = record.get(column)
        if value is not None:
            fields[field] = value
    return fields
