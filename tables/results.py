"""The window result record: what the results topic carries, Redis stores and the API serves."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

import orjson

from tables.aggregate import TripAggregate
from tables.partition_state import WindowKey
from tables.times import format_time_ms


def window_record(
    region_id: int, size_name: str, size_ms: int, start_ms: int, agg: TripAggregate, *, final: bool
) -> dict[str, Any]:
    """Deterministic for a given input: re-emitting a window produces byte-identical JSON."""
    return {
        "region_id": region_id,
        "window": size_name,
        "window_start": format_time_ms(start_ms),
        "window_end": format_time_ms(start_ms + size_ms),
        "window_start_ms": start_ms,
        "window_end_ms": start_ms + size_ms,
        "final": final,
        **agg.metrics(),
    }


def is_window_record(record: object, sizes: Collection[str]) -> bool:
    """Whether a decoded results-topic record can be stored: its key fields (size name, region,
    start) are there and typed as :func:`window_record` writes them."""
    if not isinstance(record, dict):
        return False
    size = record.get("window")
    if not isinstance(size, str) or size not in sizes:
        return False
    return all(type(record.get(field)) is int for field in ("region_id", "window_start_ms"))


def final_records(
    final: Iterable[tuple[WindowKey, TripAggregate]], size_names: Mapping[int, str]
) -> tuple[list[tuple[bytes, bytes]], list[WindowKey]]:
    """Results-topic ``(key, value)`` records of final windows, keyed by region; also the windows
    whose record could not be built (finalizing never stops a partition: the agent logs them)."""
    records: list[tuple[bytes, bytes]] = []
    failed: list[WindowKey] = []
    for key, agg in final:
        size_ms, region, start = key
        try:
            record = window_record(region, size_names[size_ms], size_ms, start, agg, final=True)
            records.append((str(region).encode(), orjson.dumps(record)))
        except Exception:
            failed.append(key)
    return records, failed
