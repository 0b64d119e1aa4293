"""A mergeable duration-quantile sketch: DDSketch's logarithmic mapping over a sparse bin map.

The bins are a plain ``{key: count}`` dict so that the state is JSON-serializable in a
changelogged table and merges by adding counts. Quantiles follow DDSketch's definition
(rank = q * (n - 1)), so every reported quantile is within ``RELATIVE_ACCURACY`` (1 %) of the
exact value of that rank in the sorted input. The aggregate narrows that further (exact answers
for small windows, estimates clamped to the observed range): see ``tables.aggregate``.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from ddsketch.mapping import LogarithmicMapping

RELATIVE_ACCURACY = 0.01
MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)
#: Values at or below this are counted in the zero bucket (a 0-second trip is a real value).
MIN_INDEXABLE = MAPPING.min_possible


@lru_cache(maxsize=131_072)
def sketch_key(value: float) -> int | None:
    """Bin key of a non-negative value; ``None`` for the zero bucket. Cached: durations are
    mostly whole seconds (at most 86,400 of them), and the logarithm is a visible part of folding
    an event (docs/benchmarks.md, "Hot-path choices")."""
    if value <= MIN_INDEXABLE:
        return None
    return MAPPING.key(value)


def quantile(bins: dict[int, int], zero_count: int, q: float) -> float | None:
    """Approximate value at quantile ``q`` (0..1); ``None`` when nothing was added."""
    total = zero_count + sum(bins.values())
    if total == 0:
        return None
    rank = q * (total - 1)
    if rank < zero_count:
        return 0.0
    running = zero_count
    for key in sorted(bins):
        running += bins[key]
        if running > rank:
            return float(MAPPING.value(key))
    return float(MAPPING.value(max(bins)))


def sketch_bins(values: Iterable[float]) -> dict[int, int]:
    """Bins of ``values`` (zero-bucket values left out: the caller counts those), built the way
    folding them one by one would build them: a window that outgrows its exact durations list
    switches to the sketch without changing any answer the sketch would have given."""
    out: dict[int, int] = {}
    for value in values:
        key = sketch_key(value)
        if key is not None:
            out[key] = out.get(key, 0) + 1
    return out


def merge_bins(left: dict[int, int], right: dict[int, int]) -> dict[int, int]:
    out = dict(left)
    for key, count in right.items():
        out[key] = out.get(key, 0) + count
    return out
