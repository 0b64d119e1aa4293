"""The batch fold (tables/fold.py) and its store plan, called directly: what a batch does to a
partition's windows, and that any split of the input into batches and any crash-and-replay
point give the same windows as one pass, against a plain reading of the contract."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tables.aggregate import TripAggregate
from tables.fold import Record as FoldRecord
from tables.fold import Rejected, Tick, fold, plan_store
from tables.partition_state import PartitionState, WindowKey, state_from_items
from tables.results import window_record
from tables.windows import WindowSize, parse_windows


@dataclass(frozen=True)
class TripData:
    """A trip as the fold reads it (the event model satisfies the same protocol)."""

    region_id: int
    event_time_ms: int
    fare: float
    duration: float
    distance: float


S = 1_000
M = 60 * S
T0 = 1_709_294_400_000  # 2024-03-01T12:00:00Z
H = 60 * M
SIZES = parse_windows("1m,1h")


def trip(offset: int, t_ms: int, region: int = 7, fare: float = 10.0) -> FoldRecord:
    return (offset, t_ms / 1000, TripData(region, t_ms, fare, 60.0, 1.0))


def test_a_batch_folds_trips_applies_controls_and_reports_what_to_send() -> None:
    state = PartitionState(0, SIZES, 30 * S)
    folded = fold(
        state,
        [
            trip(0, T0 + 10 * S),
            (1, 0.0, Rejected("invalid_json", "not JSON")),
            trip(2, T0 + 20 * S, fare=5.0),
            (3, 0.0, Tick("end-of-stream", T0 + 30 * S)),
            trip(4, T0 + 40 * S),
        ],
    )
    assert folded.processed == 3
    assert folded.rejected == [(1, Rejected("invalid_json", "not JSON"))]
    assert folded.controls == {"end-of-stream": 1}
    assert [key for key, _ in folded.final] == [(M, 7, T0), (H, 7, T0)]
    assert [agg.count for _, agg in folded.final] == [2, 2]
    assert [(offset, late.size.name) for offset, _, late in folded.late] == [(4, "1m"), (4, "1h")]
    assert folded.newest_ts == (T0 + 40 * S) / 1000
    assert folded.tally.trips == {7: [3.0, 25.0]}
    assert state.progress.offset == 4


def test_records_at_or_before_the_stored_progress_are_skipped() -> None:
    state = PartitionState(0, SIZES, 30 * S)
    fold(state, [trip(0, T0), trip(1, T0 + S)])
    again = fold(state, [trip(0, T0), trip(1, T0 + S), trip(2, T0 + 2 * S)])
    assert again.duplicates == 2 and again.processed == 1
    assert state.windows[(M, 7, T0)].count == 3


class _Broken:
    region_id = 7
    event_time_ms = T0
    duration = 60.0
    distance = 1.0

    @property
    def fare(self) -> float:
        raise ArithmeticError("a fare that cannot be read")


def test_a_record_that_fails_to_apply_is_rejected_and_the_partition_moves_on() -> None:
    state = PartitionState(0, SIZES, 30 * S)
    folded = fold(state, [(0, 0.0, _Broken()), trip(1, T0)])
    assert [(offset, r.reason) for offset, r in folded.rejected] == [(0, "processing_error")]
    assert "a fare that cannot be read" in folded.rejected[0][1].message
    assert folded.processed == 1 and state.progress.offset == 1


def test_a_changelog_behind_gets_the_whole_state_and_its_lost_tombstones_again() -> None:
    state = PartitionState(0, SIZES, 30 * S)
    fold(state, [trip(0, T0), trip(1, T0 + 2 * M)])
    state.take_dirty()
    plan = plan_store(state, set(), set(), behind={(M, T0 - M)})
    assert sorted(key for key, _ in plan.slots) == sorted(f"w|0|{k[0]}|{k[2]}" for k in state.windows)
    assert plan.changelog_tombstones == [f"w|0|{M}|{T0 - M}"]
    assert plan.progress == ("p|0", state.progress.to_state())


def test_slots_found_stale_on_recovery_are_deleted_with_the_next_store() -> None:
    state = PartitionState(0, parse_windows("1m"), 0)
    state.persisted.add((M, T0 - M))
    state.stale = {(M, T0 - M)}
    fold(state, [trip(0, T0)])
    plan = plan_store(state, {(M, T0)}, set(), None)
    assert plan.deletes == [f"w|0|{M}|{T0 - M}"]
    assert state.stale == set() and state.persisted == {(M, T0)}


def test_only_slots_the_table_holds_get_a_tombstone() -> None:
    state = PartitionState(0, parse_windows("1m"), 0)
    fold(state, [trip(0, T0)])
    stored = plan_store(state, {(M, T0)}, set(), None)
    assert [key for key, _ in stored.slots] == [f"w|0|{M}|{T0}"]
    folded = fold(state, [trip(1, T0 + M), trip(2, T0 + 3 * M)])
    # T0's slot was stored: deleted; T0+1m's opened and closed within the batch: never written.
    dirty = {(k[0], k[2]) for k, _ in state.take_dirty()}
    plan = plan_store(state, dirty, {(k[0], k[2]) for k, _ in folded.final}, None)
    assert plan.deletes == [f"w|0|{M}|{T0}"]


SMALL = [WindowSize(10, "10ms"), WindowSize(30, "30ms"), WindowSize(60, "60ms")]
SMALL_LATENESS = 5
PARTITION = 3


@dataclass(frozen=True)
class Event:
    offset: int
    region: int
    t_ms: int
    fare: float
    duration: float


@dataclass(frozen=True)
class Control:
    offset: int
    t_ms: int


Record = Event | Control

raw_records = st.lists(
    st.one_of(
        st.tuples(
            st.integers(0, 2),
            st.integers(-40, 400),
            st.sampled_from([0.0, 2.5, 7.0, 12.25, 1e-3]),
            st.sampled_from([0.0, 1.0, 60.0, 600.0]),
        ),
        st.tuples(st.integers(-40, 400)),
    ),
    max_size=45,
)


def to_records(raw: list[tuple[Any, ...]]) -> list[Record]:
    return [Event(i, *r) if len(r) == 4 else Control(i, r[0]) for i, r in enumerate(raw)]


Op = tuple[str, Any, Any]


def as_input(rec: Record) -> FoldRecord:
    if isinstance(rec, Control):
        return (rec.offset, 0.0, Tick("end-of-stream", rec.t_ms))
    return (rec.offset, 0.0, TripData(rec.region, rec.t_ms, rec.fare, rec.duration, 0.5))


def process_batch(state: PartitionState, batch: list[Record], log: list[Op]) -> None:
    """One batch of one partition through the real fold and store plan, logging the durable
    effects in the agent's order: late events and final windows published, then the table
    writes (slots, progress, tombstones)."""
    folded = fold(state, [as_input(rec) for rec in batch])
    for offset, _, late in folded.late:
        log.append(("late", (offset, late.size.size_ms, late.window_start_ms), None))
    for window, agg in folded.final:
        log.append(("emit", window, json(agg.to_state())))
    dirty = {(k[0], k[2]) for k, _ in state.take_dirty()}
    plan = plan_store(state, dirty, {(k[0], k[2]) for k, _ in folded.final}, None)
    for table_key, value in plan.slots:
        log.append(("put", table_key, json(value)))
    log.append(("put", plan.progress[0], json(plan.progress[1])))
    for table_key in plan.deletes:
        log.append(("del", table_key, None))


def json(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value))


def restore(table: dict[str, Any]) -> PartitionState:
    """Rebuild a partition from its table, as the agent does after a restart."""
    state, unreadable = state_from_items(PARTITION, table.items(), SMALL, SMALL_LATENESS)
    assert unreadable == []
    return state


def table_of(log: list[Op]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for op, key, value in log:
        if op == "put":
            table[key] = value
        elif op == "del":
            table.pop(key, None)
    return table


def split(records: list[Record], cuts: list[int]) -> list[list[Record]]:
    bounds = sorted({c % (len(records) + 1) for c in cuts} | {0, len(records)})
    return [records[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


def one_pass(records: list[Record]) -> tuple[list[Op], PartitionState]:
    state = PartitionState(PARTITION, SMALL, SMALL_LATENESS)
    log: list[Op] = []
    if records:
        process_batch(state, records, log)
    return log, state


def emitted(log: list[Op]) -> list[tuple[WindowKey, Any]]:
    return [(key, value) for op, key, value in log if op == "emit"]


def lates(log: list[Op]) -> list[tuple[int, int, int]]:
    return [key for op, key, _ in log if op == "late"]


def open_windows(state: PartitionState) -> dict[WindowKey, Any]:
    return {k: agg.to_state() for k, agg in state.windows.items()}


def reference(
    records: list[Record],
) -> tuple[dict[WindowKey, list[Event]], dict[WindowKey, list[Event]], list[Any]]:
    """The contract read literally: (final windows, open windows, late (offset, size, start))."""
    max_t: int | None = None
    closed_by_control = {s.size_ms: -math.inf for s in SMALL}
    windows: dict[WindowKey, list[Event]] = {}
    late: list[tuple[int, int, int]] = []

    def frontier(size_ms: int) -> float:
        watermark = -math.inf if max_t is None else max_t - SMALL_LATENESS
        return max(watermark, closed_by_control[size_ms])

    for rec in records:
        if isinstance(rec, Event):
            for s in SMALL:
                start = math.floor(rec.t_ms / s.size_ms) * s.size_ms
                if start + s.size_ms <= frontier(s.size_ms):
                    late.append((rec.offset, s.size_ms, start))
                else:
                    windows.setdefault((s.size_ms, rec.region, start), []).append(rec)
        else:
            for s in SMALL:
                end = math.floor(rec.t_ms / s.size_ms) * s.size_ms + s.size_ms
                closed_by_control[s.size_ms] = max(closed_by_control[s.size_ms], end)
        max_t = rec.t_ms if max_t is None else max(max_t, rec.t_ms)
    final = {k: v for k, v in windows.items() if k[2] + k[0] <= frontier(k[0])}
    still_open = {k: v for k, v in windows.items() if k not in final}
    return final, still_open, late


def assert_matches_events(state: Any, events: list[Event]) -> None:
    agg = TripAggregate.from_state(state)
    assert agg.count == len(events)
    assert agg.fare_sum == pytest.approx(math.fsum(e.fare for e in events), abs=1e-9)
    assert agg.fare_min == min(e.fare for e in events)
    assert agg.fare_max == max(e.fare for e in events)
    assert agg.first_ms == min(e.t_ms for e in events)
    assert agg.last_ms == max(e.t_ms for e in events)
    assert agg.zero_durations == sum(1 for e in events if e.duration == 0)
    assert agg.last_offset == max(e.offset for e in events)


@settings(max_examples=150, deadline=None)
@given(raw_records, st.lists(st.integers(0, 50), max_size=8))
def test_matches_a_plain_reading_of_the_contract(raw: list[tuple[Any, ...]], cuts: list[int]) -> None:
    records = to_records(raw)
    state = PartitionState(PARTITION, SMALL, SMALL_LATENESS)
    log: list[Op] = []
    for batch in split(records, cuts):
        process_batch(state, batch, log)
    final, still_open, late = reference(records)

    assert lates(log) == late
    got = dict(emitted(log))
    assert len(got) == len(emitted(log))  # each final window once
    assert set(got) == set(final)
    for key, value in got.items():
        assert_matches_events(value, final[key])
    assert set(state.windows) == set(still_open)
    for key, agg in state.windows.items():
        assert_matches_events(agg.to_state(), still_open[key])


@settings(max_examples=120, deadline=None)
@given(raw_records, st.lists(st.integers(0, 50), max_size=10))
def test_batching_does_not_change_anything(raw: list[tuple[Any, ...]], cuts: list[int]) -> None:
    records = to_records(raw)
    single_log, single = one_pass(records)
    state = PartitionState(PARTITION, SMALL, SMALL_LATENESS)
    log: list[Op] = []
    for batch in split(records, cuts):
        process_batch(state, batch, log)
    # The same final windows, each published once with the same value; the same late events in the
    # same order; the same open windows and progress. (The order of publication may differ: a batch
    # publishes what its end closed, oldest first, and control records close sizes unevenly.)
    assert len(emitted(log)) == len(dict(emitted(log)))
    assert dict(emitted(log)) == dict(emitted(single_log))
    assert lates(log) == lates(single_log)
    assert open_windows(state) == open_windows(single)
    assert state.progress == single.progress


@settings(max_examples=150, deadline=None)
@given(raw_records, st.data())
def test_crash_and_replay_give_the_same_result_as_one_pass(
    raw: list[tuple[Any, ...]], data: st.DataObject
) -> None:
    """Crash anywhere in the durable effects, restore from what survived, replay from an earlier offset.

    The log holds table writes (slots, progress, tombstones) and outputs (late events, final
    windows) in the order the agent makes them durable; a crash keeps a prefix of what the current
    run added. Restart offsets are at or before the stored progress (a committed offset never runs
    ahead of the changelog). Outputs are at-least-once; a repeated final window must be identical.
    """
    records = to_records(raw)
    single_log, single = one_pass(records)

    log: list[Op] = []
    state = PartitionState(PARTITION, SMALL, SMALL_LATENESS)
    position = 0
    for _ in range(data.draw(st.integers(0, 3), label="crashes")):
        run_start = len(log)
        cuts = data.draw(st.lists(st.integers(0, 50), max_size=6), label="batches")
        for batch in split(records[position:], cuts):
            process_batch(state, batch, log)
        del log[data.draw(st.integers(run_start, len(log)), label="crash at") :]
        state = restore(table_of(log))
        position = data.draw(st.integers(0, state.progress.offset + 1), label="restart offset")
    cuts = data.draw(st.lists(st.integers(0, 50), max_size=6), label="final batches")
    for batch in split(records[position:], cuts) or [[]]:
        # No record left to replay: the restored state's store still runs (stale slots go).
        process_batch(state, batch, log)

    expected = dict(emitted(single_log))
    for key, value in emitted(log):
        assert value == expected[key], key  # a re-emitted window is identical, never different
    assert {key for key, _ in emitted(log)} == set(expected)
    assert set(lates(log)) == set(lates(single_log))
    assert open_windows(state) == open_windows(single)
    assert state.progress == single.progress
    for key, value in expected.items():  # and what the sink would write is byte-identical
        first = window_record(PARTITION, "w", key[0], key[2], TripAggregate.from_state(value), final=True)
        again = [
            window_record(PARTITION, "w", key[0], key[2], TripAggregate.from_state(v), final=True)
            for k, v in emitted(log)
            if k == key
        ]
        assert all(orjson.dumps(r) == orjson.dumps(first) for r in again)
