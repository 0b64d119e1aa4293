"""Window math: durations, the configured sizes, and epoch-aligned tumbling windows."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tables.windows import WindowSize, parse_duration_ms, parse_windows

MINUTE = 60_000
HOUR = 3_600_000


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("30s", 30_000),
        ("30", 30_000),  # plain number: seconds
        ("250ms", 250),
        ("1ms", 1),
        ("5m", 5 * MINUTE),
        ("1h", HOUR),
        ("2d", 2 * 86_400_000),
        (" 5m ", 5 * MINUTE),
        ("1 m", MINUTE),
        ("007s", 7_000),
        ("86400", 86_400_000),
    ],
)
def test_parse_duration_ms(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize(
    "text",
    ["", " ", "s", "-5s", "+5s", "1.5s", "5min", "5M", "5 M", "1h30m", "5 s s", "five", "0x10s", "1e3s"],
)
def test_parse_duration_ms_rejects_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration_ms(text)


@pytest.mark.parametrize("text", ["0", "0s", "0ms", "0h", "000m"])
def test_zero_duration_needs_allow_zero(text: str) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        parse_duration_ms(text)
    assert parse_duration_ms(text, allow_zero=True) == 0


@pytest.mark.parametrize(
    ("text", "sizes"),
    [
        ("1m,5m,15m,1h", [(MINUTE, "1m"), (5 * MINUTE, "5m"), (15 * MINUTE, "15m"), (HOUR, "1h")]),
        ("1h,15m,1m,5m", [(MINUTE, "1m"), (5 * MINUTE, "5m"), (15 * MINUTE, "15m"), (HOUR, "1h")]),
        ("1m, 5m", [(MINUTE, "1m"), (5 * MINUTE, "5m")]),
        (" 1h ", [(HOUR, "1h")]),
        ("10s,90s,1d", [(10_000, "10s"), (90_000, "90s"), (86_400_000, "1d")]),
        ("60m", [(HOUR, "60m")]),  # the name is kept as written: it is how keys spell it
    ],
)
def test_parse_windows_sorted_smallest_first(text: str, sizes: list[tuple[int, str]]) -> None:
    parsed = parse_windows(text)
    assert [(w.size_ms, w.name) for w in parsed] == sizes
    assert parsed == [WindowSize(ms, name) for ms, name in sizes]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "unknown window size"),
        ("1m,,5m", "unknown window size"),
        ("1m,5m,", "unknown window size"),
        ("0m", "unknown window size"),
        ("1ms", "unknown window size"),
        ("5M", "unknown window size"),
        ("5", "unknown window size"),
        ("1m,7x", "unknown window size '7x'"),
        ("1.5m", "unknown window size"),
        ("-1m", "unknown window size"),
        ("1m,1m", "listed twice"),
        ("1m,60s", "listed twice"),
        ("1h,60m", "listed twice"),
    ],
)
def test_parse_windows_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_windows(text)


@pytest.mark.parametrize(
    ("size_ms", "t_ms", "start"),
    [
        (MINUTE, 0, 0),
        (MINUTE, 1, 0),
        (MINUTE, MINUTE - 1, 0),
        (MINUTE, MINUTE, MINUTE),  # the end is exclusive: a time on a boundary opens the next window
        (MINUTE, MINUTE + 1, MINUTE),
        (MINUTE, -1, -MINUTE),  # before 1970: floor, not truncation towards zero
        (MINUTE, -MINUTE, -MINUTE),
        (MINUTE, -MINUTE - 1, -2 * MINUTE),
        (HOUR, 1_709_296_496_123, 1_709_294_400_000),  # 2024-03-01T12:34:56.123Z -> 12:00
        (15 * MINUTE, 1_709_296_496_123, 1_709_296_200_000),  # -> 12:30
        (7_000, 20_999, 14_000),
        (7_000, 21_000, 21_000),
        (7_000, -1, -7_000),
    ],
)
def test_window_start_and_end(size_ms: int, t_ms: int, start: int) -> None:
    size = WindowSize(size_ms, "w")
    assert size.start(t_ms) == start
    assert size.end(t_ms) == start + size_ms


sizes = st.sampled_from([1, 7, 1_000, MINUTE, 5 * MINUTE, 15 * MINUTE, HOUR, 86_400_000]) | st.integers(
    1, 10**9
)
times = st.integers(min_value=-(2**62), max_value=2**62)


@settings(max_examples=300, deadline=None)
@given(sizes, times)
def test_window_contains_its_time_and_is_epoch_aligned(size_ms: int, t_ms: int) -> None:
    size = WindowSize(size_ms, "w")
    start, end = size.start(t_ms), size.end(t_ms)
    assert start <= t_ms < end
    assert end - start == size_ms
    assert start == math.floor(Fraction(t_ms, size_ms)) * size_ms  # the contract's formula
    # Every time in [start, end) maps to the same window; the boundaries to neighbours.
    assert size.start(start) == size.start(end - 1) == start
    assert size.start(end) == end
    assert size.start(start - 1) == start - size_ms


@settings(max_examples=200, deadline=None)
@given(times, times)
def test_windows_are_ordered_like_their_times(a: int, b: int) -> None:
    size = WindowSize(5 * MINUTE, "5m")
    if a <= b:
        assert size.start(a) <= size.start(b)
    else:
        assert size.start(a) >= size.start(b)
