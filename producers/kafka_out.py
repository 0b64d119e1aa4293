"""The events topic as the replayer writes it: idempotent, compressed, batched by partition.

Records go into one aiokafka ``BatchBuilder`` per partition (:mod:`app.kafka_batches`) and are
submitted whole with ``send_batch``. The partition of a key is computed once per region with
aiokafka's default partitioner (murmur2, as the Java client), so a region's events land on the
partition any Kafka client would choose for its key.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.codec import has_zstd
from aiokafka.errors import KafkaConnectionError, KafkaError

from app import kafka_pacing
from app.control import END_OF_STREAM, encode_control
from app.kafka_batches import PartitionBatches, partition_for
from app.kafka_client import client_kwargs, connection_problem
from app.provision import ProvisioningError, ensure_topics, topic_specs
from app.settings import Settings
from producers.exceptions import KafkaUnreachable

CONNECT_TIMEOUT_S = 10.0
#: How long a batch may wait for the broker before the replay fails: a broker restart or a leader
#: election takes tens of seconds, which a replay rides through (Kafka's own producers wait two
#: minutes, their delivery.timeout.ms). The idempotent producer retries without duplicating.
DELIVERY_TIMEOUT_S = 120.0
#: Under pacing, batches still filling are handed over at most this often: flushing on every
#: pacing sleep makes batches of a few events, each waiting for the last one's acknowledgement.
LINGER_S = 0.02
#: Uncompressed bytes per batch: about 2000 events, a few hundred KB on the wire after compression.
BATCH_BYTES = 256 * 1024
T = TypeVar("T")


class EventSink:
    """Appends events to per-partition batches and keeps them flowing to the broker.

    ``add`` is synchronous and cheap; full batches wait in a queue until the next ``submit``,
    which hands them to the producer (and waits while the producer's queue for that partition is
    full: that is the back-pressure).
    """

    def __init__(self, settings: Settings, topic: str) -> None:
        self.settings = settings
        self.bootstrap = settings.kafka_bootstrap
        self.topic = topic
        self.partitions = settings.partitions
        self._producer: Any = None
        self._partition_ids: list[int] = []
        self._routes: dict[int, tuple[bytes, int]] = {}
        self._batches: PartitionBatches | None = None
        self._pending: list[asyncio.Future[Any]] = []
        self._lingered_since = 0.0

    async def start(self) -> None:
        """Connect, provision the app's topics (and ``--topic``'s); :class:`KafkaUnreachable`
        when impossible."""
        kafka_pacing.pace_metadata_updates()
        specs = topic_specs(self.settings, [self.topic])
        await self._within(ensure_topics(self.settings, specs, CONNECT_TIMEOUT_S), "creating the topics")
        producer = AIOKafkaProducer(
            **client_kwargs(self.settings),
            acks="all",
            enable_idempotence=True,
            compression_type="zstd" if has_zstd() else "gzip",
            max_batch_size=BATCH_BYTES,
            linger_ms=20,
            request_timeout_ms=int(DELIVERY_TIMEOUT_S * 1000),
        )
        try:
            await self._within(producer.start(), "connecting")
            partitions = await self._within(producer.partitions_for(self.topic), "reading the topic")
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer
        self._batches = PartitionBatches(producer)
        self._partition_ids = sorted(partitions)

    async def _within(self, step: Awaitable[T], doing: str) -> T:
        try:
            return await asyncio.wait_for(step, 2 * CONNECT_TIMEOUT_S)
        except (TimeoutError, KafkaError, OSError, ProvisioningError) as exc:
            if isinstance(exc, TimeoutError):
                reason = f"no answer within {2 * CONNECT_TIMEOUT_S:.0f}s"
            elif isinstance(exc, KafkaConnectionError):
                reason = await connection_problem(self.settings) or "cannot connect"
            else:
                reason = str(exc) or type(exc).__name__
            raise KafkaUnreachable(f"Kafka unreachable at {self.bootstrap} ({doing}: {reason})") from None

    def _route(self, region_id: int) -> tuple[bytes, int]:
        key = str(region_id).encode()
        route = (key, partition_for(key, self._partition_ids))
        self._routes[region_id] = route
        return route

    def add(self, region_id: int, timestamp_ms: int, value: bytes) -> None:
        """Append one event (key = the region id as decimal text)."""
        route = self._routes.get(region_id) or self._route(region_id)
        self._append(route[1], route[0], timestamp_ms, value, [])

    def _append(self, partition: int, key: bytes | None, ts: int, value: bytes, headers: list[Any]) -> None:
        assert self._batches is not None, "start() first"
        self._batches.append(partition, key, value, ts, headers)

    async def submit(self, *, partial: bool = False) -> None:
        """Hand full batches to the producer; with ``partial`` also the ones still filling
        (before pacing sleeps and at the end, so nothing waits for a batch to fill)."""
        assert self._batches is not None, "start() first"
        for partition, builder in self._batches.take(partial=partial):
            self._pending.append(await self._producer.send_batch(builder, self.topic, partition=partition))
        self._reap()

    async def linger(self) -> None:
        """Hand over the batches still filling when the last hand-over is ``LINGER_S`` old."""
        now = time.monotonic()
        if now - self._lingered_since >= LINGER_S:
            self._lingered_since = now
            await self.submit(partial=True)

    def _reap(self) -> None:
        """Drop delivered batches; a failed delivery ends the replay."""
        still = []
        for future in self._pending:
            if not future.done():
                still.append(future)
            elif future.exception() is not None:
                exc = future.exception()
                raise KafkaUnreachable(f"Kafka at {self.bootstrap} failed a delivery: {exc}")
        self._pending = still

    def end_of_stream(self, max_event_time_ms: int) -> None:
        """One control record per partition, after its last event: event time has reached the end."""
        value, headers = encode_control(END_OF_STREAM, max_event_time_ms)
        for partition in self._partition_ids:
            self._append(partition, None, max_event_time_ms, value, headers)

    async def flush(self, timeout_s: float | None = None) -> None:
        """Submit everything and wait until the broker acknowledged it."""
        await self.submit(partial=True)
        if self._pending:
            done, _ = await asyncio.wait(self._pending, timeout=timeout_s)
            if len(done) < len(self._pending):
                raise KafkaUnreachable(f"Kafka at {self.bootstrap} did not acknowledge within {timeout_s}s")
        self._reap()

    async def close(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()
