"""Records into one aiokafka ``BatchBuilder`` per partition: the one batch builder of the worker's
results publisher, the replayer and the benchmark's loader.

Per-record ``send()`` costs a coroutine, a future and a metadata lookup per record; appending to
a builder and handing it over whole with ``send_batch`` keeps the producer's compression, acks,
retries and per-partition ordering at a fraction of that (docs/benchmarks.md, "Hot-path
choices"). Keys are partitioned as every Kafka client does (murmur2), so a region's records land
where a plain ``send`` would put them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiokafka.partitioner import DefaultPartitioner

_partitioner = DefaultPartitioner()


def partition_for(key: bytes, partitions: Sequence[int]) -> int:
    """The partition a keyed ``send`` would pick among ``partitions`` (all of the topic's)."""
    return int(_partitioner(key, list(partitions), list(partitions)))


class PartitionBatches:
    """Builders filling per partition; a full one waits in :meth:`take` until handed over."""

    def __init__(self, producer: Any) -> None:
        self._producer = producer
        self._builders: dict[int, Any] = {}
        self._full: list[tuple[int, Any]] = []

    def append(
        self, partition: int, key: bytes | None, value: bytes, timestamp_ms: int | None, headers: list[Any]
    ) -> None:
        builder = self._builders.get(partition)
        if builder is None:
            builder = self._builders[partition] = self._producer.create_batch()
        if builder.append(timestamp=timestamp_ms, key=key, value=value, headers=headers) is None:
            self._full.append((partition, builder))
            builder = self._builders[partition] = self._producer.create_batch()
            builder.append(timestamp=timestamp_ms, key=key, value=value, headers=headers)

    @property
    def has_full(self) -> bool:
        return bool(self._full)

    def take(self, *, partial: bool = False) -> list[tuple[int, Any]]:
        """The full builders; with ``partial`` also those still filling (nothing waits to fill)."""
        if partial:
            self._full.extend((p, b) for p, b in self._builders.items() if b.record_count())
            self._builders.clear()
        full, self._full = self._full, []
        return full
