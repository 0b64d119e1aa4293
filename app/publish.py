"""Batch publishing: many keyed records to one topic as one Kafka batch per partition.

``Producer.send`` costs a metadata lookup, a partitioner call and a future per record, which
dominates a backfill worker that closes windows with most events (docs/benchmarks.md, "Hot-path
choices"). The records are
partitioned exactly as ``send`` would (the producer's own partitioner over all the topic's
partitions), appended to aiokafka ``BatchBuilder``s and handed to the producer's accumulator
with ``send_batch``: same compression, acks, retries and ordering per partition.

The producer inside Faust's is reached through :mod:`app.internals`; the batches are
:mod:`app.kafka_batches`' (partitioned like Faust's default partitioner, aiokafka's murmur2).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

from faust.types import AppT

from app.internals import topic_producer
from app.kafka_batches import PartitionBatches, partition_for


async def publish(
    app: AppT, topic: str, records: Iterable[tuple[bytes, bytes]], headers: Sequence[tuple[str, bytes]] = ()
) -> list[asyncio.Future[Any]]:
    """Queue ``(key, value)`` records for ``topic``; the futures resolve when the broker acked."""
    producer, partitions = await topic_producer(app, topic)
    batches = PartitionBatches(producer)
    partition_of: dict[bytes, int] = {}
    header_list = list(headers)
    for key, value in records:
        partition = partition_of.get(key)
        if partition is None:
            partition = partition_of[key] = partition_for(key, partitions)
        batches.append(partition, key, value, None, header_list)
    return [await producer.send_batch(b, topic, partition=p) for p, b in batches.take(partial=True)]
