"""The duration sketch: quantiles within 1 % of the exact rank-floor(q*(n-1)) value, and merging."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tables.sketch import MIN_INDEXABLE, RELATIVE_ACCURACY, merge_bins, quantile, sketch_bins, sketch_key


def sketch(values: list[float]) -> tuple[dict[int, int], int]:
    """Bins and zero count of a sketch of ``values``, built the way the aggregate builds them."""
    keys = [sketch_key(v) for v in values]
    zero = sum(1 for k in keys if k is None)
    return dict(Counter(k for k in keys if k is not None)), zero


def exact(values: list[float], q: float) -> float:
    """The value at rank floor(q * (n - 1)) of the sorted input (DDSketch's definition)."""
    return sorted(values)[math.floor(q * (len(values) - 1))]


def assert_close(estimate: float | None, expected: float) -> None:
    assert estimate is not None
    if expected == 0:
        assert estimate == 0
    else:
        assert abs(estimate - expected) <= RELATIVE_ACCURACY * expected, (estimate, expected)


def test_accuracy_is_one_percent() -> None:
    assert RELATIVE_ACCURACY == 0.01


def test_empty_sketch_has_no_quantile() -> None:
    assert quantile({}, 0, 0.5) is None


@pytest.mark.parametrize("q", [0.0, 0.5, 0.95, 1.0])
def test_only_zeros_give_zero(q: float) -> None:
    assert quantile({}, 5, q) == 0.0


@pytest.mark.parametrize("value", [1e-9, 0.001, 0.5, 1.0, 59.0, 600.0, 86_400.0, 1e300])
@pytest.mark.parametrize("q", [0.0, 0.5, 0.95, 1.0])
def test_single_value_within_accuracy(value: float, q: float) -> None:
    bins, zero = sketch([value])
    assert_close(quantile(bins, zero, q), value)


@pytest.mark.parametrize("value", [0.0, MIN_INDEXABLE, MIN_INDEXABLE / 2])
def test_zero_bucket_holds_zero_and_values_too_small_to_index(value: float) -> None:
    assert sketch_key(value) is None


def test_tiny_positive_values_are_indexed() -> None:
    assert sketch_key(1e-300) is not None


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([1.0, 2.0, 3.0, 4.0, 5.0], 0.5, 3.0),  # rank 2
        ([1.0, 2.0, 3.0, 4.0], 0.5, 2.0),  # rank 1.5 -> floor 1, not an interpolation
        ([10.0] * 19 + [1000.0], 0.95, 10.0),  # rank 18.05 -> 18
        ([10.0] * 19 + [1000.0], 1.0, 1000.0),
        ([10.0] * 18 + [1000.0] * 2, 0.95, 1000.0),
        ([0.0, 0.0, 5.0], 0.5, 0.0),  # rank 1 is the second zero
        ([0.0, 0.0, 5.0], 0.95, 0.0),  # rank 1.9 -> 1
        ([0.0, 0.0, 5.0], 1.0, 5.0),
        ([0.0, 5.0, 0.0, 7.0], 0.5, 0.0),  # order of insertion does not matter
        ([0.0, 5.0, 0.0, 7.0], 0.7, 5.0),
        ([300.0, 60.0, 1200.0, 60.0, 90.0], 0.0, 60.0),
    ],
)
def test_quantile_is_the_rank_floor_value(values: list[float], q: float, expected: float) -> None:
    assert exact(values, q) == expected  # the oracle agrees with the table
    bins, zero = sketch(values)
    assert_close(quantile(bins, zero, q), expected)


positive = st.floats(min_value=MIN_INDEXABLE, max_value=1e300, exclude_min=True)
durations = st.floats(min_value=0.001, max_value=86_400)
quantiles = st.sampled_from([0.0, 0.5, 0.95, 1.0]) | st.floats(min_value=0, max_value=1)


@settings(max_examples=150, deadline=None)
@given(st.lists(positive | durations, min_size=1, max_size=200), quantiles)
def test_quantile_of_positive_floats_within_one_percent(values: list[float], q: float) -> None:
    bins, zero = sketch(values)
    assert zero == 0
    assert_close(quantile(bins, zero, q), exact(values, q))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.just(0.0) | durations, min_size=1, max_size=200), quantiles)
def test_quantile_with_zeros_within_one_percent(values: list[float], q: float) -> None:
    bins, zero = sketch(values)
    assert zero == values.count(0.0)
    assert sum(bins.values()) + zero == len(values)
    assert_close(quantile(bins, zero, q), exact(values, q))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.just(0.0) | durations, max_size=100), st.lists(st.just(0.0) | durations, max_size=100))
def test_merged_sketch_equals_sketch_of_concatenation(left: list[float], right: list[float]) -> None:
    lb, lz = sketch(left)
    rb, rz = sketch(right)
    lb_before, rb_before = dict(lb), dict(rb)
    merged = merge_bins(lb, rb)
    assert (lb, rb) == (lb_before, rb_before)  # inputs untouched
    both_bins, both_zero = sketch(left + right)
    assert merged == both_bins
    assert merge_bins(rb, lb) == merged
    assert lz + rz == both_zero
    if left or right:
        for q in (0.0, 0.5, 0.95, 1.0):
            assert quantile(merged, lz + rz, q) == quantile(both_bins, both_zero, q)
            assert_close(quantile(merged, lz + rz, q), exact(left + right, q))


def test_quantile_is_monotonic_in_q() -> None:
    values = [float(v) for v in range(0, 1000, 7)]
    bins, zero = sketch(values)
    estimates = [quantile(bins, zero, q / 100) for q in range(101)]
    assert all(e is not None for e in estimates)
    assert estimates == sorted(estimates)  # type: ignore[type-var]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.just(0.0) | durations, max_size=100))
def test_sketch_bins_of_a_list_are_the_bins_of_folding_it(values: list[float]) -> None:
    """A window switching from its exact durations to the sketch gets the bins folding would give."""
    bins, _ = sketch(values)
    assert sketch_bins(values) == bins
    assert sketch_bins(iter(values)) == bins
