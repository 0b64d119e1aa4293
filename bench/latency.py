"""StreamPulse's latencies at a steady rate, measured from outside by polling Redis.

A paced producer writes live trips (event time = the wall clock when sent) at a fixed rate
while a poller reads, every 50 ms, the windows of a sample of regions (every region id
divisible by 4):

- **open window**: for each sampled trip, the time from its record timestamp until the 1m
  window's ``trip_count`` in Redis includes it. A region's trips are folded in partition order,
  which is the order they were sent, so a count of k means its first k trips are in.
- **final**: for each sampled window (every size), the time from its close until Redis holds it
  with ``final=1``. A window closes when its partition's watermark reaches the window's end, that
  is when a trip with event time ≥ end + lateness is sent, about end + 30 s on this clock; the
  windows still open at the end are closed by the end-of-stream marker when it is sent.

The first seconds (partition assignment, first batches) are not sampled. The poll interval
adds up to 50 ms to every figure. The worker's own histograms are reported beside them.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.asyncio import Redis

from app.redis_keys import RedisKeys
from bench.kafka import BatchProducer
from bench.reference import LATENESS_MS, SIZES_MS, WindowKey
from bench.run import Run
from bench.workloads import REGIONS, TripSampler, event_json

SAMPLED_REGION_EVERY = 4
POLL_S = 0.05
TICK_S = 0.01
WARMUP_S = 5.0
#: After the end-of-stream marker, how long the last windows may take to appear.
DRAIN_S = 60.0


@dataclass
class Probe:
    """Trips sent and seen per sampled 1m window, final windows awaited, latencies measured."""

    #: Send times of the trips of each sampled 1m window, in order (-1: sent during the warm-up).
    opened: dict[tuple[int, int], list[int]] = field(default_factory=dict)
    seen: dict[tuple[int, int], int] = field(default_factory=dict)
    closes: dict[WindowKey, int] = field(default_factory=dict)
    open_ms: list[float] = field(default_factory=list)
    final_ms: list[float] = field(default_factory=list)
    sent: int = 0
    producing: bool = True

    def track(self, region: int, t_ms: int, measured: bool) -> None:
        """Every trip of a sampled region counts towards its window's ``trip_count``; only those
        sent after the warm-up (``measured``) are timed."""
        self.opened.setdefault((region, t_ms - t_ms % SIZES_MS["1m"]), []).append(t_ms if measured else -1)
        if measured:
            for size, size_ms in SIZES_MS.items():
                start = t_ms - t_ms % size_ms
                self.closes.setdefault((size, region, start), start + size_ms + LATENESS_MS)

    def end_of_stream(self, eos_ms: int) -> None:
        for key, close in self.closes.items():
            self.closes[key] = min(close, eos_ms)

    @property
    def unresolved(self) -> int:
        unseen = sum(len(ts) - self.seen.get(key, 0) for key, ts in self.opened.items())
        return unseen + len(self.closes)


async def _produce(run: Run, topic: str, rate: float, seconds: float, probe: Probe) -> None:
    producer = BatchProducer(run.bootstrap, topic)
    await producer.start()
    sampler = TripSampler(REGIONS, random.Random(50))
    try:
        started = time.monotonic()
        sample_from_ms = (time.time() + WARMUP_S) * 1000
        t_ms = int(time.time() * 1000)
        while (elapsed := time.monotonic() - started) < WARMUP_S + seconds:
            for _ in range(int(rate * elapsed) - probe.sent):
                t_ms = int(time.time() * 1000)
                region, fare, duration, distance = sampler.trip()
                key = str(region).encode()
                value = event_json(f"lat-{probe.sent}", region, t_ms, fare, duration, distance)
                await producer.add(key, value, t_ms, producer.partition_of(key))
                probe.sent += 1
                if region % SAMPLED_REGION_EVERY == 0:
                    probe.track(region, t_ms, t_ms >= sample_from_ms)
            await producer.flush(wait=False)
            await asyncio.sleep(TICK_S)
        await producer.end_of_stream(t_ms)
        await producer.flush()
        probe.end_of_stream(int(time.time() * 1000))
    finally:
        probe.producing = False
        await producer.stop()


async def _poll(redis: Redis, keys: RedisKeys, probe: Probe) -> None:
    deadline = float("inf")
    while probe.producing or (probe.unresolved and time.monotonic() < deadline):
        if not probe.producing and deadline == float("inf"):
            deadline = time.monotonic() + DRAIN_S
        await asyncio.sleep(POLL_S)
        pending = [key for key, ts in probe.opened.items() if probe.seen.get(key, 0) < len(ts)]
        due = [key for key, close in probe.closes.items() if close <= time.time() * 1000]
        pipe = redis.pipeline(transaction=False)
        for region, start in pending:
            pipe.hmget(keys.window("1m", region, start), "data")
        for size, region, start in due:
            pipe.hget(keys.window(size, region, start), "final")
        answers = await pipe.execute() if pending or due else []
        now_ms = time.time() * 1000
        for key, (data,) in zip(pending, answers[: len(pending)], strict=True):
            count = _trip_count(data)
            ts = probe.opened[key]
            for i in range(probe.seen.get(key, 0), min(count, len(ts))):
                if ts[i] >= 0:
                    probe.open_ms.append(now_ms - ts[i])
            probe.seen[key] = max(probe.seen.get(key, 0), min(count, len(ts)))
        for wkey, final in zip(due, answers[len(pending) :], strict=True):
            if final == b"1":
                probe.final_ms.append(now_ms - probe.closes.pop(wkey))


def _trip_count(data: bytes | None) -> int:
    return int(orjson.loads(data)["trip_count"]) if data else 0


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile, in ms rounded to 1 ms."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(q * len(ordered)) - 1)], 1)


def histogram_quantile(port: int, name: str, q: float) -> float | None:
    """``histogram_quantile`` over a worker's Prometheus buckets (linear within a bucket), in ms."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    buckets = []
    for line in text.splitlines():
        if line.startswith(f'{name}_bucket{{le="'):
            le = line.split('"')[1]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
    if not buckets or buckets[-1][1] == 0:
        return None
    buckets.sort()
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return round(lower_bound * 1000, 1)
            share = (rank - lower_count) / (count - lower_count) if count > lower_count else 1.0
            return round((lower_bound + (bound - lower_bound) * share) * 1000, 1)
        lower_bound, lower_count = bound, count
    return None


async def measure(run: Run, topic: str, app_id: str, rate: float, seconds: float) -> dict[str, Any]:
    """Produce at ``rate`` for ``seconds`` (after the warm-up) and poll; a worker must be running
    on ``topic`` under ``app_id``."""
    probe = Probe()
    redis = Redis.from_url(run.redis_url)
    try:
        await asyncio.gather(
            _produce(run, topic, rate, seconds, probe), _poll(redis, RedisKeys(app_id), probe)
        )
    finally:
        await redis.aclose()
    return {
        "rate_events_per_s": round(rate, 1),
        "seconds": seconds,
        "events_sent": probe.sent,
        "sampled_trips": len(probe.open_ms),
        "sampled_final_windows": len(probe.final_ms),
        "unresolved": probe.unresolved,
        "open_window_latency_p50_ms": percentile(probe.open_ms, 0.5),
        "open_window_latency_p99_ms": percentile(probe.open_ms, 0.99),
        "final_latency_p50_ms": percentile(probe.final_ms, 0.5),
        "final_latency_p99_ms": percentile(probe.final_ms, 0.99),
    }
