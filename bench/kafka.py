"""The Kafka side of the harness: topics of one run and a batched producer (reading a topic back
is :mod:`support.kafka`, shared with the tests).

Records go out through the product's batch builder (:mod:`app.kafka_batches`): per-record
``send()`` costs a coroutine and a future per event, and the loader must not be what the numbers
measure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from app.control import END_OF_STREAM, encode_control
from app.kafka_batches import PartitionBatches, partition_for
from app.kafka_client import client_kwargs
from app.settings import EVENTS_TOPIC_CONFIG, Settings

BATCH_BYTES = 512 * 1024
CONTROL_KEY = END_OF_STREAM.encode()


def _client(bootstrap: str) -> dict[str, Any]:
    """The environment's Kafka security options with the run's bootstrap, so a benchmark reaches a
    SASL/TLS cluster the same way the worker does."""
    return client_kwargs(Settings(kafka_bootstrap=bootstrap))


async def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    """An events topic as the worker and the replayer declare it (size-bounded retention only:
    record timestamps are event times, 30 days old in the backfill)."""
    admin = AIOKafkaAdminClient(**_client(bootstrap))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=EVENTS_TOPIC_CONFIG)])
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, run_id: str) -> list[str]:
    """Delete every topic named after the run (Quix names its changelogs ``changelog__<group>...``)."""
    admin = AIOKafkaAdminClient(**_client(bootstrap))
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if run_id in t]
        if names:
            await admin.delete_topics(names)
        return names
    finally:
        await admin.close()


async def uncommitted(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    """Records of ``topic`` past the group's committed offsets: 0 once every record is stored.

    Stronger than the workers' processed counters: a record is committed only after its
    batch's results were acknowledged and its state written, on whichever worker owns it now."""
    admin = AIOKafkaAdminClient(**_client(bootstrap))
    consumer = AIOKafkaConsumer(**_client(bootstrap), enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        committed = await admin.list_consumer_group_offsets(group, partitions=tps)
        ends = await consumer.end_offsets(tps)
        return sum(end - max(committed[tp].offset, 0) if tp in committed else end for tp, end in ends.items())
    finally:
        await consumer.stop()
        await admin.close()


class BatchProducer:
    """Keyed records into per-partition batches, partitioned as every Kafka client does (murmur2)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self._producer = AIOKafkaProducer(
            **_client(bootstrap), acks="all", linger_ms=5, max_batch_size=BATCH_BYTES
        )
        self._partitions: list[int] = []
        self._route: dict[bytes, int] = {}
        self._batches = PartitionBatches(self._producer)
        self._pending: list[asyncio.Future[Any]] = []

    async def start(self) -> None:
        await self._producer.start()
        self._partitions = sorted(await self._producer.partitions_for(self.topic))

    @property
    def partitions(self) -> list[int]:
        return self._partitions

    def partition_of(self, key: bytes) -> int:
        partition = self._route.get(key)
        if partition is None:
            partition = partition_for(key, self._partitions)
            self._route[key] = partition
        return partition

    async def add(
        self, key: bytes | None, value: bytes, ts_ms: int, partition: int, headers: Iterable[Any] = ()
    ) -> None:
        self._batches.append(partition, key, value, ts_ms, list(headers))
        if self._batches.has_full:
            for full_partition, builder in self._batches.take():
                await self._submit(full_partition, builder)

    async def _submit(self, partition: int, builder: Any) -> None:
        self._pending.append(await self._producer.send_batch(builder, self.topic, partition=partition))
        if len(self._pending) > 64:
            await asyncio.gather(*self._pending)
            self._pending.clear()

    async def end_of_stream(self, max_event_ms: int) -> None:
        """The replayer's end-of-stream control record on every partition: it closes the last windows.

        Unlike the replayer's, it has a key (:data:`CONTROL_KEY`; the contract fixes none): Quix
        Streams skips keyless records in windowed steps, so a keyless marker could not close its
        windows."""
        value, headers = encode_control(END_OF_STREAM, max_event_ms)
        for partition in self._partitions:
            await self.add(CONTROL_KEY, value, max_event_ms, partition, headers)

    async def flush(self, *, wait: bool = True) -> None:
        """Send the batches still filling; with ``wait``, until the broker acknowledged all."""
        for partition, builder in self._batches.take(partial=True):
            await self._submit(partition, builder)
        if wait:
            await asyncio.gather(*self._pending)
            self._pending.clear()

    async def stop(self) -> None:
        await self._producer.stop()
