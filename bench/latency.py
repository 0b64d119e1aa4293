"""StreamPulse's freshness at a steady rate, measured from outside and from its own histograms.

A paced producer writes live trips (event time = the wall clock when sent) at a fixed rate.
Before it starts, an SSE client subscribes to ``GET /stream?window=1m`` for the sampled regions
(every region id divisible by 4) through a real API process, and a bare consumer reads the
events topic; while it runs, a poller reads, every 50 ms, the Redis windows of those regions:

- **open window**: for each sampled trip, the time from its record timestamp until the 1m
  window's ``trip_count`` in Redis includes it. A region's trips are folded in partition order,
  which is the order they were sent, so a count of k means its first k trips are in.
- **final**: for each sampled window (every size), the time from its close until Redis holds it
  with ``final=1``. A window closes when its partition's watermark reaches the window's end, that
  is when a trip with event time ≥ end + lateness is sent, about end + 30 s on this clock; the
  windows still open at the end are closed by the end-of-stream marker when it is sent.
- **push**: for each SSE event, its receipt minus the millisecond part of its id. The id is the
  updates stream's entry id, which Redis sets from its own clock when the sink's script appends
  the change, in the same script that stores the window: that is the moment of the write (same
  machine, same clock, no sampling interval).
- **event → browser**: for each sampled trip, its record timestamp until an SSE event of its 1m
  window carries a ``trip_count`` that includes it (the open-window rule, seen through the push).
- **broker hop**: for every record of partition 0, its receipt by the bare consumer minus its
  timestamp: the producer's batching and the broker, the first stage of every figure above.

The first seconds (partition assignment, first batches) are not sampled. The poll interval
adds up to 50 ms to the open and final figures (not to push or event → browser). The worker's
and the API's histograms are scraped at the end and reported beside them.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import re
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from redis.asyncio import Redis

from api.push import entry_ms
from app.kafka_client import client_kwargs
from app.redis_keys import RedisKeys
from app.settings import Settings
from bench.kafka import BatchProducer
from bench.reference import LATENESS_MS, SIZES_MS, WindowKey
from bench.run import Run
from bench.sse import SseEvent, subscribe
from bench.workloads import REGIONS, TripSampler, event_json

SAMPLED_REGION_EVERY = 4
POLL_S = 0.05
TICK_S = 0.01
WARMUP_S = 5.0
#: After the end-of-stream marker, how long the last windows may take to appear.
DRAIN_S = 60.0
SAMPLED_REGIONS = range(0, REGIONS + 1, SAMPLED_REGION_EVERY)
HOP_PARTITION = 0
#: How long the SSE client may take to connect before the producer starts anyway.
CONNECT_S = 30.0
#: The freshness targets: (p50, p99) in ms, ``None`` where only the p99 has one.
TARGETS_MS: dict[str, tuple[float | None, float]] = {
    "open_window": (150, 500),
    "final": (250, 1000),
    "push": (None, 100),
    "event_to_browser": (None, 600),
}
_LE = re.compile(r'le="([^"]+)"')
#: Its consumer logs every (re)assignment at INFO, in the middle of the bench's output.
logging.getLogger("aiokafka.consumer.subscription_state").setLevel(logging.WARNING)


@dataclass
class Probe:
    """Trips sent and seen per sampled 1m window, final windows awaited, latencies measured."""

    #: Send times of the trips of each sampled 1m window, in order (-1: sent during the warm-up).
    opened: dict[tuple[int, int], list[int]] = field(default_factory=dict)
    seen: dict[tuple[int, int], int] = field(default_factory=dict)
    closes: dict[WindowKey, int] = field(default_factory=dict)
    open_ms: list[float] = field(default_factory=list)
    final_ms: list[float] = field(default_factory=list)
    #: Trips of each sampled 1m window an SSE event has carried so far.
    pushed: dict[tuple[int, int], int] = field(default_factory=dict)
    push_ms: list[float] = field(default_factory=list)
    browser_ms: list[float] = field(default_factory=list)
    hop_ms: list[float] = field(default_factory=list)
    sse_events: int = 0
    sent: int = 0
    producing: bool = True
    sample_from_ms: float = math.inf
    #: Wall-clock seconds the producer ran, warm-up included (the achieved rate is sent / this).
    produced_s: float = 0.0

    def track(self, region: int, t_ms: int, measured: bool) -> None:
        """Every trip of a sampled region counts towards its window's ``trip_count``; only those
        sent after the warm-up (``measured``) are timed."""
        self.opened.setdefault((region, t_ms - t_ms % SIZES_MS["1m"]), []).append(t_ms if measured else -1)
        if measured:
            for size, size_ms in SIZES_MS.items():
                start = t_ms - t_ms % size_ms
                self.closes.setdefault((size, region, start), start + size_ms + LATENESS_MS)

    def on_sse(self, event: SseEvent) -> None:
        """Push latency of every window event; event → browser of the trips it newly carries."""
        if event.event != "window":
            return
        self.sse_events += 1
        received_ms = event.received_s * 1000
        if event.id and received_ms >= self.sample_from_ms:
            self.push_ms.append(received_ms - entry_ms(event.id))
        window = orjson.loads(event.data)
        start = int(datetime.fromisoformat(window["window_start"]).timestamp() * 1000)
        key = (int(window["region_id"]), start)
        ts = self.opened.get(key)
        if ts is None:
            return
        done = self.pushed.get(key, 0)
        count = min(int(window["trip_count"]), len(ts))
        self.browser_ms.extend(received_ms - t for t in ts[done:count] if t >= 0)
        self.pushed[key] = max(done, count)

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
        probe.sample_from_ms = sample_from_ms = (time.time() + WARMUP_S) * 1000
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
        probe.produced_s = time.monotonic() - started
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


async def _hop(run: Run, topic: str, probe: Probe) -> None:
    """Receipt minus record timestamp of every event record of partition 0, read as a plain
    consumer (no group); one partition of eight, so that decoding records does not take the
    producer's share of this process at the higher rates."""
    consumer = AIOKafkaConsumer(**client_kwargs(Settings(kafka_bootstrap=run.bootstrap)))
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, HOP_PARTITION)])
        while probe.producing:
            batches = await consumer.getmany(timeout_ms=100)
            now_ms = time.time() * 1000
            for records in batches.values():
                probe.hop_ms.extend(
                    now_ms - r.timestamp
                    for r in records
                    if not r.headers and r.timestamp >= probe.sample_from_ms
                )
    finally:
        await consumer.stop()


def _trip_count(data: bytes | None) -> int:
    return int(orjson.loads(data)["trip_count"]) if data else 0


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile, in ms rounded to 1 ms."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(q * len(ordered)) - 1)], 1)


def _scrape(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return str(resp.read().decode())
    except OSError:
        return ""


def histogram_quantile(urls: Iterable[str], name: str, q: float, labels: str = "") -> float | None:
    """:func:`quantile_of` over the ``/metrics`` of every process at ``urls``."""
    return quantile_of([_scrape(url) for url in urls], name, q, labels)


def quantile_of(texts: Iterable[str], name: str, q: float, labels: str = "") -> float | None:
    """``histogram_quantile`` over the Prometheus buckets of ``name`` summed across expositions
    (linear within a bucket, as Prometheus does), in ms; ``labels`` (e.g. ``kind="live"``) picks
    one series. ``None`` without observations."""
    counts: dict[float, float] = {}
    for text in texts:
        for line in text.splitlines():
            if not line.startswith(f"{name}_bucket{{") or labels not in line:
                continue
            match = _LE.search(line)
            if match:
                le = float("inf") if match.group(1) == "+Inf" else float(match.group(1))
                counts[le] = counts.get(le, 0.0) + float(line.rsplit(" ", 1)[1])
    buckets = sorted(counts.items())
    if not buckets or buckets[-1][1] == 0:
        return None
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


def verdict(value: float | None, target: float | None) -> str | None:
    """``met`` or ``missed by N ms`` (``None``: no target; ``not measured``: no samples)."""
    if target is None:
        return None
    if value is None:
        return "not measured"
    return "met" if value <= target else f"missed by {value - target:,.0f} ms"


def verdicts(result: dict[str, Any]) -> dict[str, str]:
    """Every target against the figures measured from outside."""
    out = {}
    for kind, targets in TARGETS_MS.items():
        for q, target in zip((50, 99), targets, strict=True):
            said = verdict(result.get(f"{kind}_latency_p{q}_ms"), target)
            if said is not None:
                out[f"{kind} p{q} ≤ {target:g} ms"] = said
    return out


async def measure(
    run: Run, topic: str, app_id: str, rate: float, seconds: float, api_url: str
) -> dict[str, Any]:
    """Produce at ``rate`` for ``seconds`` (after the warm-up), poll Redis, read the topic and
    ``/stream``; a worker must be running on ``topic`` under ``app_id``, and the API at ``api_url``
    on the same app id."""
    probe = Probe()
    redis = Redis.from_url(run.redis_url)
    connected = asyncio.Event()
    sse = asyncio.create_task(subscribe(api_url, "1m", SAMPLED_REGIONS, probe.on_sse, connected))
    hop = asyncio.create_task(_hop(run, topic, probe))
    try:
        await asyncio.wait_for(connected.wait(), CONNECT_S)
        await asyncio.gather(
            _produce(run, topic, rate, seconds, probe), _poll(redis, RedisKeys(app_id), probe)
        )
    finally:
        sse.cancel()
        await asyncio.gather(sse, hop, return_exceptions=True)
        await redis.aclose()
    result: dict[str, Any] = {
        "rate_events_per_s": round(rate, 1),
        "achieved_events_per_s": round(probe.sent / probe.produced_s, 1) if probe.produced_s else None,
        "seconds": seconds,
        "events_sent": probe.sent,
        "sampled_trips": len(probe.open_ms),
        "sampled_final_windows": len(probe.final_ms),
        "sse_events": probe.sse_events,
        "unresolved": probe.unresolved,
    }
    for kind, values in (
        ("open_window", probe.open_ms),
        ("final", probe.final_ms),
        ("push", probe.push_ms),
        ("event_to_browser", probe.browser_ms),
        ("broker_hop", probe.hop_ms),
    ):
        for q in (0.5, 0.99):
            result[f"{kind}_latency_p{round(q * 100)}_ms"] = percentile(values, q)
    return result
