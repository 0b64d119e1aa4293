"""The API's time parameters: the event contract's spellings, floored to milliseconds, in UTC."""

from __future__ import annotations

from datetime import timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.timeparse import parse_time_ms
from app.events import EPOCH

T = 1_551_715_800_000  # 2019-03-04T16:10:00Z


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2019-03-04T16:10:00Z", T),
        ("2019-03-04T16:10:00+00:00", T),
        ("2019-03-04T17:10:00+01:00", T),
        ("2019-03-04T11:10:00-05:00", T),
        ("2019-03-04T16:10:00", T),  # naive is UTC
        ("2019-03-04 16:10:00", T),
        ("2019-03-04T16:10:00.250Z", T + 250),
        ("2019-03-04T16:10:00.2509Z", T + 250),  # floored to the millisecond
        ("2019-03-04", T - (16 * 60 + 10) * 60_000),
        ("20190304T161000Z", T),
        ("  2019-03-04T16:10:00Z ", T),
        ("2019-03-04T17:10:00 01:00", T),  # '+' lost to query-string decoding
        ("2019-03-04T17:10 0100", T),
        ("1551715800", T),
        ("1551715800.5", T + 500),
        ("1551715800.0009", T),
        ("0", 0),
        ("1.551715800e9", T),  # the event contract's numeric text, exponent and sign included
        ("+1551715800", T),
        ("1969-12-31T23:59:59.999Z", -1),
    ],
)
def test_accepted_spellings(text: str, expected: int) -> None:
    assert parse_time_ms(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "2019-13-01T00:00:00Z",
        "2019-03-04T25:00:00Z",
        "-1",
        "253402300800",
        "nan",
        "inf",
        "١٥٥١٧١٥٨٠٠",  # non-ASCII digits are not epoch seconds
        "2019-03-04T16:10:00 +01:00 x",
    ],
)
def test_rejected_spellings_say_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match=r"ISO-8601|epoch seconds"):
        parse_time_ms(text)


@given(
    st.integers(min_value=0, max_value=253_402_214_399_999_999),
    st.integers(min_value=-14 * 60, max_value=14 * 60),
)
def test_iso_round_trips_floored_to_the_millisecond(micros: int, offset_min: int) -> None:
    dt = EPOCH + timedelta(microseconds=micros)
    text = dt.astimezone(timezone(timedelta(minutes=offset_min))).isoformat()
    assert parse_time_ms(text) == micros // 1000


@given(st.integers(min_value=0, max_value=253_402_300_799))
def test_epoch_seconds_and_iso_agree(seconds: int) -> None:
    iso = (EPOCH + timedelta(seconds=seconds)).isoformat()
    assert parse_time_ms(str(seconds)) == parse_time_ms(iso) == seconds * 1000
