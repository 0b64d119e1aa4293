"""Reading a topic back to its end, as the tests and the benchmark check what a run left there.

Records come back partition by partition in offset order: the order the worker folded them in,
which the reference must follow to see the same watermarks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from app.kafka_client import client_kwargs
from app.settings import Settings

Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class Record:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = ()
    timestamp_ms: int = 0


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[int]:
    """The topic's partitions; a topic created a moment ago may need a metadata refresh or two."""
    parts = consumer.partitions_for_topic(topic) or set()
    for _ in range(50):
        if parts:
            break
        await consumer._client.force_metadata_update()
        parts = consumer.partitions_for_topic(topic) or set()
    return sorted(parts)


async def topic_chunks(
    bootstrap: str,
    topic: str,
    partitions: int | None = None,
    *,
    settings: Settings | None = None,
    timeout: float = 600,
) -> AsyncIterator[list[Record]]:
    """Every record in ``topic`` up to its end when the read starts, in chunks, partition by
    partition in offset order: streamed, so a million records need not fit in memory at once.

    ``partitions``: how many the topic has (default: as its metadata says). ``settings`` carry
    the security options of a SASL/TLS broker (default: the environment's
    with this bootstrap). ``AssertionError`` when the end is not reached within ``timeout`` s."""
    kafka = client_kwargs(settings or Settings(kafka_bootstrap=bootstrap))
    consumer = AIOKafkaConsumer(**kafka, enable_auto_commit=False, max_poll_records=5000)
    await consumer.start()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        ids = list(range(partitions)) if partitions is not None else await _partitions(consumer, topic)
        for partition in ids:
            tp = TopicPartition(topic, partition)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await consumer.end_offsets([tp]))[tp]
            while await consumer.position(tp) < end:
                if loop.time() > deadline:
                    raise AssertionError(f"could not read {topic} to its end within {timeout}s")
                batch = await consumer.getmany(tp, timeout_ms=500)
                yield [
                    Record(partition, m.offset, m.key, m.value, tuple(m.headers or ()), m.timestamp)
                    for m in batch.get(tp, [])
                ]
    finally:
        await consumer.stop()


def read_topic(
    bootstrap: str, topic: str, timeout: float = 30, settings: Settings | None = None
) -> list[Record]:
    """:func:`topic_chunks` as one list, for code outside an event loop."""

    async def _read() -> list[Record]:
        return [
            rec
            async for chunk in topic_chunks(bootstrap, topic, settings=settings, timeout=timeout)
            for rec in chunk
        ]

    return asyncio.run(_read())
