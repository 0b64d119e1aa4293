"""A deterministic generator of realistic trips for load tests (``--synthetic N``).

The same (count, regions, seed, start) always gives the same events, byte for byte. Arrivals
are a Poisson process whose rate follows a daily curve (night lull, morning and evening peaks,
in UTC hours); regions are Zipf-skewed (a few busy, a long tail); distance is log-normal, the
trip is slower when the city is busy, and the fare rises with distance and duration.

Events come out as canonical JSON, in the exact bytes :meth:`app.events.TripEvent.to_json`
gives for them (a unit test holds the two together), so the replayer validates them through the
model in bulk and sends these bytes without re-serialising: the generator is also the benchmark
load and must not be the bottleneck.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from statistics import NormalDist

import orjson

from tables.times import EPOCH, parse_time_ms

DEFAULT_START = "2025-01-01T00:00:00Z"
#: Mean trips per region and second (before the daily curve): 50 regions give 5 trips/s, so a
#: million trips cover a bit over two days of event time.
TRIPS_PER_REGION_S = 0.1
ZIPF_EXPONENT = 1.1
_DAY_MS = 86_400_000
_MINUTE_MS = 60_000
_DISTANCE_MU, _DISTANCE_SIGMA = 0.6, 0.75
_DISTANCE_QUANTILES = 8192


@dataclass(frozen=True)
class SyntheticSpec:
    count: int
    regions: int = 50
    seed: int = 0
    start_ms: int = 1_735_689_600_000  # DEFAULT_START


def parse_start(text: str) -> int:
    """``--start`` as epoch milliseconds, by the event contract's time rule."""
    return parse_time_ms(text.strip())


def _circular_bump(hour: float, centre: float, width: float) -> float:
    distance = min(abs(hour - centre), 24 - abs(hour - centre))
    return math.exp(-((distance / width) ** 2))


def daily_curve() -> list[float]:
    """Relative trip volume for each minute of the (UTC) day, mean 1."""
    raw = [
        0.12
        + 1.0 * _circular_bump(m / 60, 8.5, 1.6)
        + 0.55 * _circular_bump(m / 60, 13.0, 3.0)
        + 1.3 * _circular_bump(m / 60, 18.5, 2.2)
        + 0.45 * _circular_bump(m / 60, 23.5, 1.8)
        for m in range(1440)
    ]
    mean = sum(raw) / len(raw)
    return [v / mean for v in raw]


def zipf_regions(regions: int, rng: random.Random) -> tuple[list[float], list[int]]:
    """Cumulative Zipf weights by rank, and which region id (1..regions) holds each rank."""
    cumulative, total = [], 0.0
    for rank in range(1, regions + 1):
        total += rank**-ZIPF_EXPONENT
        cumulative.append(total)
    ids = list(range(1, regions + 1))
    rng.shuffle(ids)
    return [c / total for c in cumulative], ids


@cache
def distance_quantiles() -> list[float]:
    """Trip distances in miles at evenly spaced quantiles of a log-normal (median 1.8 mi, capped
    at 60 mi), rounded to 0.01: indexing it with a uniform draw is inverse-CDF sampling, several
    times cheaper per trip than drawing the normal variate."""
    normal = NormalDist(_DISTANCE_MU, _DISTANCE_SIGMA)
    size = _DISTANCE_QUANTILES
    return [min(max(round(math.exp(normal.inv_cdf((q + 0.5) / size)), 2), 0.1), 60.0) for q in range(size)]


def format_day(day: int) -> str:
    """``YYYY-MM-DDT`` of a day since the epoch; isoformat pads every year to four digits, as
    :func:`app.events.format_time_ms` does."""
    return (EPOCH + timedelta(days=day)).date().isoformat() + "T"


@cache
def _clock_texts() -> tuple[list[str], list[str]]:
    """``HH:MM:SS`` for every second of a day and ``.mmmZ`` for every millisecond (``Z`` for 0):
    looking these up is several times faster than formatting each event's time."""
    seconds = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86_400)]
    millis = ["Z"] + [f".{ms:03d}Z" for ms in range(1, 1000)]
    return seconds, millis


def generate(
    spec: SyntheticSpec, *, loop: int = 0, shift_ms: int = 0, size: int = 4096
) -> Iterator[tuple[list[int], list[int], list[bytes]]]:
    """Chunks of (region ids, event times in ms, canonical JSON values), in event-time order.

    Loop ``k`` (``--loop``) repeats loop 0 shifted by ``shift_ms`` with ids suffixed ``~k``.
    """
    rng = random.Random(spec.seed)
    cumulative, region_of_rank = zipf_regions(spec.regions, rng)
    last_rank = spec.regions - 1
    curve = daily_curve()
    speed_mph = [16.0 / (0.5 + 0.5 * c) for c in curve]
    mean_gap_ms = 1000.0 / (TRIPS_PER_REGION_S * spec.regions)
    second_texts, milli_texts = _clock_texts()
    distances = distance_quantiles()
    rnd, log, dumps = rng.random, math.log, orjson.dumps
    suffix = f"~{loop}" if loop else ""
    prefix = f"syn{spec.seed}-"
    t = float(spec.start_ms)
    day, day_start, day_text = -1, 0, ""
    region_ids: list[int] = []
    times: list[int] = []
    values: list[bytes] = []
    for i in range(spec.count):
        minute = int(t // _MINUTE_MS) % 1440
        t += -log(1.0 - rnd()) * mean_gap_ms / curve[minute]
        rank = bisect_right(cumulative, rnd())
        region = region_of_rank[rank if rank < last_rank else last_rank]
        distance = distances[int(rnd() * _DISTANCE_QUANTILES)]
        duration = float(int(90.5 + distance / (speed_mph[minute] * (0.7 + 0.6 * rnd())) * 3600))
        fare = int((300.0 + 250.0 * distance + duration * (35.0 / 60)) * (0.95 + 0.1 * rnd()) + 0.5) / 100
        t_ms = int(t) + shift_ms
        if t_ms - day_start >= _DAY_MS or t_ms < day_start:
            day = t_ms // _DAY_MS
            day_start, day_text = day * _DAY_MS, format_day(day)
        second, ms = divmod(t_ms - day_start, 1000)
        region_ids.append(region)
        times.append(t_ms)
        values.append(
            dumps(
                {
                    "trip_id": prefix + str(i) + suffix,
                    "region_id": region,
                    "event_time": day_text + second_texts[second] + milli_texts[ms],
                    "fare": fare,
                    "duration": duration,
                    "distance": distance,
                }
            )
        )
        if len(values) >= size:
            yield region_ids, times, values
            region_ids, times, values = [], [], []
    if values:
        yield region_ids, times, values
