"""Event-time state of one input partition: watermark, finality frontier and open windows.

Pure logic (no Kafka, no Redis) so that the contract's semantics are unit-tested directly:

- lateness is decided per event, in partition order, against the frontier left by the records
  before it — never by where a batch ends — so the same input always yields the same windows;
- the watermark is the highest event time seen minus the allowed lateness; a window of size
  ``s`` is final once the frontier of ``s`` reaches its end, where the frontier is the highest of
  the watermark and what control records (end-of-stream, idle) closed for that size;
- ``offset`` is the last source offset whose effects are fully stored; each window also keeps the
  last offset folded into it, so a batch replayed after a crash is applied exactly once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tables.aggregate import TripAggregate
from tables.sketch import sketch_key
from tables.windows import WindowSize

#: (window size in ms, region id, window start in ms)
WindowKey = tuple[int, int, int]
#: (window size in ms, window start in ms): all regions of one window in one partition.
Slot = tuple[int, int]


def slot_table_key(partition: int, slot: Slot) -> str:
    """One table key per window per partition, holding every region's aggregate of it.

    Regions are many (265 TLC zones) and a batch touches most of them once, so a key per region
    would cost one changelog message per event and window; a key per slot costs one per batch.
    """
    size_ms, start = slot
    return f"w|{partition}|{size_ms}|{start}"


def progress_table_key(partition: int) -> str:
    return f"p|{partition}"


def parse_slot_table_key(text: str) -> tuple[int, Slot] | None:
    """Inverse of :func:`slot_table_key`; ``None`` for other keys."""
    parts = text.split("|")
    if len(parts) != 4 or parts[0] != "w":
        return None
    return int(parts[1]), (int(parts[2]), int(parts[3]))


def slot_state(windows: dict[int, TripAggregate]) -> list[list[Any]]:
    """Table value of a slot: ``[[region, aggregate state], ...]``."""
    return [[region, agg.to_state()] for region, agg in windows.items()]


def windows_from_slot_state(slot: Slot, state: list[list[Any]]) -> dict[WindowKey, TripAggregate]:
    size_ms, start = slot
    return {(size_ms, int(region), start): TripAggregate.from_state(agg) for region, agg in state}


@dataclass(slots=True)
class Progress:
    """What a partition's records so far have done to event time."""

    max_event_ms: int | None = None
    frontier: dict[int, int] = field(default_factory=dict)
    offset: int = -1

    def to_state(self) -> dict[str, Any]:
        return {
            "max": self.max_event_ms,
            "f": {str(k): v for k, v in self.frontier.items()},
            "o": self.offset,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> Progress:
        if not state:
            return cls()
        return cls(state["max"], {int(k): int(v) for k, v in state["f"].items()}, int(state["o"]))


@dataclass(frozen=True, slots=True)
class LateEvent:
    offset: int
    size: WindowSize
    window_start_ms: int
    frontier_ms: int


@dataclass(slots=True)
class Outcome:
    """What applying one record did; the caller turns it into table writes and messages."""

    late: list[LateEvent] = field(default_factory=list)
    folded: bool = False


class PartitionState:
    """Open windows and progress of one input partition."""

    __slots__ = (
        "partition",
        "sizes",
        "lateness_ms",
        "progress",
        "windows",
        "dirty",
        "slots",
        "persisted",
        "stale",
    )

    def __init__(
        self,
        partition: int,
        sizes: list[WindowSize],
        lateness_ms: int,
        progress: Progress | None = None,
        windows: dict[WindowKey, TripAggregate] | None = None,
    ) -> None:
        self.partition = partition
        self.sizes = sizes
        self.lateness_ms = lateness_ms
        self.progress = progress or Progress()
        for size in sizes:
            self.progress.frontier.setdefault(size.size_ms, -(2**62))
        self.windows: dict[WindowKey, TripAggregate] = windows or {}
        self.dirty: set[WindowKey] = set()
        self.slots: dict[Slot, dict[int, TripAggregate]] = {}
        for (size_ms, region, start), agg in self.windows.items():
            self.slots.setdefault((size_ms, start), {})[region] = agg
        #: Slots that have a value in the table (the caller keeps this up to date): only these
        #: need a tombstone when they become final.
        self.persisted: set[Slot] = set(self.slots)
        #: Slots found in the table that the stored progress had already closed (see
        #: :func:`state_from_items`): to be deleted with the next store.
        self.stale: set[Slot] = set()

    @property
    def watermark_ms(self) -> int | None:
        if self.progress.max_event_ms is None:
            return None
        return self.progress.max_event_ms - self.lateness_ms

    def is_duplicate(self, offset: int) -> bool:
        return offset <= self.progress.offset

    def apply_event(
        self, offset: int, region_id: int, t_ms: int, fare: float, duration: float, distance: float
    ) -> Outcome:
        out = Outcome()
        frontier = self.progress.frontier
        dkey = sketch_key(duration)
        for size in self.sizes:
            start = t_ms - (t_ms % size.size_ms)
            if start + size.size_ms <= frontier[size.size_ms]:
                out.late.append(LateEvent(offset, size, start, frontier[size.size_ms]))
                continue
            key = (size.size_ms, region_id, start)
            agg = self.windows.get(key)
            if agg is None:
                agg = self.windows[key] = TripAggregate()
                self.slots.setdefault((size.size_ms, start), {})[region_id] = agg
            elif agg.last_offset >= offset:
                continue  # folded in before a crash; the partial batch is being replayed
            agg.add(fare, duration, distance, t_ms, dkey)
            agg.last_offset = offset
            self.dirty.add(key)
            out.folded = True
        if self.progress.max_event_ms is None or t_ms > self.progress.max_event_ms:
            self.progress.max_event_ms = t_ms
            watermark = t_ms - self.lateness_ms
            for size in self.sizes:
                if watermark > frontier[size.size_ms]:
                    frontier[size.size_ms] = watermark
        return out

    def apply_control(self, t_ms: int) -> None:
        """Event time has passed ``t_ms``: close every window holding a time at or before it."""
        if self.progress.max_event_ms is None or t_ms > self.progress.max_event_ms:
            self.progress.max_event_ms = t_ms
        frontier = self.progress.frontier
        for size in self.sizes:
            end = size.end(t_ms)
            if end > frontier[size.size_ms]:
                frontier[size.size_ms] = end

    def mark_applied(self, offset: int) -> None:
        if offset > self.progress.offset:
            self.progress.offset = offset

    def take_final(self) -> list[tuple[WindowKey, TripAggregate]]:
        """Remove and return the windows the frontier has closed, oldest first."""
        frontier = self.progress.frontier
        final = [(k, agg) for k, agg in self.windows.items() if k[2] + k[0] <= frontier[k[0]]]
        final.sort(key=lambda item: (item[0][2] + item[0][0], item[0][0], item[0][1]))
        for key, _ in final:
            del self.windows[key]
            self.dirty.discard(key)
            self.slots.pop((key[0], key[2]), None)
        return final

    def slot_windows(self, slot: Slot) -> dict[int, TripAggregate]:
        """Every open region of one window (what the slot's table value must hold)."""
        return self.slots.get(slot, {})

    def take_dirty(self) -> list[tuple[WindowKey, TripAggregate]]:
        """Open windows changed since the last call (each written to the table once per batch)."""
        out = [(k, self.windows[k]) for k in self.dirty if k in self.windows]
        self.dirty.clear()
        return out


def state_from_items(
    partition: int, items: Iterable[tuple[Any, Any]], sizes: list[WindowSize], lateness_ms: int
) -> tuple[PartitionState, list[str]]:
    """Rebuild a partition's state from its stored ``(key, value)`` pairs; also returns the keys
    of slots that could not be decoded (forged, or corrupted: no version of the worker wrote
    them), whose partial windows are lost, loudly, rather than every batch of the partition
    failing on them. Other partitions' keys and window sizes no longer configured are ignored.

    A stored window that the stored progress has already closed was published before that
    progress was written (a batch stores progress only once its results are acknowledged): the
    crash came between the progress and the window's tombstone, so the slot may hold the window
    as it was before its last batch. It is dropped, never published again, and its slot is
    deleted with the next store (``stale``)."""
    known = {size.size_ms for size in sizes}
    windows: dict[WindowKey, TripAggregate] = {}
    progress_state = None
    progress_key = progress_table_key(partition)
    unreadable: list[str] = []
    for key, value in items:
        if value is None:
            continue
        if key == progress_key:
            progress_state = value
            continue
        parsed = parse_slot_table_key(key)
        if parsed is not None and parsed[0] == partition and parsed[1][0] in known:
            try:
                windows.update(windows_from_slot_state(parsed[1], value))
            except (ValueError, TypeError, KeyError, IndexError):
                unreadable.append(key)
    state = PartitionState(partition, sizes, lateness_ms, Progress.from_state(progress_state), windows)
    state.stale = {(key[0], key[2]) for key, _ in state.take_final()}
    return state, unreadable
