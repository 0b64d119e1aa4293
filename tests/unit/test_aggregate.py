"""The per-window aggregate and its result record: fold, merge, state, metrics."""

from __future__ import annotations

import math
from functools import reduce
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.events import format_time_ms
from tables.aggregate import ROUND_DIGITS, TripAggregate
from tables.results import is_window_record, window_record
from tables.sketch import RELATIVE_ACCURACY

#: (fare, duration, distance, event time in ms)
Trip = tuple[float, float, float, int]

METRICS = {
    "trip_count",
    "revenue",
    "avg_fare",
    "min_fare",
    "max_fare",
    "avg_duration",
    "p50_duration",
    "p95_duration",
    "total_distance",
    "avg_distance",
    "first_event_time",
    "last_event_time",
}
#: Reported sums and averages are rounded to ROUND_DIGITS places: half a unit of that, plus float
#: summation error, is the slack against an exact computation.
ROUNDING = 0.5 * 10**-ROUND_DIGITS
T0 = 1_709_294_400_000  # 2024-03-01T12:00:00Z


def fold(trips: list[Trip], first_offset: int = 0) -> TripAggregate:
    agg = TripAggregate()
    for i, (fare, duration, distance, t_ms) in enumerate(trips):
        agg.add_event(fare, duration, distance, t_ms)
        agg.last_offset = first_offset + i
    return agg


def expected_metrics(trips: list[Trip]) -> dict[str, Any]:
    """The contract's aggregates computed directly from the trips, without the sketch."""
    n = len(trips)
    fares = [t[0] for t in trips]
    durations = sorted(t[1] for t in trips)
    distances = [t[2] for t in trips]
    times = [t[3] for t in trips]
    return {
        "trip_count": n,
        "revenue": math.fsum(fares),
        "avg_fare": math.fsum(fares) / n,
        "min_fare": min(fares),
        "max_fare": max(fares),
        "avg_duration": math.fsum(durations) / n,
        "p50_duration": durations[math.floor(0.5 * (n - 1))],
        "p95_duration": durations[math.floor(0.95 * (n - 1))],
        "total_distance": math.fsum(distances),
        "avg_distance": math.fsum(distances) / n,
        "first_event_time": format_time_ms(min(times)),
        "last_event_time": format_time_ms(max(times)),
    }


def assert_metrics_match(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    assert set(actual) == METRICS
    for name in ("trip_count", "min_fare", "max_fare", "first_event_time", "last_event_time"):
        assert actual[name] == expected[name], name
    for name in ("revenue", "avg_fare", "avg_duration", "total_distance", "avg_distance"):
        assert actual[name] == pytest.approx(expected[name], rel=1e-12, abs=2 * ROUNDING), name
    for name in ("p50_duration", "p95_duration"):
        exact = expected[name]
        if exact == 0:
            assert actual[name] == 0.0, name
        else:
            assert abs(actual[name] - exact) <= RELATIVE_ACCURACY * exact + 2 * ROUNDING, (
                name,
                actual[name],
                exact,
            )


fares = st.floats(min_value=0, max_value=10_000)
durations = st.just(0.0) | st.floats(min_value=0.001, max_value=86_400) | st.integers(0, 86_400).map(float)
distances = st.floats(min_value=0, max_value=1_000)
times = st.integers(min_value=T0 - 10**12, max_value=T0 + 10**12)
trips_st = st.tuples(fares, durations, distances, times)
trip_lists = st.lists(trips_st, max_size=40)


# --- folding ----------------------------------------------------------------------------------


def test_empty_aggregate_metrics() -> None:
    assert TripAggregate().metrics() == {
        "trip_count": 0,
        "revenue": 0.0,
        "avg_fare": None,
        "min_fare": None,
        "max_fare": None,
        "avg_duration": None,
        "p50_duration": None,
        "p95_duration": None,
        "total_distance": 0.0,
        "avg_distance": None,
        "first_event_time": None,
        "last_event_time": None,
    }


def test_metrics_of_a_small_window() -> None:
    agg = fold(
        [
            (10.0, 600.0, 2.0, T0 + 30_000),
            (20.0, 300.0, 1.0, T0 + 5_000),
            (5.5, 0.0, 0.0, T0 + 59_999),
            (30.0, 1200.0, 7.25, T0 + 10_250),
        ]
    )
    m = agg.metrics()
    assert m["trip_count"] == 4
    assert m["revenue"] == 65.5
    assert m["avg_fare"] == 16.375
    assert (m["min_fare"], m["max_fare"]) == (5.5, 30.0)
    assert m["avg_duration"] == 525.0
    assert m["p50_duration"] == pytest.approx(300.0, rel=RELATIVE_ACCURACY)  # rank floor(1.5) = 1
    assert m["p95_duration"] == pytest.approx(600.0, rel=RELATIVE_ACCURACY)  # rank floor(2.85) = 2
    assert m["total_distance"] == 10.25
    assert m["avg_distance"] == 2.5625
    assert m["first_event_time"] == "2024-03-01T12:00:05Z"
    assert m["last_event_time"] == "2024-03-01T12:00:59.999Z"
    assert agg.zero_durations == 1
    assert agg.last_offset == 3


def test_sums_are_rounded_to_hide_summation_noise() -> None:
    agg = fold([(0.1, 1.0, 0.1, T0), (0.2, 1.0, 0.2, T0)])
    assert agg.fare_sum != 0.3  # 0.30000000000000004
    assert agg.metrics()["revenue"] == 0.3
    assert agg.metrics()["total_distance"] == 0.3


def test_add_with_precomputed_sketch_key_is_add_event() -> None:
    from tables.sketch import sketch_key

    a, b = TripAggregate(), TripAggregate()
    for fare, duration in ((1.0, 0.0), (2.0, 60.0), (3.0, 61.0)):
        a.add_event(fare, duration, 1.0, T0)
        b.add(fare, duration, 1.0, T0, sketch_key(duration))
    assert a == b


@settings(max_examples=100, deadline=None)
@given(st.lists(trips_st, min_size=1, max_size=60))
def test_metrics_match_an_independent_computation(trips: list[Trip]) -> None:
    assert_metrics_match(fold(trips).metrics(), expected_metrics(trips))


@settings(max_examples=60, deadline=None)
@given(st.lists(trips_st, min_size=1, max_size=40), st.randoms(use_true_random=False))
def test_metrics_do_not_depend_on_the_order_of_events(trips: list[Trip], rnd: Any) -> None:
    shuffled = list(trips)
    rnd.shuffle(shuffled)
    a, b = fold(trips).metrics(), fold(shuffled).metrics()
    assert_metrics_match(b, a | {"p50_duration": b["p50_duration"], "p95_duration": b["p95_duration"]})
    assert (a["p50_duration"], a["p95_duration"]) == (b["p50_duration"], b["p95_duration"])


# --- merge ------------------------------------------------------------------------------------


def comparable(agg: TripAggregate) -> dict[str, Any]:
    """Everything about an aggregate, floats made approximate, bins order-free."""
    return {
        "count": agg.count,
        "fare_sum": pytest.approx(agg.fare_sum, rel=1e-12, abs=1e-9),
        "fare_min": agg.fare_min,
        "fare_max": agg.fare_max,
        "duration_sum": pytest.approx(agg.duration_sum, rel=1e-12, abs=1e-9),
        "distance_sum": pytest.approx(agg.distance_sum, rel=1e-12, abs=1e-9),
        "first_ms": agg.first_ms,
        "last_ms": agg.last_ms,
        "zero_durations": agg.zero_durations,
        "bins": dict(agg.bins),
        "last_offset": agg.last_offset,
    }


def approx_metrics(m: dict[str, Any]) -> dict[str, Any]:
    """Metrics of a different merge order: the rounded sums may land one rounding step apart."""
    return {
        k: pytest.approx(v, rel=1e-12, abs=3 * ROUNDING) if isinstance(v, float) else v for k, v in m.items()
    }


@settings(max_examples=80, deadline=None)
@given(trip_lists, trip_lists, trip_lists)
def test_merge_is_associative(xs: list[Trip], ys: list[Trip], zs: list[Trip]) -> None:
    a, b, c = fold(xs, 0), fold(ys, 100), fold(zs, 200)
    left = a.merge(b).merge(c)
    right = a.merge(b.merge(c))
    assert comparable(left) == comparable(right)
    assert left.metrics() == approx_metrics(right.metrics())


@settings(max_examples=80, deadline=None)
@given(trip_lists, trip_lists)
def test_merge_is_commutative(xs: list[Trip], ys: list[Trip]) -> None:
    a, b = fold(xs, 0), fold(ys, 100)
    assert comparable(a.merge(b)) == comparable(b.merge(a))
    assert a.merge(b).metrics() == approx_metrics(b.merge(a).metrics())


@settings(max_examples=80, deadline=None)
@given(trip_lists, trip_lists)
def test_merge_of_parts_equals_folding_everything(xs: list[Trip], ys: list[Trip]) -> None:
    merged = fold(xs).merge(fold(ys, len(xs)))
    whole = fold(xs + ys)
    assert comparable(merged) == comparable(whole)
    if xs or ys:
        assert_metrics_match(merged.metrics(), expected_metrics(xs + ys))


@settings(max_examples=60, deadline=None)
@given(trip_lists)
def test_empty_aggregate_is_the_merge_identity(xs: list[Trip]) -> None:
    a = fold(xs)
    assert a.merge(TripAggregate()) == a
    assert TripAggregate().merge(a) == a


@settings(max_examples=60, deadline=None)
@given(st.lists(trip_lists, min_size=1, max_size=6))
def test_merging_many_parts_in_any_grouping(parts: list[list[Trip]]) -> None:
    aggs = [fold(p, 100 * i) for i, p in enumerate(parts)]
    left = reduce(TripAggregate.merge, aggs)
    right = reduce(lambda acc, agg: agg.merge(acc), reversed(aggs))
    assert comparable(left) == comparable(right)
    assert left.last_offset == max(a.last_offset for a in aggs)


def test_merge_does_not_mutate_its_operands() -> None:
    a, b = fold([(1.0, 60.0, 1.0, T0)]), fold([(2.0, 60.0, 2.0, T0 + 1)], 5)
    a_state, b_state = a.to_state(), b.to_state()
    a.merge(b)
    assert (a.to_state(), b.to_state()) == (a_state, b_state)


# --- state ------------------------------------------------------------------------------------


def test_empty_state_is_json_safe() -> None:
    state = TripAggregate().to_state()
    text = orjson.dumps(state)  # no infinities in JSON
    assert TripAggregate.from_state(orjson.loads(text)) == TripAggregate()


@settings(max_examples=100, deadline=None)
@given(trip_lists, st.integers(min_value=-1, max_value=2**53))
def test_state_round_trips_through_json(trips: list[Trip], last_offset: int) -> None:
    agg = fold(trips)
    agg.last_offset = last_offset
    restored = TripAggregate.from_state(orjson.loads(orjson.dumps(agg.to_state())))
    assert restored == agg
    assert restored.metrics() == agg.metrics()
    # A restored aggregate keeps folding exactly like the original.
    restored.add_event(7.0, 42.0, 1.5, T0)
    agg.add_event(7.0, 42.0, 1.5, T0)
    assert restored == agg


# --- the result record ------------------------------------------------------------------------


def test_window_record_shape() -> None:
    agg = fold([(10.0, 600.0, 2.0, T0 + 1_000), (20.0, 300.0, 1.0, T0 + 2_000)])
    record = window_record(42, "1m", 60_000, T0, agg, final=True)
    assert set(record) == METRICS | {
        "region_id",
        "window",
        "window_start",
        "window_end",
        "window_start_ms",
        "window_end_ms",
        "final",
    }
    assert record["region_id"] == 42
    assert record["window"] == "1m"
    assert record["window_start"] == "2024-03-01T12:00:00Z"
    assert record["window_end"] == "2024-03-01T12:01:00Z"
    assert (record["window_start_ms"], record["window_end_ms"]) == (T0, T0 + 60_000)
    assert record["final"] is True
    assert window_record(42, "1m", 60_000, T0, agg, final=False)["final"] is False
    assert {k: record[k] for k in METRICS} == agg.metrics()


def test_a_window_record_is_recognized_as_one() -> None:
    record = orjson.loads(orjson.dumps(window_record(42, "1m", 60_000, T0, TripAggregate(), final=True)))
    assert is_window_record(record, {"1m", "5m"})


@pytest.mark.parametrize(
    "record",
    [
        [],
        "1m",
        {},
        {"window": "1m", "region_id": 1},
        {"window": "2m", "region_id": 1, "window_start_ms": T0},
        {"window": "1m", "region_id": "1", "window_start_ms": T0},
        {"window": "1m", "region_id": True, "window_start_ms": T0},
        {"window": "1m", "region_id": 1, "window_start_ms": float(T0)},
        {"window": ["1m"], "region_id": 1, "window_start_ms": T0},
    ],
)
def test_records_the_sink_cannot_store_are_not_window_records(record: Any) -> None:
    assert not is_window_record(record, {"1m", "5m"})


def test_window_record_before_1970() -> None:
    record = window_record(0, "1h", 3_600_000, -3_600_000, TripAggregate(), final=False)
    assert record["window_start"] == "1969-12-31T23:00:00Z"
    assert record["window_end"] == "1970-01-01T00:00:00Z"


@settings(max_examples=60, deadline=None)
@given(trip_lists)
def test_window_record_bytes_survive_a_state_round_trip(trips: list[Trip]) -> None:
    """A window re-emitted after recovery from its state is byte-identical to the first emission."""
    agg = fold(trips)
    restored = TripAggregate.from_state(orjson.loads(orjson.dumps(agg.to_state())))
    first = orjson.dumps(window_record(7, "5m", 300_000, T0, agg, final=True))
    again = orjson.dumps(window_record(7, "5m", 300_000, T0, restored, final=True))
    assert first == again
