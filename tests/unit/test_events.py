"""The trip event model: every validity rule of the contract, reason codes and canonical JSON."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.events import FUTURE, Limits, Rejection, TripEvent, parse_event
from tables.times import format_time_ms

FIELDS = ("trip_id", "region_id", "event_time", "fare", "duration", "distance")
#: Every reason code parse_event may produce: bounded, so it can label a counter.
REASONS = (
    {"invalid_json", "not_an_object", "invalid:record", FUTURE}
    | {f"missing:{f}" for f in FIELDS}
    | {f"invalid:{f}" for f in FIELDS}
)

VALID: dict[str, Any] = {
    "trip_id": "trip-1",
    "region_id": 42,
    "event_time": "2024-03-01T12:34:56Z",
    "fare": 12.5,
    "duration": 600,
    "distance": 2.3,
}
T0_MS = 1_709_296_496_000  # 2024-03-01T12:34:56Z
#: Limits that admit every event the model's fixed rules admit: the shape and ranges of the model
#: are tested with them; the limits from the settings and the clock have tests of their own.
WIDE = Limits(max_future_ms=10**16, max_region_id=2**63 - 1)


def event(**changes: Any) -> dict[str, Any]:
    """VALID with some fields changed; a value of ``...`` removes the field."""
    data = {**VALID, **changes}
    return {k: v for k, v in data.items() if v is not ...}


def accepted(data: dict[str, Any] | bytes | str) -> TripEvent:
    result = parse_event(data, WIDE)
    assert isinstance(result, TripEvent), result
    return result


def rejected(data: dict[str, Any] | bytes | str) -> Rejection:
    result = parse_event(data, WIDE)
    assert isinstance(result, Rejection), result
    assert result.reason in REASONS
    return result


# --- acceptance of a valid event ------------------------------------------------------------


def test_valid_event_from_dict_bytes_and_str_are_the_same() -> None:
    from_dict = accepted(VALID)
    assert accepted(orjson.dumps(VALID)) == from_dict
    assert accepted(orjson.dumps(VALID).decode()) == from_dict
    assert from_dict.trip_id == "trip-1"
    assert from_dict.region_id == 42
    assert from_dict.event_time == datetime(2024, 3, 1, 12, 34, 56, tzinfo=UTC)
    assert from_dict.event_time_ms == T0_MS
    assert (from_dict.fare, from_dict.duration, from_dict.distance) == (12.5, 600.0, 2.3)


def test_extra_keys_are_ignored() -> None:
    ev = accepted(event(passengers=3, vendor={"id": 1}, fare_currency="USD"))
    assert ev == accepted(VALID)
    assert "passengers" not in ev.to_canonical()


def test_event_is_immutable() -> None:
    ev = accepted(VALID)
    with pytest.raises(ValueError):
        ev.fare = 1.0  # type: ignore[misc]


# --- trip_id ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "trip_id",
    ["a", "x" * 128, "é" * 128, "🚕" * 128, " ", "trip with spaces", "0"],
    ids=["one", "128-ascii", "128-latin", "128-emoji", "space", "spaces", "digit"],
)
def test_trip_id_of_1_to_128_characters_is_valid(trip_id: str) -> None:
    assert accepted(event(trip_id=trip_id)).trip_id == trip_id


@pytest.mark.parametrize(
    "trip_id",
    ["", "x" * 129, "🚕" * 129, 12, 1.5, None, True, ["a"], {"id": "a"}],
    ids=["empty", "129", "129-emoji", "int", "float", "null", "bool", "list", "object"],
)
def test_trip_id_must_be_a_string_of_1_to_128_characters(trip_id: Any) -> None:
    assert rejected(event(trip_id=trip_id)).reason == "invalid:trip_id"


# --- region_id --------------------------------------------------------------------------------


@pytest.mark.parametrize("region_id", [0, 1, 265, 2**31, 2**63 - 1])
def test_region_id_non_negative_integer_is_valid(region_id: int) -> None:
    assert accepted(event(region_id=region_id)).region_id == region_id


@pytest.mark.parametrize(
    "region_id",
    [-1, -(2**31), 1.5, True, False, None, "north", [1], float("nan"), float("inf")],
    ids=["-1", "very-negative", "fraction", "true", "false", "null", "text", "list", "nan", "inf"],
)
def test_region_id_must_be_a_non_negative_integer(region_id: Any) -> None:
    assert rejected(event(region_id=region_id)).reason == "invalid:region_id"


def test_region_id_bool_is_rejected_in_json_too() -> None:
    raw = orjson.dumps(event(region_id=True))
    assert rejected(raw).reason == "invalid:region_id"


# --- event_time -------------------------------------------------------------------------------

NOON = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("event_time", "expected"),
    [
        ("2024-03-01T12:00:00Z", NOON),
        ("2024-03-01T12:00:00z", NOON),
        ("2024-03-01T12:00:00+00:00", NOON),
        ("2024-03-01T14:00:00+02:00", NOON),
        ("2024-03-01T07:00:00-05:00", NOON),
        ("2024-03-01T17:45:00+05:45", NOON),
        ("2024-03-02T01:00:00+13:00", NOON),
        ("2024-03-01T12:00:00", NOON),  # naive = UTC
        ("2024-03-01 12:00:00", NOON),
        ("2024-03-01T12:00:00.250Z", NOON + timedelta(milliseconds=250)),
        ("2024-03-01T12:00:00.123456Z", NOON + timedelta(microseconds=123_456)),
        (1_709_294_400, NOON),  # epoch seconds
        (1_709_294_400.0, NOON),
        (1_709_294_400.5, NOON + timedelta(milliseconds=500)),
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
        (253_402_300_799, datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ],
)
def test_event_time_forms_denote_the_same_utc_instant(event_time: Any, expected: datetime) -> None:
    ev = accepted(event(event_time=event_time))
    assert ev.event_time == expected
    assert ev.event_time.utcoffset() == timedelta(0)


def test_naive_time_is_utc_not_local_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        ev = accepted(event(event_time="2024-03-01T12:00:00"))
    finally:
        monkeypatch.undo()
        time.tzset()
    assert ev.event_time == NOON


def test_epoch_seconds_are_never_guessed_to_be_milliseconds() -> None:
    # The same instant in ms is far past year 9999 as seconds: invalid, not silently re-read.
    assert rejected(event(event_time=1_709_294_400_000)).reason == "invalid:event_time"


@pytest.mark.parametrize(
    "event_time",
    [
        -1,
        -0.5,
        253_402_300_800,
        float("nan"),
        float("inf"),
        float("-inf"),
        True,
        False,
        None,
        "",
        "yesterday",
        "2024-13-01T00:00:00Z",
        "2024-02-30T00:00:00Z",
        "2024-03-01T25:00:00Z",
        "2024-03-01T12:00:00+25:00",
        "2024-03-01T12:00:00 UTC",
        " 2024-03-01T12:00:00Z",
        "01/03/2024 12:00",
        [2024, 3, 1],
        {"t": 1},
    ],
)
def test_invalid_event_time_is_rejected(event_time: Any) -> None:
    assert rejected(event(event_time=event_time)).reason == "invalid:event_time"


@pytest.mark.parametrize(
    "event_time",
    ["9999-12-31T23:59:59-05:00", "9999-12-31T20:00:00-14:00", "0001-01-01T00:00:00+01:00"],
)
def test_event_time_out_of_datetime_range_is_rejected_not_raised(event_time: str) -> None:
    assert rejected(event(event_time=event_time)).reason == "invalid:event_time"
    assert rejected(orjson.dumps(event(event_time=event_time))).reason == "invalid:event_time"


@pytest.mark.parametrize(
    ("event_time", "ms"),
    [
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T00:00:00.001Z", 1),
        ("1970-01-01T00:00:00.0019Z", 1),  # floor to the millisecond
        ("2024-03-01T12:34:56Z", T0_MS),
        (1.0005, 1000),
        (1_709_296_496, T0_MS),
    ],
)
def test_event_time_ms(event_time: Any, ms: int) -> None:
    assert accepted(event(event_time=event_time)).event_time_ms == ms


# --- fare, duration, distance -----------------------------------------------------------------

BOUNDS = {"fare": 10_000, "duration": 86_400, "distance": 1_000}


@pytest.mark.parametrize("field", sorted(BOUNDS))
@pytest.mark.parametrize("kind", ["zero", "max", "middle", "int"])
def test_numbers_in_range_are_valid_including_both_ends(field: str, kind: str) -> None:
    value = {"zero": 0.0, "max": float(BOUNDS[field]), "middle": BOUNDS[field] / 3, "int": 7}[kind]
    ev = accepted(event(**{field: value}))
    assert getattr(ev, field) == value
    assert isinstance(getattr(ev, field), float)


@pytest.mark.parametrize("field", sorted(BOUNDS))
@pytest.mark.parametrize(
    "kind", ["below", "tiny-negative", "above", "nan", "inf", "-inf", "true", "false", "null", "text", "list"]
)
def test_numbers_out_of_range_or_not_finite_are_invalid(field: str, kind: str) -> None:
    value = {
        "below": -1,
        "tiny-negative": -1e-9,
        "above": math.nextafter(float(BOUNDS[field]), math.inf),
        "nan": float("nan"),
        "inf": float("inf"),
        "-inf": float("-inf"),
        "true": True,
        "false": False,
        "null": None,
        "text": "ten dollars",
        "list": [1.0],
    }[kind]
    assert rejected(event(**{field: value})).reason == f"invalid:{field}"


@pytest.mark.parametrize(
    "literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b'"NaN"', b'"inf"']
)
def test_non_finite_numbers_in_json_are_invalid(literal: bytes) -> None:
    raw = orjson.dumps(event(fare=999_999.0)).replace(b"999999.0", literal)
    result = parse_event(raw)
    assert isinstance(result, Rejection)
    # NaN / Infinity are not JSON at all; 1e999 parses as inf; "NaN" is a non-finite string.
    assert result.reason in {"invalid_json", "invalid:fare"}


@pytest.mark.parametrize("field", sorted(BOUNDS))
def test_numeric_text_is_read_as_a_number(field: str) -> None:
    # CSV carries text only; the replayer relies on the model reading "12.5" as 12.5.
    assert getattr(accepted(event(**{field: "12.5"})), field) == 12.5


# --- reason codes -----------------------------------------------------------------------------


@pytest.mark.parametrize("field", FIELDS)
def test_missing_field_names_the_field(field: str) -> None:
    result = rejected(event(**{field: ...}))
    assert result.reason == f"missing:{field}"
    assert field in result.message


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "invalid_json"),
        (b"not json", "invalid_json"),
        (b'{"trip_id": ', "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
        (b"[1, 2]", "not_an_object"),
        (b"null", "not_an_object"),
        (b"42", "not_an_object"),
        (b'"a string"', "not_an_object"),
        (b"{}", "missing:trip_id"),
    ],
)
def test_undecodable_records_have_a_bounded_reason(raw: bytes, reason: str) -> None:
    assert rejected(raw).reason == reason


def test_invalid_value_message_names_field_and_input_and_stays_short() -> None:
    result = rejected(event(trip_id="x" * 10_000))
    assert result.reason == "invalid:trip_id"
    assert result.message.startswith("trip_id: ")
    assert "xxx" in result.message
    assert len(result.message) < 300


def test_rejection_reason_does_not_carry_the_input() -> None:
    reasons = {rejected(event(fare=v)).reason for v in (-1, -2.5, 10_001, "abc", None)}
    assert reasons == {"invalid:fare"}


def dump(value: Any) -> bytes:
    """JSON text as any producer might write it: huge integers, NaN and Infinity included."""
    return json.dumps(value).encode()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
field_values = st.one_of(
    json_values,
    st.floats(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.datetimes().map(lambda d: d.isoformat()),
    st.text(min_size=0, max_size=200),
)
records = st.dictionaries(st.sampled_from([*FIELDS, "extra"]), field_values, max_size=7).map(
    lambda d: {**VALID, **d}
) | st.dictionaries(st.sampled_from(FIELDS), field_values, max_size=6)


@settings(max_examples=150, deadline=None)
@given(records)
def test_any_mapping_is_accepted_or_rejected_with_a_bounded_reason(data: dict[str, Any]) -> None:
    result = parse_event(data)
    if isinstance(result, Rejection):
        assert result.reason in REASONS
        assert result.message
    else:
        assert isinstance(result, TripEvent)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=64) | json_values.map(dump) | records.map(dump))
def test_any_bytes_are_accepted_or_rejected_with_a_bounded_reason(raw: bytes) -> None:
    result = parse_event(raw)
    assert isinstance(result, TripEvent) or result.reason in REASONS


# --- canonical JSON ---------------------------------------------------------------------------


def test_canonical_shape_follows_the_contract() -> None:
    ev = accepted(event(event_time="2024-03-01T14:34:56.5+02:00", extra="x"))
    canonical = ev.to_canonical()
    assert list(canonical) == list(FIELDS)
    assert canonical == {
        "trip_id": "trip-1",
        "region_id": 42,
        "event_time": "2024-03-01T12:34:56.500Z",
        "fare": 12.5,
        "duration": 600.0,
        "distance": 2.3,
    }
    assert orjson.loads(ev.to_json()) == canonical


@pytest.mark.parametrize(
    ("t_ms", "text"),
    [
        (0, "1970-01-01T00:00:00Z"),
        (1, "1970-01-01T00:00:00.001Z"),
        (999, "1970-01-01T00:00:00.999Z"),
        (1000, "1970-01-01T00:00:01Z"),
        (T0_MS, "2024-03-01T12:34:56Z"),
        (T0_MS + 50, "2024-03-01T12:34:56.050Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
        (-1000, "1969-12-31T23:59:59Z"),
        (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
        (-62_135_596_800_000, "0001-01-01T00:00:00Z"),
        (-46_388_678_400_000, "0500-01-01T00:00:00Z"),
    ],
)
def test_format_time_ms(t_ms: int, text: str) -> None:
    assert format_time_ms(t_ms) == text


ms_datetimes = st.datetimes(
    # Naive bounds (hypothesis wants them so), a day in so any offset fits; Kafka record
    # timestamps (= event times) cannot be before 1970.
    min_value=datetime(1970, 1, 2, tzinfo=UTC).replace(tzinfo=None),
    max_value=datetime(9999, 12, 30, 23, 59, 59, tzinfo=UTC).replace(tzinfo=None),
).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))
offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
trip_events: st.SearchStrategy[dict[str, Any]] = st.builds(
    dict,
    trip_id=st.text(min_size=1, max_size=128),
    region_id=st.integers(min_value=0, max_value=2**63 - 1),
    event_time=st.one_of(
        ms_datetimes.map(lambda d: d.isoformat()),
        st.tuples(ms_datetimes, offsets).map(lambda p: p[0].replace(tzinfo=UTC).astimezone(p[1]).isoformat()),
        st.integers(min_value=0, max_value=253_402_300_799),
    ),
    fare=st.floats(min_value=0, max_value=10_000),
    duration=st.integers(min_value=0, max_value=86_400) | st.floats(min_value=0, max_value=86_400),
    distance=st.floats(min_value=0, max_value=1_000),
)


@settings(max_examples=200, deadline=None)
@given(trip_events)
def test_canonical_json_round_trips(data: dict[str, Any]) -> None:
    ev = accepted(data)
    raw = ev.to_json()
    again = accepted(raw)
    assert again == ev  # millisecond precision: nothing is lost
    assert again.to_json() == raw  # byte-identical: canonical JSON is a fixed point
    assert again.event_time_ms == ev.event_time_ms


@settings(max_examples=150, deadline=None)
@given(ms_datetimes, offsets)
def test_iso_with_offset_and_utc_z_agree(when: datetime, offset: timezone) -> None:
    utc = when.replace(tzinfo=UTC)
    with_offset = accepted(event(event_time=utc.astimezone(offset).isoformat()))
    with_z = accepted(event(event_time=utc.isoformat().replace("+00:00", "Z")))
    naive = accepted(event(event_time=when.isoformat()))
    assert with_offset.event_time_ms == with_z.event_time_ms == naive.event_time_ms
    assert with_z.to_canonical()["event_time"] == format_time_ms(with_z.event_time_ms)


def test_sub_millisecond_times_canonicalise_to_the_millisecond() -> None:
    ev = accepted(event(event_time="2024-03-01T12:34:56.123987Z"))
    again = accepted(ev.to_json())
    assert again.to_canonical()["event_time"] == "2024-03-01T12:34:56.123Z"
    assert again.event_time_ms == ev.event_time_ms
    assert again.to_json() == ev.to_json()


@pytest.mark.parametrize(
    ("event_time", "expected_ms"),
    [("1704067200", 1_704_067_200_000), ("1.5e9", 1_500_000_000_000), (" 60 ", 60_000)],
)
def test_numeric_strings_are_epoch_seconds(event_time: str, expected_ms: int) -> None:
    result = parse_event({**VALID, "event_time": event_time})
    assert isinstance(result, TripEvent)
    assert result.event_time_ms == expected_ms


@pytest.mark.parametrize("event_time", ["1704067200000", "-1", "1969-12-31T23:59:59Z", -5])
def test_times_before_1970_or_past_9999_are_rejected(event_time: object) -> None:
    result = parse_event({**VALID, "event_time": event_time})
    assert isinstance(result, Rejection) and result.reason == "invalid:event_time"


# --- limits from the settings and the wall clock ----------------------------------------------


def _at(now_ms: int, max_future_ms: int = 3_600_000, max_region_id: int = 1_000_000) -> Limits:
    return Limits(max_future_ms, max_region_id, now_ms=lambda: now_ms)


@pytest.mark.parametrize(
    ("ahead_ms", "ok"), [(0, True), (3_600_000, True), (3_600_001, False), (10**12, False)]
)
def test_event_times_more_than_max_future_ahead_are_rejected_as_future(ahead_ms: int, ok: bool) -> None:
    result = parse_event(event(event_time=(T0_MS + ahead_ms) / 1000), _at(T0_MS))
    if ok:
        assert isinstance(result, TripEvent)
    else:
        assert isinstance(result, Rejection) and result.reason == FUTURE
        assert "ahead of the wall clock" in result.message


@pytest.mark.parametrize("event_time", ["9999-12-31T23:59:59Z", "9999-12-31T23:59:59-05:00", 253_402_300_799])
def test_the_last_representable_time_is_in_the_future_under_the_default_limits(event_time: object) -> None:
    result = parse_event(event(event_time=event_time))
    assert isinstance(result, Rejection) and result.reason in {FUTURE, "invalid:event_time"}


@pytest.mark.parametrize(
    ("region_id", "ok"), [(0, True), (1_000_000, True), (1_000_001, False), (2**63 - 1, False)]
)
def test_region_ids_above_max_region_id_are_rejected(region_id: int, ok: bool) -> None:
    result = parse_event(event(region_id=region_id), _at(T0_MS))
    assert isinstance(result, TripEvent) is ok
    if not ok:
        assert isinstance(result, Rejection) and result.reason == "invalid:region_id"


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 10_000 + b"]" * 10_000,
        orjson.dumps(event()).replace(b'"x"', b"").replace(b"600", b"9" * 5000),
        orjson.dumps(event()).replace(b"42", b"9" * 5000),
        b"\xff\xfe" + orjson.dumps(event()),
        orjson.dumps(event())[:-1] + b', "deep": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
    ],
    ids=["deep", "huge-duration", "huge-region", "not-utf8", "deep-extra-field"],
)
def test_hostile_json_is_rejected_not_raised(raw: bytes) -> None:
    result = parse_event(raw)
    assert isinstance(result, Rejection) and result.reason in REASONS
