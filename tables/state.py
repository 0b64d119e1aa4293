"""The worker's Faust table: open windows and per-partition progress, on RocksDB, changelogged.

One table holds both kinds of key so that, per source partition, every write lands in the same
changelog partition in order: after a crash the changelog holds a prefix of the writes, so a
recovered progress record implies that every window write before it was recovered too.
Keys are strings built by :mod:`tables.partition_state` and include the source partition.
"""

from __future__ import annotations

from app.main import app, settings

state_table = app.Table(
    "window-state",
    default=None,
    partitions=settings.partitions,
    key_type=str,
    value_type=None,
    help="open windows (w|partition|size|region|start) and progress (p|partition)",
)
