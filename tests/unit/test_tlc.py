"""TLC trip records to events: field mapping, stable ids, New York local time and its DST edges."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from app.events import Rejection, TripEvent
from producers.localtime import local_to_utc, parse_local, zone
from producers.parsers import Schema, csv_records, to_event
from producers.tlc import is_tlc, tlc_fields, trip_id

NY = ZoneInfo("America/New_York")
SAMPLE = Path(__file__).resolve().parents[2] / "data" / "tlc" / "tlc_trips_2019-03_sample.csv"
ROW: dict[str, Any] = {
    "VendorID": "1",
    "tpep_pickup_datetime": "2019-03-23 20:21:09",
    "tpep_dropoff_datetime": "2019-03-23 20:27:24",
    "passenger_count": "1",
    "trip_distance": "1.6",
    "PULocationID": "141",
    "DOLocationID": "233",
    "fare_amount": "7.0",
    "total_amount": "12.95",
}


def event(record: dict[str, Any], tz: ZoneInfo | None = NY) -> TripEvent:
    result = to_event(record, Schema.TLC, tz)
    assert isinstance(result, TripEvent), result
    return result


def rejection(record: dict[str, Any], tz: ZoneInfo | None = NY) -> Rejection:
    result = to_event(record, Schema.TLC, tz)
    assert isinstance(result, Rejection), result
    return result


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def test_a_yellow_row_maps_to_the_event() -> None:
    ev = event(ROW)
    assert ev.region_id == 141
    assert ev.event_time == utc(2019, 3, 24, 0, 27, 24)  # 20:27:24 EDT
    assert ev.duration == 375
    assert (ev.fare, ev.distance) == (7.0, 1.6)
    assert ev.trip_id.startswith("tlc-") and len(ev.trip_id) <= 128


def test_a_green_row_maps_the_same_way() -> None:
    green = {k.replace("tpep_", "lpep_"): v for k, v in ROW.items()}
    assert is_tlc(green)
    ev = event(green)
    assert (ev.region_id, ev.event_time, ev.duration) == (141, utc(2019, 3, 24, 0, 27, 24), 375)


def test_json_records_with_numbers_map_too() -> None:
    record = {**ROW, "PULocationID": 141, "fare_amount": 7.0, "trip_distance": 1.6}
    assert event(record).region_id == 141


def test_trip_ids_are_stable_and_depend_on_the_content() -> None:
    assert trip_id(ROW) == trip_id(dict(reversed(list(ROW.items()))))
    assert trip_id(ROW) == trip_id(dict(ROW))
    assert trip_id(ROW) != trip_id({**ROW, "total_amount": "12.96"})
    assert trip_id({**ROW, "extra": None}) == trip_id({**ROW, "extra": ""})


def test_the_utc_zone_option_reads_times_as_utc() -> None:
    assert event(ROW, tz=None).event_time == utc(2019, 3, 23, 20, 27, 24)
    assert zone("UTC") is None and zone("utc") is None
    with pytest.raises(ValueError, match="unknown time zone"):
        zone("Mars/Olympus_Mons")


def test_times_with_an_explicit_offset_keep_it() -> None:
    record = {
        **ROW,
        "tpep_pickup_datetime": "2019-03-23T20:21:09Z",
        "tpep_dropoff_datetime": "2019-03-23T20:27:24+00:00",
    }
    ev = event(record, tz=NY)
    assert (ev.event_time, ev.duration) == (utc(2019, 3, 23, 20, 27, 24), 375)


def test_standard_time_before_the_switch() -> None:
    ev = event(
        {**ROW, "tpep_pickup_datetime": "2019-03-09 12:00:00", "tpep_dropoff_datetime": "2019-03-09 12:10:00"}
    )
    assert ev.event_time == utc(2019, 3, 9, 17, 10)  # EST, UTC-5


def test_a_nonexistent_spring_forward_time_moves_forward_by_the_gap() -> None:
    assert local_to_utc(datetime.fromisoformat("2019-03-10 02:30"), NY) == utc(
        2019, 3, 10, 7, 30
    )  # = 03:30 EDT
    ev = event(
        {**ROW, "tpep_pickup_datetime": "2019-03-10 01:55:00", "tpep_dropoff_datetime": "2019-03-10 02:30:00"}
    )
    assert (ev.event_time, ev.duration) == (utc(2019, 3, 10, 7, 30), 35 * 60)


def test_a_trip_across_the_spring_forward_gap_has_its_true_length() -> None:
    ev = event(
        {**ROW, "tpep_pickup_datetime": "2019-03-10 01:55:00", "tpep_dropoff_datetime": "2019-03-10 03:05:00"}
    )
    assert (ev.event_time, ev.duration) == (utc(2019, 3, 10, 7, 5), 10 * 60)


def test_an_ambiguous_fall_back_time_is_the_first_occurrence() -> None:
    assert local_to_utc(datetime.fromisoformat("2019-11-03 01:30"), NY) == utc(2019, 11, 3, 5, 30)  # EDT
    ev = event(
        {**ROW, "tpep_pickup_datetime": "2019-11-03 01:10:00", "tpep_dropoff_datetime": "2019-11-03 01:50:00"}
    )
    assert (ev.event_time, ev.duration) == (utc(2019, 11, 3, 5, 50), 40 * 60)


def test_a_dropoff_that_would_precede_its_pickup_is_the_second_occurrence() -> None:
    ev = event(
        {**ROW, "tpep_pickup_datetime": "2019-11-03 01:50:00", "tpep_dropoff_datetime": "2019-11-03 01:10:00"}
    )
    assert (ev.event_time, ev.duration) == (utc(2019, 11, 3, 6, 10), 20 * 60)  # 01:10 EST


def test_resolution_is_deterministic() -> None:
    times = {parse_local("2019-11-03 01:30:00", NY) for _ in range(5)}
    assert times == {utc(2019, 11, 3, 5, 30)}


def test_a_dropoff_before_its_pickup_outside_dst_is_invalid() -> None:
    bad = {
        **ROW,
        "tpep_pickup_datetime": "2019-03-23 20:30:00",
        "tpep_dropoff_datetime": "2019-03-23 20:27:24",
    }
    assert rejection(bad).reason == "invalid:duration"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"tpep_dropoff_datetime": ""}, "missing:event_time"),
        ({"tpep_dropoff_datetime": "soon"}, "invalid:event_time"),
        ({"tpep_pickup_datetime": None}, "missing:duration"),
        ({"tpep_pickup_datetime": 1553372469}, "invalid:duration"),
        ({"fare_amount": "-3.5"}, "invalid:fare"),
        ({"fare_amount": "nan"}, "invalid:fare"),
        ({"trip_distance": "inf"}, "invalid:distance"),
        ({"trip_distance": "1000.5"}, "invalid:distance"),
        ({"PULocationID": ""}, "invalid:region_id"),
        ({"PULocationID": "-4"}, "invalid:region_id"),
    ],
)
def test_bad_tlc_rows_are_rejected(changes: dict[str, Any], expected: str) -> None:
    assert rejection({**ROW, **changes}).reason == expected


def test_missing_columns_are_missing_fields() -> None:
    record = {k: v for k, v in ROW.items() if k != "fare_amount"}
    assert rejection(record).reason == "missing:fare"
    record = {k: v for k, v in ROW.items() if k != "tpep_pickup_datetime"}
    assert tlc_fields(record, NY) == Rejection("missing:duration", "tpep_pickup_datetime: field required")


def test_a_trip_longer_than_a_day_is_invalid() -> None:
    long = {
        **ROW,
        "tpep_pickup_datetime": "2019-03-22 20:00:00",
        "tpep_dropoff_datetime": "2019-03-23 20:27:24",
    }
    assert rejection(long).reason == "invalid:duration"


def test_the_bundled_sample_maps_without_structural_errors() -> None:
    with SAMPLE.open("rb") as fh:
        records = list(csv_records(fh))
    assert len(records) == 6500
    results = [to_event(r.payload, Schema.TLC, NY) for r in records]
    reasons = {r.reason for r in results if isinstance(r, Rejection)}
    assert reasons <= {"invalid:fare", "invalid:duration", "invalid:distance"}
    events = [r for r in results if isinstance(r, TripEvent)]
    assert len({e.trip_id for e in events}) == len(events)
    assert min(e.event_time for e in events) >= utc(2019, 2, 28)
