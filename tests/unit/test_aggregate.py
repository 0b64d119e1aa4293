"""The per-window aggregate and its result record: fold, merge, state, metrics."""

from __future__ import annotations

import math
from functools import reduce
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tables.aggregate import EXACT_MAX_COUNT, ROUND_DIGITS, STATE_TAG, TripAggregate
from tables.results import is_window_record, window_record
from tables.sketch import RELATIVE_ACCURACY, quantile, sketch_bins
from tables.times import format_time_ms

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


def rank_value(values: list[float], q: float) -> float:
    """Plain-Python exact quantile: the value at rank floor(q * (n - 1)) of the sorted values."""
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


def expected_metrics(trips: list[Trip]) -> dict[str, Any]:
    """The contract's aggregates computed directly from the trips, without the sketch."""
    n = len(trips)
    fares = [t[0] for t in trips]
    durations = [t[1] for t in trips]
    distances = [t[2] for t in trips]
    times = [t[3] for t in trips]
    return {
        "trip_count": n,
        "revenue": math.fsum(fares),
        "avg_fare": math.fsum(fares) / n,
        "min_fare": min(fares),
        "max_fare": max(fares),
        "avg_duration": math.fsum(durations) / n,
        "p50_duration": rank_value(durations, 0.5),
        "p95_duration": rank_value(durations, 0.95),
        "total_distance": math.fsum(distances),
        "avg_distance": math.fsum(distances) / n,
        "first_event_time": format_time_ms(min(times)),
        "last_event_time": format_time_ms(max(times)),
    }


def assert_metrics_match(
    actual: dict[str, Any], expected: dict[str, Any], *, exact_small: bool = True
) -> None:
    """``exact_small``: a window of at most EXACT_MAX_COUNT trips answers quantiles exactly (only
    a window restored from first-format state, without its durations, does not)."""
    assert set(actual) == METRICS
    for name in ("trip_count", "min_fare", "max_fare", "first_event_time", "last_event_time"):
        assert actual[name] == expected[name], name
    for name in ("revenue", "avg_fare", "avg_duration", "total_distance", "avg_distance"):
        assert actual[name] == pytest.approx(expected[name], rel=1e-12, abs=2 * ROUNDING), name
    for name in ("p50_duration", "p95_duration"):
        exact = expected[name]
        if exact_small and actual["trip_count"] <= EXACT_MAX_COUNT:
            assert actual[name] == exact, name
        elif exact == 0:
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
    assert m["p50_duration"] == 300.0  # rank floor(1.5) = 1, exact in a small window
    assert m["p95_duration"] == 600.0  # rank floor(2.85) = 2
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


# --- duration quantiles -----------------------------------------------------------------------

#: Long enough lists to cross EXACT_MAX_COUNT, so both the exact and the sketch answers are drawn.
duration_lists = st.lists(durations, min_size=1, max_size=3 * EXACT_MAX_COUNT)


def fold_durations(values: list[float]) -> TripAggregate:
    return fold([(1.0, d, 1.0, T0 + i) for i, d in enumerate(values)])


def test_a_one_trip_window_reports_its_duration() -> None:
    """The sketch alone read a single 959 s trip back as 963.12 s."""
    m = fold_durations([959.0]).metrics()
    assert (m["p50_duration"], m["p95_duration"]) == (959.0, 959.0)


def test_a_large_window_of_one_duration_is_clamped_to_it() -> None:
    agg = fold_durations([959.0] * (EXACT_MAX_COUNT + 50))
    assert agg.durations is None  # answered by the sketch...
    assert quantile(agg.bins, agg.zero_durations, 0.5) != 959.0  # ...whose bin value is off...
    assert (agg.metrics()["p50_duration"], agg.metrics()["p95_duration"]) == (959.0, 959.0)  # ...clamped


def test_a_large_window_clamps_to_its_minimum_and_maximum() -> None:
    values = [959.0] * 90 + [1.0] * 10  # p50 and p95 are both the maximum
    m = fold_durations(values).metrics()
    assert m["p50_duration"] == m["p95_duration"] == 959.0
    values = [959.0] * 10 + [1.0] * 90  # both are the minimum, estimated as ~1.0045
    m = fold_durations(values).metrics()
    assert m["p50_duration"] == 1.0 and m["p95_duration"] == 959.0


def test_durations_are_kept_up_to_the_exact_limit_then_the_sketch_takes_over() -> None:
    values = [float(v) for v in range(EXACT_MAX_COUNT + 1, 0, -1)] + [0.0]
    agg = fold_durations(values[:EXACT_MAX_COUNT])
    assert agg.durations == sorted(values[:EXACT_MAX_COUNT]) and agg.bins == {}
    agg.add_event(1.0, values[EXACT_MAX_COUNT], 1.0, T0)
    assert agg.durations is None
    assert agg.bins == sketch_bins(values[: EXACT_MAX_COUNT + 1])
    agg.add_event(1.0, 0.0, 1.0, T0)
    assert agg.zero_durations == 1 and agg.bins == sketch_bins(values)
    assert (agg.duration_min, agg.duration_max) == (0.0, float(EXACT_MAX_COUNT + 1))


@settings(max_examples=150, deadline=None)
@given(duration_lists)
def test_quantiles_lie_in_the_observed_range_and_are_exact_for_small_windows(values: list[float]) -> None:
    m = fold_durations(values).metrics()
    p50, p95 = m["p50_duration"], m["p95_duration"]
    assert min(values) <= p50 <= p95 <= max(values)
    for q, got in ((0.5, p50), (0.95, p95)):
        exact = rank_value(values, q)
        if len(values) <= EXACT_MAX_COUNT:
            assert got == exact
        else:
            assert abs(got - exact) <= RELATIVE_ACCURACY * exact + 2 * ROUNDING


@settings(max_examples=100, deadline=None)
@given(st.lists(duration_lists, min_size=1, max_size=4))
def test_merged_parts_answer_like_the_whole(parts: list[list[float]]) -> None:
    """Whatever the grouping, a merge answers as folding every duration in one window would."""
    merged = reduce(TripAggregate.merge, [fold_durations(p) for p in parts])
    everything = [d for p in parts for d in p]
    whole = fold_durations(everything)
    assert (merged.durations, merged.duration_min, merged.duration_max) == (
        whole.durations,
        whole.duration_min,
        whole.duration_max,
    )
    assert merged.metrics()["p50_duration"] == whole.metrics()["p50_duration"]
    assert merged.metrics()["p95_duration"] == whole.metrics()["p95_duration"]
    assert min(everything) <= merged.metrics()["p50_duration"] <= merged.metrics()["p95_duration"]
    assert merged.metrics()["p95_duration"] <= max(everything)


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
        "duration_min": agg.duration_min,
        "duration_max": agg.duration_max,
        "durations": agg.durations,
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


def v1_state(agg: TripAggregate) -> list[Any]:
    """State as the first format wrote it: 11 items, durations only in the sketch."""
    return [
        agg.count,
        agg.fare_sum,
        agg.fare_min if agg.count else None,
        agg.fare_max if agg.count else None,
        agg.duration_sum,
        agg.distance_sum,
        agg.first_ms,
        agg.last_ms,
        agg.zero_durations,
        [[k, c] for k, c in agg.sketch().items()],
        agg.last_offset,
    ]


def test_state_is_tagged_with_its_format() -> None:
    assert TripAggregate().to_state()[0] == STATE_TAG


def test_first_format_state_written_by_an_older_worker_decodes() -> None:
    """A one-trip window of 959 s, as an older worker stored it in the table."""
    agg = TripAggregate.from_state(
        orjson.loads(b"[1,12.5,12.5,12.5,959.0,3.2,1709294400000,1709294400000,0,[[344,1]],17]")
    )
    assert (agg.count, agg.fare_sum, agg.fare_min, agg.fare_max, agg.last_offset) == (1, 12.5, 12.5, 12.5, 17)
    assert agg.bins == {344: 1} and agg.durations is None
    # Its durations are gone, so its answer is the sketch's, as before the upgrade.
    assert agg.metrics()["p50_duration"] == 963.120960
    agg.add_event(10.0, 100.0, 1.0, T0)
    assert agg.count == 2 and agg.durations is None
    assert agg.metrics()["p50_duration"] == pytest.approx(100.0, rel=RELATIVE_ACCURACY)


def test_empty_first_format_state_decodes_as_a_new_aggregate() -> None:
    assert TripAggregate.from_state(v1_state(TripAggregate())) == TripAggregate()


@settings(max_examples=100, deadline=None)
@given(trip_lists, trip_lists)
def test_first_format_state_recovers_and_keeps_folding(xs: list[Trip], ys: list[Trip]) -> None:
    """Decoded first-format state answers as the first format did, folds on, merges with new
    aggregates and re-encodes in the current format without losing anything."""
    before = fold(xs)
    restored = TripAggregate.from_state(orjson.loads(orjson.dumps(v1_state(before))))
    assert restored.count == before.count and restored.sketch() == before.sketch()
    m = restored.metrics()
    if xs:
        for q, name in ((0.5, "p50_duration"), (0.95, "p95_duration")):
            sketched = quantile(before.sketch(), before.zero_durations, q)
            assert sketched is not None and m[name] == round(sketched, ROUND_DIGITS)
    assert {k: v for k, v in m.items() if not k.startswith("p")} == {
        k: v for k, v in before.metrics().items() if not k.startswith("p")
    }
    merged = restored.merge(fold(ys, len(xs)))
    for t in ys:
        restored.add_event(*t)
    restored.last_offset = merged.last_offset
    assert comparable(restored) == comparable(merged)
    again = TripAggregate.from_state(orjson.loads(orjson.dumps(restored.to_state())))
    assert comparable(again) == comparable(restored)
    assert again.metrics() == restored.metrics()
    if xs or ys:
        assert_metrics_match(merged.metrics(), expected_metrics(xs + ys), exact_small=not xs)


@pytest.mark.parametrize("state", [[], ["v9", 1], [1, 2, 3], "v2"])
def test_unknown_state_formats_are_refused(state: Any) -> None:
    with pytest.raises(ValueError, match="unknown aggregate state format"):
        TripAggregate.from_state(state)


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
