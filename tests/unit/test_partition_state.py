"""Event-time state of one partition: watermark, per-size frontier, lateness, finality and recovery.

The property tests drive PartitionState the way the aggregation agent does (apply records in offset
order, skip duplicates, write dirty slots then progress, then emit and delete final windows), and
check it against a plain-Python reading of the contract and against itself under other batchings
and crashes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tables.aggregate import TripAggregate
from tables.partition_state import (
    LateEvent,
    PartitionState,
    Progress,
    WindowKey,
    parse_slot_table_key,
    progress_table_key,
    slot_state,
    slot_table_key,
    windows_from_slot_state,
)
from tables.results import window_record
from tables.windows import WindowSize, parse_windows

S = 1_000
M = 60 * S
H = 60 * M
SIZES = parse_windows("1m,5m,15m,1h")
M1, M5, M15, H1 = SIZES
LATENESS = 30 * S
T0 = 1_709_294_400_000  # 2024-03-01T12:00:00Z, a whole hour


def new_state(sizes: list[WindowSize] | None = None, lateness_ms: int = LATENESS) -> PartitionState:
    return PartitionState(3, SIZES if sizes is None else sizes, lateness_ms)


def add(
    state: PartitionState, offset: int, t_ms: int, region: int = 7, fare: float = 10.0
) -> list[LateEvent]:
    """Apply an event the way the agent does (duplicate check, then mark applied)."""
    assert not state.is_duplicate(offset)
    outcome = state.apply_event(offset, region, t_ms, fare, 60.0, 1.0)
    state.mark_applied(offset)
    return outcome.late


def late_sizes(late: list[LateEvent]) -> list[str]:
    return [e.size.name for e in late]


# --- watermark and finality -------------------------------------------------------------------


def test_fresh_state() -> None:
    state = new_state()
    assert state.watermark_ms is None
    assert state.progress.offset == -1
    assert state.windows == {}
    assert state.take_final() == []
    assert set(state.progress.frontier) == {s.size_ms for s in SIZES}


def test_first_event_opens_a_window_of_every_size() -> None:
    state = new_state()
    assert add(state, 0, T0 + 90 * S, fare=12.0) == []
    assert set(state.windows) == {
        (M, 7, T0 + M),
        (5 * M, 7, T0),
        (15 * M, 7, T0),
        (H, 7, T0),
    }
    for agg in state.windows.values():
        assert (agg.count, agg.fare_sum, agg.last_offset) == (1, 12.0, 0)
    assert state.watermark_ms == T0 + 60 * S


def test_watermark_is_highest_event_time_minus_lateness() -> None:
    state = new_state()
    for offset, t in enumerate([T0 + 50 * S, T0 + 10 * S, T0 + 70 * S, T0 + 65 * S]):
        add(state, offset, t)
    assert state.progress.max_event_ms == T0 + 70 * S
    assert state.watermark_ms == T0 + 40 * S


@pytest.mark.parametrize(
    ("second_event_ms", "final"),
    [(89_999, False), (90_000, True), (91_000, True)],  # final once watermark (t - 30 s) >= end (60 s)
)
def test_window_is_final_once_the_watermark_reaches_its_end(second_event_ms: int, final: bool) -> None:
    state = new_state()
    add(state, 0, T0 + 10 * S)
    add(state, 1, T0 + second_event_ms)
    closed = state.take_final()
    assert [key for key, _ in closed] == ([(M, 7, T0)] if final else [])
    assert ((M, 7, T0) in state.windows) is not final
    if final:
        assert closed[0][1].count == 1


def test_lateness_zero_never_closes_the_window_of_the_event_itself() -> None:
    state = new_state(lateness_ms=0)
    add(state, 0, T0 + M - 1)
    assert state.take_final() == []
    add(state, 1, T0 + M)  # watermark = end of [T0, T0 + 1m)
    assert [k for k, _ in state.take_final()] == [(M, 7, T0)]


def test_late_event_is_reported_and_leaves_the_final_result_unchanged() -> None:
    state = new_state()
    add(state, 0, T0 + 10 * S, fare=1.0)
    add(state, 1, T0 + 120 * S, fare=2.0)  # watermark T0 + 90 s: [T0, T0 + 1m) is final
    (key, agg), *_ = state.take_final()
    assert key == (M, 7, T0)
    emitted = agg.to_state()

    late = add(state, 2, T0 + 20 * S, fare=100.0)
    assert late == [LateEvent(2, M1, T0, T0 + 90 * S)]
    assert (M, 7, T0) not in state.windows  # not re-opened
    assert state.take_final() == []
    assert agg.to_state() == emitted


def test_lateness_is_per_window_size() -> None:
    """Too late for 1m, still counted in 5m, 15m and 1h, which are open."""
    state = new_state()
    add(state, 0, T0 + 10 * S)
    add(state, 1, T0 + 150 * S)  # watermark T0 + 120 s: 1m windows up to T0 + 2m are final
    late = add(state, 2, T0 + 70 * S)
    assert late_sizes(late) == ["1m"]
    assert late[0].window_start_ms == T0 + M
    assert (M, 7, T0 + M) not in state.windows
    for size_ms in (5 * M, 15 * M, H):
        agg = state.windows[(size_ms, 7, T0)]
        assert (agg.count, agg.last_offset) == (3, 2)


def test_an_event_can_be_late_for_several_sizes() -> None:
    state = new_state()
    add(state, 0, T0)
    add(state, 1, T0 + 16 * M)  # watermark T0 + 15m30s: 1m, 5m and 15m windows before T0 + 15m final
    late = add(state, 2, T0 + 14 * M)
    assert late_sizes(late) == ["1m", "5m", "15m"]
    assert [e.window_start_ms for e in late] == [T0 + 14 * M, T0 + 10 * M, T0]
    assert state.windows[(H, 7, T0)].count == 3


def test_lateness_is_judged_against_previous_records_only() -> None:
    """The same two events in the other order: nothing is late."""
    early_first = new_state()
    assert add(early_first, 0, T0 + 10 * S) == []
    assert add(early_first, 1, T0 + 120 * S) == []

    late_first = new_state()
    assert add(late_first, 0, T0 + 120 * S) == []
    assert late_sizes(add(late_first, 1, T0 + 10 * S)) == ["1m"]


def test_late_events_do_not_advance_or_lower_the_watermark() -> None:
    state = new_state()
    add(state, 0, T0 + 10 * M)
    add(state, 1, T0)
    assert state.progress.max_event_ms == T0 + 10 * M
    assert state.watermark_ms == T0 + 10 * M - LATENESS


def test_late_event_for_a_window_that_never_had_events() -> None:
    state = new_state()
    add(state, 0, T0 + 10 * M)
    late = add(state, 1, T0 + 4 * M, region=99)
    assert late_sizes(late) == ["1m", "5m"]
    assert (M, 99, T0 + 4 * M) not in state.windows
    assert (5 * M, 99, T0) not in state.windows
    assert state.windows[(15 * M, 99, T0)].count == 1


def test_regions_have_separate_windows_but_share_the_frontier() -> None:
    state = new_state()
    add(state, 0, T0 + 10 * S, region=1)
    add(state, 1, T0 + 20 * S, region=2)
    add(state, 2, T0 + 120 * S, region=3)  # closes [T0, T0 + 1m) for every region
    closed = [k for k, _ in state.take_final()]
    assert closed == [(M, 1, T0), (M, 2, T0)]
    assert late_sizes(add(state, 3, T0 + 30 * S, region=4)) == ["1m"]


# --- control records --------------------------------------------------------------------------


def test_control_closes_every_window_holding_a_time_at_or_before_it() -> None:
    state = new_state()
    add(state, 0, T0 + 5 * M + 10 * S)
    add(state, 1, T0 + 20 * M)
    state.apply_control(T0 + 20 * M)
    closed = [k for k, _ in state.take_final()]
    assert closed == [  # oldest (earliest end) first
        (M, 7, T0 + 5 * M),
        (5 * M, 7, T0 + 5 * M),
        (15 * M, 7, T0),
        (M, 7, T0 + 20 * M),
        (5 * M, 7, T0 + 20 * M),
        (15 * M, 7, T0 + 15 * M),
        (H, 7, T0),
    ]
    assert state.windows == {}
    assert state.progress.frontier == {
        M: T0 + 21 * M,
        5 * M: T0 + 25 * M,
        15 * M: T0 + 30 * M,
        H: T0 + H,
    }


@pytest.mark.parametrize(
    ("control_t", "frontiers"),
    [
        (T0, {M: T0 + M, 5 * M: T0 + 5 * M, 15 * M: T0 + 15 * M, H: T0 + H}),  # on a boundary
        (T0 - 1, {M: T0, 5 * M: T0, 15 * M: T0, H: T0}),  # just before it
        (T0 + 7 * M + 1, {M: T0 + 8 * M, 5 * M: T0 + 10 * M, 15 * M: T0 + 15 * M, H: T0 + H}),
    ],
)
def test_control_frontier_is_the_end_of_the_window_holding_t(
    control_t: int, frontiers: dict[int, int]
) -> None:
    state = new_state()
    state.apply_control(control_t)
    assert state.progress.frontier == frontiers
    assert state.progress.max_event_ms == control_t


def test_events_after_a_control_record() -> None:
    state = new_state()
    add(state, 0, T0 + 10 * S)
    state.apply_control(T0 + 10 * S)
    assert [k for k, _ in state.take_final()] == [(M, 7, T0), (5 * M, 7, T0), (15 * M, 7, T0), (H, 7, T0)]
    assert late_sizes(add(state, 1, T0 + 59 * S)) == ["1m", "5m", "15m", "1h"]
    assert add(state, 2, T0 + H) == []  # a later window is open


def test_frontier_is_the_highest_of_watermark_and_control() -> None:
    state = new_state()
    add(state, 0, T0 + 10 * M)  # watermark T0 + 9m30s
    state.apply_control(T0)  # closes less than the watermark for 1m and 5m: no step back
    assert state.progress.frontier[M] == T0 + 10 * M - LATENESS
    assert state.progress.frontier[5 * M] == T0 + 10 * M - LATENESS
    assert state.progress.frontier[15 * M] == T0 + 15 * M
    assert state.progress.frontier[H] == T0 + H
    assert state.progress.max_event_ms == T0 + 10 * M  # a control never lowers event time

    add(state, 1, T0 + 14 * M)  # watermark T0 + 13m30s passes the 1m and 5m frontiers only
    assert state.progress.frontier[M] == T0 + 14 * M - LATENESS
    assert state.progress.frontier[15 * M] == T0 + 15 * M
    add(state, 2, T0 + 70 * M)
    assert state.progress.frontier == {s.size_ms: T0 + 70 * M - LATENESS for s in SIZES}


def test_frontier_never_moves_back() -> None:
    state = new_state()
    state.apply_control(T0 + H)
    add(state, 0, T0 + 2 * H + 1)
    before = dict(state.progress.frontier)
    state.apply_control(T0)
    add(state, 1, T0 + 2 * H)
    assert state.progress.frontier == before


# --- take_final, take_dirty, duplicates -------------------------------------------------------


def test_take_final_returns_oldest_first_then_removes() -> None:
    state = new_state(sizes=parse_windows("1m,5m"), lateness_ms=10 * M)
    times = [(5, 4 * M), (1, 2 * M + 5 * S), (3, 10 * S), (2, 10 * S), (1, 3 * M)]
    for offset, (region, t) in enumerate(times):
        add(state, offset, T0 + t, region=region)
    state.apply_control(T0 + 4 * M)
    closed = [k for k, _ in state.take_final()]
    ends = [k[2] + k[0] for k in closed]
    assert ends == sorted(ends)
    assert closed == [
        (M, 2, T0),
        (M, 3, T0),
        (M, 1, T0 + 2 * M),
        (M, 1, T0 + 3 * M),
        (M, 5, T0 + 4 * M),
        (5 * M, 1, T0),
        (5 * M, 2, T0),
        (5 * M, 3, T0),
        (5 * M, 5, T0),
    ]
    assert state.windows == {}
    assert state.take_final() == []


def test_take_dirty_reports_each_changed_open_window_once() -> None:
    state = new_state(sizes=parse_windows("1m,1h"))
    add(state, 0, T0 + 10 * S)
    add(state, 1, T0 + 20 * S)
    assert sorted(k for k, _ in state.take_dirty()) == [(M, 7, T0), (H, 7, T0)]
    assert state.take_dirty() == []
    add(state, 2, T0 + 2 * M)  # a new 1m window and the changed 1h window
    assert sorted(k for k, _ in state.take_dirty()) == [(M, 7, T0 + 2 * M), (H, 7, T0)]
    add(state, 3, T0 + 2 * M + 10 * S)
    add(state, 4, T0 + 3 * M + 40 * S)  # watermark T0 + 3m10s closes the dirty [T0 + 2m, T0 + 3m)
    assert [k for k, _ in state.take_final()] == [(M, 7, T0), (M, 7, T0 + 2 * M)]
    assert sorted(k for k, _ in state.take_dirty()) == [(M, 7, T0 + 3 * M), (H, 7, T0)]


@pytest.mark.parametrize(
    ("applied", "offset", "duplicate"), [(-1, 0, False), (5, 5, True), (5, 4, True), (5, 6, False)]
)
def test_is_duplicate(applied: int, offset: int, duplicate: bool) -> None:
    state = new_state()
    if applied >= 0:
        state.mark_applied(applied)
    assert state.is_duplicate(offset) is duplicate


def test_mark_applied_never_moves_back() -> None:
    state = new_state()
    state.mark_applied(10)
    state.mark_applied(3)
    assert state.progress.offset == 10


def test_replayed_event_is_not_folded_twice_into_a_window_that_has_it() -> None:
    """A partial batch: the 1m window was stored after the event, the 1h window before it."""
    state = new_state(sizes=parse_windows("1m,1h"))
    add(state, 0, T0 + 10 * S)
    stored_1h = TripAggregate.from_state(state.windows[(H, 7, T0)].to_state())
    add(state, 1, T0 + 20 * S, fare=5.0)
    stored_1m = TripAggregate.from_state(state.windows[(M, 7, T0)].to_state())

    restored = PartitionState(
        3,
        parse_windows("1m,1h"),
        LATENESS,
        Progress.from_state({"max": T0 + 10 * S, "f": {str(M): T0 - 20 * S, str(H): T0 - 20 * S}, "o": 0}),
        {(M, 7, T0): stored_1m, (H, 7, T0): stored_1h},
    )
    outcome = restored.apply_event(1, 7, T0 + 20 * S, 5.0, 60.0, 1.0)
    assert outcome.folded and outcome.late == []
    assert restored.windows[(M, 7, T0)] == state.windows[(M, 7, T0)]
    assert restored.windows[(H, 7, T0)] == state.windows[(H, 7, T0)]
    assert restored.windows[(M, 7, T0)].count == 2

    again = restored.apply_event(1, 7, T0 + 20 * S, 5.0, 60.0, 1.0)
    assert not again.folded
    assert restored.windows[(H, 7, T0)].count == 2


# --- state ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "progress",
    [
        Progress(),
        Progress(T0, {M: T0 - 30 * S, H: T0 - H}, 17),
        Progress(-5, {1: -(2**62)}, 0),
    ],
)
def test_progress_state_round_trips_through_json(progress: Progress) -> None:
    state = orjson.loads(orjson.dumps(progress.to_state()))
    assert Progress.from_state(state) == progress


@pytest.mark.parametrize("state", [None, {}])
def test_progress_from_no_state_is_fresh(state: dict[str, Any] | None) -> None:
    assert Progress.from_state(state) == Progress()


def test_restored_state_continues_exactly_where_it_stopped() -> None:
    state = new_state()
    add(state, 0, T0 + 10 * S)
    add(state, 1, T0 + 5 * M)
    table = {
        progress_table_key(3): orjson.loads(orjson.dumps(state.progress.to_state())),
        **{
            slot_table_key(3, slot): orjson.loads(orjson.dumps(slot_state(state.slot_windows(slot))))
            for slot in {(k[0], k[2]) for k in state.windows}
        },
    }
    restored = restore(table, SIZES, LATENESS)
    assert restored.progress == state.progress
    assert restored.windows == state.windows
    assert restored.is_duplicate(1) and not restored.is_duplicate(2)
    assert (
        add(restored, 2, T0 + 10 * S)
        == add(state, 2, T0 + 10 * S)
        == [LateEvent(2, M1, T0, T0 + 4 * M + 30 * S)]
    )
    assert restored.windows == state.windows


def test_new_window_size_gets_a_frontier_on_restore() -> None:
    progress = Progress(T0, {M: T0 - LATENESS}, 4)
    state = PartitionState(0, parse_windows("1m,1h"), LATENESS, progress)
    assert state.progress.frontier[M] == T0 - LATENESS
    assert state.progress.frontier[H] < T0
    assert state.progress.offset == 4


@pytest.mark.parametrize(("partition", "slot"), [(0, (M, T0)), (7, (H, -H)), (12, (5 * M, 0))])
def test_slot_table_key_round_trips(partition: int, slot: tuple[int, int]) -> None:
    key = slot_table_key(partition, slot)
    assert parse_slot_table_key(key) == (partition, slot)
    assert key != progress_table_key(partition)


@pytest.mark.parametrize("key", ["p|3", "w|3|60000", "w|3|60000|7|0", "x|3|60000|0", ""])
def test_other_table_keys_are_not_slots(key: str) -> None:
    assert parse_slot_table_key(key) is None


def test_slot_holds_every_open_region_of_a_window() -> None:
    state = new_state(sizes=parse_windows("1m"))
    for offset, region in enumerate([1, 2, 3, 2]):
        add(state, offset, T0 + offset * S, region=region)
    windows = state.slot_windows((M, T0))
    assert sorted(windows) == [1, 2, 3]
    assert windows[2].count == 2
    value = orjson.loads(orjson.dumps(slot_state(windows)))
    assert windows_from_slot_state((M, T0), value) == {(M, r, T0): agg for r, agg in windows.items()}
    state.apply_control(T0)
    state.take_final()
    assert state.slot_windows((M, T0)) == {}


# --- properties: a reference model, batching, crashes -----------------------------------------

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


def apply_record(state: PartitionState, rec: Record) -> list[LateEvent]:
    if isinstance(rec, Control):
        state.apply_control(rec.t_ms)
        return []
    return state.apply_event(rec.offset, rec.region, rec.t_ms, rec.fare, rec.duration, 0.5).late


Op = tuple[str, Any, Any]


def process_batch(state: PartitionState, batch: list[Record], log: list[Op]) -> None:
    """One batch of one partition, in the agent's order of durable effects."""
    for rec in batch:
        if state.is_duplicate(rec.offset):
            continue
        for late in apply_record(state, rec):
            log.append(("late", (late.offset, late.size.size_ms, late.window_start_ms), None))
        state.mark_applied(rec.offset)
    for slot in sorted({(k[0], k[2]) for k, _ in state.take_dirty()}):
        log.append(("put", slot_table_key(PARTITION, slot), json(slot_state(state.slot_windows(slot)))))
    log.append(("put", progress_table_key(PARTITION), json(state.progress.to_state())))
    final = state.take_final()
    for key, agg in final:
        log.append(("emit", key, json(agg.to_state())))
    for slot in sorted({(k[0], k[2]) for k, _ in final}):
        log.append(("del", slot_table_key(PARTITION, slot), None))


def json(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value))


def restore(table: dict[str, Any], sizes: list[WindowSize], lateness_ms: int) -> PartitionState:
    """Rebuild a partition from its table, as the agent does after a restart."""
    windows: dict[WindowKey, TripAggregate] = {}
    for key, value in table.items():
        parsed = parse_slot_table_key(key)
        if parsed is not None and parsed[0] == PARTITION:
            windows.update(windows_from_slot_state(parsed[1], value))
    progress = Progress.from_state(table.get(progress_table_key(PARTITION)))
    return PartitionState(PARTITION, sizes, lateness_ms, progress, windows)


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
        state = restore(table_of(log), SMALL, SMALL_LATENESS)
        position = data.draw(st.integers(0, state.progress.offset + 1), label="restart offset")
    cuts = data.draw(st.lists(st.integers(0, 50), max_size=6), label="final batches")
    for batch in split(records[position:], cuts) or [[]]:
        # No record left to replay: windows the restored frontier already closed are published by
        # the next take_final all the same (this models the worker calling it after a restore).
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
