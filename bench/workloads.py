"""The two seeded workloads of the benchmark and the loader that puts one into a topic.

- **live**: event times advance as if the trips were produced at 50,000 per second (a very busy
  city): a million trips span 20 s of event time, so every batch touches only the current windows.
- **backfill**: the same number of trips spread over 30 days of event time: every batch touches
  many windows, and most 1m windows hold a single trip.

Times only move forward (each partition is in event-time order), so no trip is late under any
contender's lateness rule and every contender must produce exactly the reference's windows.
The replayer's ``--synthetic`` mode paces event time by its own daily curve (about 0.1 trips per
region and second), which can give neither workload, hence this generator.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from bench.kafka import BatchProducer, create_topic

REGIONS = 265  # the TLC taxi zones, so the API can name every region
LIVE_EVENTS_PER_S = 50_000
BACKFILL_SPAN_MS = 30 * 86_400_000
#: A fixed start for the backfill keeps its windows the same from run to run.
BACKFILL_START_MS = 1_733_011_200_000  # 2024-12-01T00:00:00Z
ZIPF_S = 1.05


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    events: int
    start_ms: int
    span_ms: int
    seed: int
    regions: int = REGIONS


def live(events: int, start_ms: int, seed: int = 8) -> Workload:
    return Workload("live", events, start_ms, max(1, events * 1000 // LIVE_EVENTS_PER_S), seed)


def backfill(events: int, seed: int = 30) -> Workload:
    return Workload("backfill", events, BACKFILL_START_MS, BACKFILL_SPAN_MS, seed)


class TripSampler:
    """Region (Zipf-skewed: a few busy zones, a long tail), distance, duration and fare of a trip."""

    def __init__(self, regions: int, rng: random.Random) -> None:
        weights = [1 / rank**ZIPF_S for rank in range(1, regions + 1)]
        total = sum(weights)
        running = 0.0
        self._cumulative = []
        for w in weights:
            running += w
            self._cumulative.append(running / total)
        self._ids = list(range(1, regions + 1))
        rng.shuffle(self._ids)
        self._rng = rng

    def trip(self) -> tuple[int, float, float, float]:
        """``(region_id, fare, duration_s, distance_mi)``, every value inside the contract's ranges."""
        rnd = self._rng.random
        rank = min(bisect_right(self._cumulative, rnd()), len(self._ids) - 1)
        distance = round(min(max(math.exp(0.6 + 0.75 * self._rng.gauss()), 0.1), 60.0), 2)
        duration = float(int(120 + distance * 200 * (0.7 + 0.6 * rnd())))
        fare = round(3.0 + 2.5 * distance + 0.4 * duration / 60 + rnd(), 2)
        return self._ids[rank], fare, duration, distance


def iso_ms(t_ms: int) -> str:
    return datetime.fromtimestamp(t_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{t_ms % 1000:03d}Z"


def event_json(trip_id: str, region: int, t_ms: int, fare: float, duration: float, distance: float) -> bytes:
    """The contract's event in canonical JSON."""
    return orjson.dumps(
        {
            "trip_id": trip_id,
            "region_id": region,
            "event_time": iso_ms(t_ms),
            "fare": fare,
            "duration": duration,
            "distance": distance,
        }
    )


def trips(w: Workload) -> Iterator[tuple[int, int, bytes]]:
    """``(region_id, event_time_ms, value)`` in event-time order; the same spec gives the same bytes."""
    rng = random.Random(w.seed)
    sampler = TripSampler(w.regions, rng)
    step = w.span_ms / w.events
    for i in range(w.events):
        t_ms = w.start_ms + int((i + rng.random()) * step)
        region, fare, duration, distance = sampler.trip()
        yield region, t_ms, event_json(f"{w.name}-{w.seed}-{i}", region, t_ms, fare, duration, distance)


async def load(bootstrap: str, topic: str, partitions: int, w: Workload) -> int:
    """Create the topic, write the workload and an end-of-stream marker per partition; returns the
    highest event time."""
    await create_topic(bootstrap, topic, partitions)
    producer = BatchProducer(bootstrap, topic)
    await producer.start()
    try:
        max_ms = w.start_ms
        for region, t_ms, value in trips(w):
            key = str(region).encode()
            await producer.add(key, value, t_ms, producer.partition_of(key))
            max_ms = t_ms
        await producer.end_of_stream(max_ms)
        await producer.flush()
        return max_ms
    finally:
        await producer.stop()
