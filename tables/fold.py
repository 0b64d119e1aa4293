"""The batch fold: one partition's decoded records applied to its state, as a pure function.

The aggregate agent decodes a fetched batch, calls :func:`fold` per partition and turns the
:class:`Folded` it gets back into Kafka sends, table writes and metrics; everything that decides
*what* those are is here, so it is tested without a broker (``tests/unit/test_fold.py``: any
split of the input into batches and any crash-and-replay point give the same windows).

A record is already decoded (by ``app.inputs``) into a :class:`Trip`, a :class:`Tick` (a
control record moving event time) or a :class:`Rejected` one. Offsets at or before the
partition's stored progress were applied before a crash and are skipped; within a window, an
offset already folded into it is skipped too (``PartitionState.apply_event``), so a batch
replayed after a crash at any point is applied exactly once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tables.aggregate import TripAggregate
from tables.partition_state import (
    LateEvent,
    PartitionState,
    Slot,
    WindowKey,
    progress_table_key,
    slot_state,
    slot_table_key,
)


class Trip(Protocol):
    """What the fold reads of a trip event (the event model has more)."""

    @property
    def region_id(self) -> int: ...
    @property
    def event_time_ms(self) -> int: ...
    @property
    def fare(self) -> float: ...
    @property
    def duration(self) -> float: ...
    @property
    def distance(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Tick:
    """A control record: event time has passed ``time_ms`` (end of stream, or an idle partition)."""

    kind: str
    time_ms: int


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that is not a valid trip or control record; ``reason`` is a bounded code."""

    reason: str
    message: str


#: One decoded record of the partition: its offset, broker timestamp (seconds) and what it is.
#: A plain tuple, not a named one: one is built per event.
Record = tuple[int, float, "Trip | Tick | Rejected"]


@dataclass(slots=True)
class Tally:
    """Per-event figures of a batch, for the metrics (recorded once per batch, not per event):
    trips and revenue per region, fares and durations observed."""

    trips: dict[int, list[float]] = field(default_factory=dict)
    fares: list[float] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)

    def add(self, trip: Trip) -> None:
        tally = self.trips.get(trip.region_id)
        if tally is None:
            self.trips[trip.region_id] = [1.0, trip.fare]
        else:
            tally[0] += 1
            tally[1] += trip.fare
        self.fares.append(trip.fare)
        self.durations.append(trip.duration)


@dataclass(slots=True)
class Folded:
    """What folding a partition's records did, for the agent to send, store and count."""

    #: Windows the frontier closed, oldest first: to publish as final results.
    final: list[tuple[WindowKey, TripAggregate]] = field(default_factory=list)
    #: Trips (with their offset) that arrived after a window they belong to was final.
    late: list[tuple[int, Trip, LateEvent]] = field(default_factory=list)
    #: Records to dead-letter, by offset: rejected by decoding, or failing to apply.
    rejected: list[tuple[int, Rejected]] = field(default_factory=list)
    #: Control records applied, by kind.
    controls: Counter[str] = field(default_factory=Counter)
    #: Records skipped because their effects were stored before (a replay after a crash).
    duplicates: int = 0
    #: Trips folded into their windows.
    processed: int = 0
    #: Newest broker timestamp among the folded trips (0 when none): the freshness clock.
    newest_ts: float = 0.0
    tally: Tally = field(default_factory=Tally)


def fold(state: PartitionState, records: Iterable[Record]) -> Folded:
    """Apply ``records`` (in partition order) to ``state`` and take the windows they closed.

    Never raises on a record: one that fails to apply is reported in ``rejected`` (reason
    ``processing_error``) and the partition moves past it, as it does past a rejected one.
    """
    out = Folded()
    progress = state.progress
    apply_event, tally, late, rejected = state.apply_event, out.tally, out.late, out.rejected
    for offset, timestamp, value in records:
        if offset <= progress.offset:  # state.is_duplicate, inlined: this loop runs per event
            out.duplicates += 1
            continue
        if isinstance(value, Tick | Rejected):
            if isinstance(value, Tick):
                state.apply_control(value.time_ms)
                out.controls[value.kind] += 1
            else:
                rejected.append((offset, value))
        else:
            try:
                outcome = apply_event(
                    offset, value.region_id, value.event_time_ms, value.fare, value.duration, value.distance
                )
            except Exception as exc:  # a partition never stops on one record
                rejected.append((offset, Rejected("processing_error", repr(exc))))
            else:
                if outcome.late:
                    late.extend((offset, value, event) for event in outcome.late)
                tally.add(value)
                out.processed += 1
                if timestamp > out.newest_ts:
                    out.newest_ts = timestamp
        progress.offset = offset  # state.mark_applied: offsets only grow past the check above
    out.final = state.take_final()
    return out


@dataclass(slots=True)
class StorePlan:
    """The table writes that make a folded batch durable, in the order they must happen."""

    #: Tombstones to send to the changelog only (RocksDB already deleted these keys, but the
    #: changelog may not have acknowledged the deletes).
    changelog_tombstones: list[str]
    #: Slot values to write: every open window of each slot the batch changed.
    slots: list[tuple[str, Any]]
    #: The progress record, written after the slots: it vouches for them on recovery.
    progress: tuple[str, Any]
    #: Final slots to delete, last.
    deletes: list[str]


def plan_store(
    state: PartitionState, dirty_slots: set[Slot], final_slots: set[Slot], behind: set[Slot] | None
) -> StorePlan:
    """What to write for a batch that changed ``dirty_slots`` and finalized ``final_slots``;
    ``behind`` holds the slots whose tombstones the changelog did not acknowledge, or ``None``
    when the last store was acknowledged. A changelog that may be behind gets the partition's
    whole state again. Slots found stale on recovery are deleted too. Keeps ``state.persisted``
    (the slots the table holds) up to date."""
    partition = state.partition
    tombstones: list[str] = []
    if behind is not None:
        dirty_slots = dirty_slots | set(state.slots)
        tombstones = [slot_table_key(partition, slot) for slot in behind - set(state.slots)]
    slots = [(slot_table_key(partition, slot), slot_state(state.slot_windows(slot))) for slot in dirty_slots]
    state.persisted |= dirty_slots
    gone = final_slots | state.stale
    deletes = [slot_table_key(partition, slot) for slot in gone & state.persisted]
    state.persisted -= gone
    state.stale = set()
    return StorePlan(tombstones, slots, (progress_table_key(partition), state.progress.to_state()), deletes)
