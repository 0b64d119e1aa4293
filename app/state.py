"""The worker's Faust table: open windows and per-partition progress, on RocksDB, changelogged.

One table holds both kinds of key so that, per source partition, every write lands in the same
changelog partition in order: after a crash the changelog holds a prefix of the writes, so a
recovered progress record implies that every window write before it was recovered too.
Keys are strings built by :mod:`tables.partition_state` (``w|partition|size|start`` for a
window slot holding every region's aggregate, ``p|partition`` for progress).
"""

from __future__ import annotations

from typing import Any

import faust
from faust.types import FutureMessage
from faust.types.serializers import CodecArg

from app.main import app, settings
from app.provision import STATE_TABLE


class AckedTable(faust.Table):
    """A table whose changelog writes can be awaited.

    Faust queues a table write's changelog message in its producer buffer and never reports
    whether the broker took it; committing the source offsets before it did would let a
    failover onto another worker recover state older than those offsets. The agent collects
    the writes of a batch here and commits only once all are acknowledged.
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        self._unacked: list[FutureMessage] = []

    def send_changelog(
        self,
        partition: int | None,
        key: Any,
        value: Any,
        key_serializer: CodecArg | None = None,
        value_serializer: CodecArg | None = None,
    ) -> FutureMessage:
        sent = super().send_changelog(partition, key, value, key_serializer, value_serializer)
        self._unacked.append(sent)
        return sent

    def take_unacked(self) -> list[FutureMessage]:
        """The changelog writes since the last call (each resolves when the broker acked it)."""
        sent, self._unacked = self._unacked, []
        return sent


state_table = AckedTable(
    app,
    name=STATE_TABLE,
    default=None,
    beacon=app.tables.beacon,
    partitions=settings.partitions,
    key_type=str,
    value_type=None,
    help="open windows (w|partition|size|start) and progress (p|partition)",
)
app.tables.add(state_table)
