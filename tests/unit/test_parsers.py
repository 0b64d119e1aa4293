"""The replayer's pure parsing: format/schema detection, CSV, JSON, JSON Lines, records to events."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import orjson
import pytest

from app.events import Rejection, TripEvent
from producers.parsers import (
    BOM,
    RAW_LIMIT,
    Format,
    Record,
    Schema,
    csv_records,
    detect_format,
    detect_schema,
    json_array_records,
    jsonl_records,
    raw_text,
    to_event,
)

HEADER = "trip_id,region_id,event_time,fare,duration,distance"
GOOD = "t1,42,2025-08-15T10:00:01Z,12.5,600,2.3"


def lines(text: str | bytes) -> list[bytes]:
    data = text.encode() if isinstance(text, str) else text
    return data.splitlines(keepends=True)


def csv_events(text: str | bytes) -> list[tuple[Record, TripEvent | Rejection]]:
    return [(r, to_event(r.payload, Schema.CANONICAL, None)) for r in csv_records(lines(text))]


def reason(result: TripEvent | Rejection) -> str:
    assert isinstance(result, Rejection), result
    return result.reason


@pytest.mark.parametrize(
    ("name", "head", "expected"),
    [
        ("trips.csv", b'{"a": 1}', Format.CSV),
        ("trips.csv.gz", b"a,b\n", Format.CSV),
        ("trips.jsonl", b"[1]", Format.JSONL),
        ("trips.NDJSON", b"{}", Format.JSONL),
        ("trips.json", b"  [\n{}", Format.JSON),
        ("trips.json", b'{"a": 1}\n{"a": 2}', Format.JSONL),
        ("trips.json.gz", BOM + b"[]", Format.JSON),
        ("trips.json", b"", Format.JSON),
        ("-", b"[{}]", Format.JSON),
        ("-", b'\n\n{"trip_id": 1}', Format.JSONL),
        ("-", b"trip_id,region_id", Format.CSV),
        ("data", BOM + b"{}", Format.JSONL),
        ("data.txt", b"", Format.CSV),
    ],
)
def test_format_from_extension_then_content(name: str, head: bytes, expected: Format) -> None:
    assert detect_format(name, head) is expected


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        (HEADER.split(","), Schema.CANONICAL),
        (["VendorID", "tpep_pickup_datetime", "tpep_dropoff_datetime", "PULocationID"], Schema.TLC),
        (["lpep_pickup_datetime", "lpep_dropoff_datetime", "PULocationID"], Schema.TLC),
        (["PULocationID", "fare_amount"], Schema.CANONICAL),
        ([], Schema.CANONICAL),
    ],
)
def test_schema_from_keys(keys: list[str], expected: Schema) -> None:
    assert detect_schema(keys) is expected


def test_csv_rows_become_events_with_line_and_row_numbers() -> None:
    text = f"{HEADER}\r\n{GOOD}\r\n\r\nt2,7,2025-08-15T10:00:02.5+02:00,3,0,0\r\n"
    (r1, e1), (r2, e2) = csv_events(text)
    assert (r1.line, r1.row, r1.raw) == (2, 1, GOOD)
    assert (r2.line, r2.row) == (4, 2)
    assert isinstance(e1, TripEvent) and isinstance(e2, TripEvent)
    assert (e1.region_id, e1.fare, e1.duration, e1.distance) == (42, 12.5, 600, 2.3)
    assert e2.event_time == datetime(2025, 8, 15, 8, 0, 2, 500_000, tzinfo=UTC)


def test_csv_bom_is_not_part_of_the_first_column() -> None:
    ((_, event),) = csv_events(BOM + f"{HEADER}\n{GOOD}\n".encode())
    assert isinstance(event, TripEvent) and event.trip_id == "t1"


@pytest.mark.parametrize("text", ["", "\n\n", f"{HEADER}\n", f"{HEADER}\n\n  \n"])
def test_empty_csv_has_no_records(text: str) -> None:
    assert list(csv_records(lines(text))) == []


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ("t1,42,2025-08-15T10:00:01Z,12.5,600", "malformed_row"),
        (GOOD + ",extra", "malformed_row"),
        ('t1,42,"2025-08-15T10:00:01Z,12.5,600,2.3', "malformed_row"),
        ("t1,42,2025-08-15T10:00:01Z,abc,600,2.3", "invalid:fare"),
        ("t1,forty,2025-08-15T10:00:01Z,12.5,600,2.3", "invalid:region_id"),
        ("t1,4.5,2025-08-15T10:00:01Z,12.5,600,2.3", "invalid:region_id"),
        ("t1,-1,2025-08-15T10:00:01Z,12.5,600,2.3", "invalid:region_id"),
        ("t1,42,yesterday,12.5,600,2.3", "invalid:event_time"),
        ("t1,42,2025-08-15T10:00:01Z,,600,2.3", "invalid:fare"),
        ("t1,42,2025-08-15T10:00:01Z,nan,600,2.3", "invalid:fare"),
        ("t1,42,2025-08-15T10:00:01Z,12.5,inf,2.3", "invalid:duration"),
        ("t1,42,2025-08-15T10:00:01Z,12.5,600,-Infinity", "invalid:distance"),
        ("t1,42,2025-08-15T10:00:01Z,10000.01,600,2.3", "invalid:fare"),
        ("t1,42,2025-08-15T10:00:01Z,12.5,86401,2.3", "invalid:duration"),
        (",42,2025-08-15T10:00:01Z,12.5,600,2.3", "invalid:trip_id"),
    ],
)
def test_bad_csv_rows_are_rejected_with_a_reason(row: str, expected: str) -> None:
    ((record, event),) = csv_events(f"{HEADER}\n{row}\n")
    assert reason(event) == expected
    assert record.line == 2 and record.row == 1


def test_a_bad_row_does_not_hide_the_rows_after_it() -> None:
    results = csv_events(f"{HEADER}\nt1,42\n{GOOD}\nt3,1,2025-08-15T10:00:01Z,1,1,1,9\n{GOOD}\n")
    assert [r.line for r, _ in results] == [2, 3, 4, 5]
    assert [isinstance(e, TripEvent) for _, e in results] == [False, True, False, True]


def test_missing_columns_reject_every_row_naming_the_field() -> None:
    text = "trip_id,region_id,event_time,duration,distance\nt1,42,2025-08-15T10:00:01Z,600,2.3\n"
    ((_, event),) = csv_events(text)
    assert isinstance(event, Rejection)
    assert event.reason == "missing:fare"


def test_extra_columns_are_ignored() -> None:
    ((_, event),) = csv_events(f"{HEADER},note\n{GOOD},hello\n")
    assert isinstance(event, TripEvent)


def test_numeric_csv_event_time_is_epoch_seconds_not_a_guess() -> None:
    ((_, seconds),) = csv_events(f"{HEADER}\nt1,42,1755252001.5,12.5,600,2.3\n")
    assert isinstance(seconds, TripEvent)
    assert seconds.event_time_ms == 1_755_252_001_500
    ((_, millis),) = csv_events(f"{HEADER}\nt1,42,1755252001123,12.5,600,2.3\n")
    assert reason(millis) == "invalid:event_time"


def test_quoted_field_over_two_lines_keeps_its_raw_text_and_first_line() -> None:
    text = f'{HEADER}\n"t\n1",42,2025-08-15T10:00:01Z,12.5,600,2.3\n{GOOD}\n'
    (r1, e1), (r2, _) = csv_events(text)
    assert isinstance(e1, TripEvent) and e1.trip_id == "t\n1"
    assert r1.raw == '"t\n1",42,2025-08-15T10:00:01Z,12.5,600,2.3'
    assert (r1.line, r2.line) == (2, 4)


def test_huge_fields_are_rejected_and_the_raw_text_is_bounded() -> None:
    huge_id = "x" * 100_000
    over_limit = "y" * (csv.field_size_limit() + 1)
    results = csv_events(
        f"{HEADER}\n{huge_id},1,2025-08-15T10:00:01Z,1,1,1\n{over_limit},1,1,1,1,1\n{GOOD}\n"
    )
    assert [reason(e) for _, e in results[:2]] == ["invalid:trip_id", "malformed_row"]
    assert isinstance(results[2][1], TripEvent)
    text, truncated = raw_text(results[0][0].raw)
    assert truncated and len(text) == RAW_LIMIT


def test_invalid_utf8_rows_are_rejected() -> None:
    data = f"{HEADER}\n".encode() + b"t\xff1,42,2025-08-15T10:00:01Z,12.5,600,2.3\n" + f"{GOOD}\n".encode()
    results = csv_events(data)
    assert reason(results[0][1]) == "invalid_encoding"
    assert "\ufffd" in str(results[0][0].raw)
    assert isinstance(results[1][1], TripEvent)


def jsonl_events(text: str | bytes) -> list[tuple[Record, TripEvent | Rejection]]:
    return [(r, to_event(r.payload, Schema.CANONICAL, None)) for r in jsonl_records(lines(text))]


EVENT = {
    "trip_id": "j1",
    "region_id": 3,
    "event_time": "2025-08-15T10:00:01Z",
    "fare": 9.5,
    "duration": 120,
    "distance": 1.25,
}


def jline(**changes: object) -> str:
    return orjson.dumps({**EVENT, **changes}).decode()


def test_jsonl_lines_with_bom_and_blank_lines() -> None:
    text = BOM + f"{jline()}\n\n   \n{jline(trip_id='j2')}\n".encode()
    results = jsonl_events(text)
    assert [(r.line, r.row) for r, _ in results] == [(1, 1), (4, 2)]
    assert [e.trip_id for _, e in results if isinstance(e, TripEvent)] == ["j1", "j2"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("{not json", "invalid_json"),
        ("[1, 2]", "not_an_object"),
        ('"just a string"', "not_an_object"),
        ('{"trip_id": "x"}', "missing:region_id"),
        (jline(fare="NaN"), "invalid:fare"),
        (jline().replace("9.5", "NaN"), "invalid:fare"),
        (jline().replace("9.5", "Infinity"), "invalid:fare"),
        (jline(region_id=True), "invalid:region_id"),
        (jline(region_id="3"), None),
        (jline(trip_id=7), "invalid:trip_id"),
        (jline(trip_id="x" * 129), "invalid:trip_id"),
        (jline(trip_id="x" * 1_000_000), "invalid:trip_id"),
        (jline(event_time=1755252001), None),
        (jline(event_time=1755252001123), "invalid:event_time"),
        (jline(duration=-1), "invalid:duration"),
        (jline(extra={"nested": [1, 2]}), None),
    ],
)
def test_jsonl_rows_are_validated_by_the_model(line: str, expected: str | None) -> None:
    ((_, event),) = jsonl_events(line + "\n")
    if expected is None:
        assert isinstance(event, TripEvent)
    else:
        assert reason(event) == expected


def test_json_array_elements_are_records() -> None:
    data = orjson.dumps([EVENT, [1], {**EVENT, "fare": -1}])
    records = list(json_array_records(BOM + data))
    assert [(r.line, r.row) for r in records] == [(None, 1), (None, 2), (None, 3)]
    results = [to_event(r.payload, Schema.CANONICAL, None) for r in records]
    assert isinstance(results[0], TripEvent)
    assert [reason(e) for e in results[1:]] == ["not_an_object", "invalid:fare"]
    assert raw_text(records[1].raw) == ("[1]", False)


def test_a_lone_json_object_is_one_record() -> None:
    (record,) = json_array_records(orjson.dumps(EVENT))
    assert isinstance(to_event(record.payload, Schema.CANONICAL, None), TripEvent)


@pytest.mark.parametrize(("data", "count"), [(b"", 0), (b" \n\t", 0), (b"[]", 0), (BOM + b"[]", 0)])
def test_empty_json_documents_have_no_records(data: bytes, count: int) -> None:
    assert len(list(json_array_records(data))) == count


@pytest.mark.parametrize("data", [b'[{"trip_id": "a"', b"42", b"[1, 2,]"])
def test_a_broken_json_document_is_one_rejection(data: bytes) -> None:
    (record,) = json_array_records(data)
    assert reason(to_event(record.payload, Schema.CANONICAL, None)) == "invalid_json"
    assert record.raw == data


def test_naive_canonical_times_follow_the_source_zone() -> None:
    paris = ZoneInfo("Europe/Paris")
    naive = to_event({**EVENT, "event_time": "2025-08-15T12:00:01"}, Schema.CANONICAL, paris)
    aware = to_event({**EVENT, "event_time": "2025-08-15T12:00:01+00:00"}, Schema.CANONICAL, paris)
    utc = to_event({**EVENT, "event_time": "2025-08-15T12:00:01"}, Schema.CANONICAL, None)
    assert isinstance(naive, TripEvent) and isinstance(aware, TripEvent) and isinstance(utc, TripEvent)
    assert naive.event_time == datetime(2025, 8, 15, 10, 0, 1, tzinfo=UTC)
    assert aware.event_time == utc.event_time == datetime(2025, 8, 15, 12, 0, 1, tzinfo=UTC)
    garbage = to_event(orjson.dumps({**EVENT, "event_time": "soon"}), Schema.CANONICAL, paris)
    assert reason(garbage) == "invalid:event_time"
    epoch = to_event({**EVENT, "event_time": "20250815"}, Schema.CANONICAL, paris)
    assert isinstance(epoch, TripEvent) and epoch.event_time_ms == 20_250_815_000


def test_raw_text_of_each_kind_of_raw() -> None:
    assert raw_text(b"a\xffb") == ("a\ufffdb", False)
    assert raw_text("plain") == ("plain", False)
    assert raw_text({"a": [1]}) == ('{"a":[1]}', False)
    assert raw_text("z" * 20, limit=5) == ("zzzzz", True)
