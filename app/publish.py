"""Batch publishing: many keyed records to one topic as one Kafka batch per partition.

``Producer.send`` costs a metadata lookup, a partitioner call and a future per record, which
dominates a backfill worker that closes windows with most events (docs/benchmarks.md, "Hot-path
choices"). The records are
partitioned exactly as ``send`` would (the producer's own partitioner over all the topic's
partitions), appended to aiokafka ``BatchBuilder``s and handed to the producer's accumulator
with ``send_batch``: same compression, acks, retries and ordering per partition.

The producer inside Faust's and its partitioner are reached through :mod:`app.internals`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

from faust.types import AppT

from app.internals import partition_for, topic_producer


async def publish(
    app: AppT, topic: str, records: Iterable[tuple[bytes, bytes]], headers: Sequence[tuple[str, bytes]] = ()
) -> list[asyncio.Future[Any]]:
    """Queue ``(key, value)`` records for ``topic``; the futures resolve when the broker acked."""
    producer, partitions = await topic_producer(app, topic)
    partition_of: dict[bytes, int] = {}
    builders: dict[int, Any] = {}
    sent: list[asyncio.Future[Any]] = []
    header_list = list(headers)
    for key, value in records:
        partition = partition_of.get(key)
        if partition is None:
            partition = partition_of[key] = partition_for(producer, key, partitions)
        builder = builders.get(partition)
        if builder is None:
            builder = builders[partition] = producer.create_batch()
        if builder.append(timestamp=None, key=key, value=value, headers=header_list) is None:
            sent.append(await producer.send_batch(builder, topic, partition=partition))
            builder = builders[partition] = producer.create_batch()
            builder.append(timestamp=None, key=key, value=value, headers=header_list)
    for partition, builder in builders.items():
        sent.append(await producer.send_batch(builder, topic, partition=partition))
    return sent
