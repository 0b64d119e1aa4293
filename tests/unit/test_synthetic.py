"""The synthetic generator: deterministic, realistic in shape, and byte-identical to the model's JSON."""

from __future__ import annotations

import statistics
from collections import Counter

import orjson
import pytest

from app.events import EPOCH, TripEvent, parse_event
from producers.batches import CanonicalMismatch, check_canonical
from producers.synthetic import SyntheticSpec, daily_curve, generate, parse_start
from tables.times import format_time_ms

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


def events(spec: SyntheticSpec, **kwargs: int) -> tuple[list[int], list[int], list[bytes]]:
    regions: list[int] = []
    times: list[int] = []
    values: list[bytes] = []
    for r, t, v in generate(spec, **kwargs):
        regions += r
        times += t
        values += v
    return regions, times, values


def test_same_parameters_same_bytes() -> None:
    spec = SyntheticSpec(3000, regions=20, seed=7, start_ms=parse_start("2025-03-01T00:00:00Z"))
    assert events(spec) == events(spec)
    assert events(spec)[2] != events(SyntheticSpec(3000, regions=20, seed=8, start_ms=spec.start_ms))[2]


def test_chunking_does_not_change_the_stream() -> None:
    spec = SyntheticSpec(1000, seed=3)
    assert events(spec, size=7) == events(spec, size=4096)
    assert [len(v) for _, _, v in generate(spec, size=300)] == [300, 300, 300, 100]


@pytest.mark.parametrize("seed", [0, 1, 99])
def test_values_are_exactly_what_the_model_serialises(seed: int) -> None:
    """The replayer sends the generator's bytes after validating them: they must be canonical."""
    regions, times, values = events(SyntheticSpec(20_000, regions=263, seed=seed))
    for region, t_ms, value in zip(regions, times, values, strict=True):
        event = parse_event(value)
        assert isinstance(event, TripEvent), (value, event)
        assert event.to_json() == value
        assert (event.region_id, event.event_time_ms) == (region, t_ms)


def test_times_on_day_and_second_boundaries_are_formatted_like_the_model() -> None:
    start = parse_start("2024-12-31T23:59:59")
    _, times, values = events(SyntheticSpec(20_000, regions=2000, start_ms=start))
    assert any(t % 1000 == 0 for t in times)
    for t_ms, value in zip(times, values, strict=True):
        assert orjson.loads(value)["event_time"] == format_time_ms(t_ms)
    assert format_time_ms(times[-1]).startswith("2025-01-01T")


def test_event_times_advance_from_the_start() -> None:
    start = parse_start("2025-06-01T00:00:00Z")
    _, times, _ = events(SyntheticSpec(5000, start_ms=start))
    assert times == sorted(times)
    assert start <= times[0] < start + 60_000


def test_parse_start_accepts_iso_and_epoch_seconds() -> None:
    assert parse_start("1970-01-01T00:00:01Z") == 1000
    assert parse_start("1970-01-01T01:00:00+01:00") == 0
    assert parse_start("1.5") == 1500
    with pytest.raises(ValueError):
        parse_start("next tuesday")


def test_volume_follows_the_daily_curve() -> None:
    curve = daily_curve()
    assert statistics.fmean(curve) == pytest.approx(1.0)
    _, times, _ = events(SyntheticSpec(20_000, regions=1, seed=1))  # 0.1 trips/s: over two days
    assert times[-1] - times[0] > 2 * DAY_MS
    by_hour = Counter((t % DAY_MS) // HOUR_MS for t in times)
    assert by_hour[18] > 4 * by_hour[4]
    assert by_hour[8] > 2 * by_hour[4]


def test_regions_are_skewed_and_within_range() -> None:
    regions, _, _ = events(SyntheticSpec(50_000, regions=100, seed=2))
    counts = Counter(regions)
    assert set(counts) <= set(range(1, 101))
    top = counts.most_common(10)
    assert sum(n for _, n in top) > 0.4 * len(regions)
    assert counts.most_common()[-1][1] < top[0][1] / 20


def test_fare_rises_with_distance_and_duration() -> None:
    _, _, values = events(SyntheticSpec(20_000, seed=4))
    trips = [orjson.loads(v) for v in values]
    fares = [t["fare"] for t in trips]
    assert statistics.correlation([t["distance"] for t in trips], fares) > 0.9
    assert statistics.correlation([t["duration"] for t in trips], fares) > 0.8
    short = [t["fare"] for t in trips if t["distance"] < 1]
    long = [t["fare"] for t in trips if t["distance"] > 5]
    assert statistics.fmean(long) > 3 * statistics.fmean(short)


def test_a_loop_shifts_times_and_suffixes_ids() -> None:
    spec = SyntheticSpec(100, seed=5)
    regions, times, values = events(spec)
    regions2, times2, values2 = events(spec, loop=2, shift_ms=DAY_MS)
    assert regions2 == regions
    assert times2 == [t + DAY_MS for t in times]
    first, again = orjson.loads(values[0]), orjson.loads(values2[0])
    assert again["trip_id"] == first["trip_id"] + "~2"
    assert again["fare"] == first["fare"]
    assert check_canonical(values2) == []


def test_check_canonical_finds_invalid_values_through_the_model() -> None:
    _, _, values = events(SyntheticSpec(10))
    bad = orjson.dumps({**orjson.loads(values[3]), "fare": -1.0})
    problems = check_canonical([*values[:3], bad, *values[4:]])
    assert [(i, r.reason) for i, r in problems] == [(3, "invalid:fare")]
    assert check_canonical([]) == []


def test_check_canonical_refuses_bytes_the_model_would_write_differently() -> None:
    _, _, values = events(SyntheticSpec(3))
    event = orjson.loads(values[0])
    drifted = orjson.dumps({**event, "event_time": event["event_time"].replace("Z", "+00:00")})
    with pytest.raises(CanonicalMismatch):
        check_canonical([drifted, *values[1:]])


def test_start_defaults_to_a_fixed_instant() -> None:
    assert SyntheticSpec(1).start_ms == parse_start("2025-01-01T00:00:00Z")
    assert EPOCH.year == 1970
