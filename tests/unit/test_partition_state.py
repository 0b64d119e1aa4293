"""Event-time state of one partition: watermark, per-size frontier, lateness, finality and recovery.

The property tests drive PartitionState the way the aggregation agent does (apply records in offset
order, skip duplicates, write dirty slots then progress, then emit and delete final windows), and
check it against a plain-Python reading of the contract and against itself under other batchings
and crashes.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tables.aggregate import TripAggregate
from tables.partition_state import (
    LateEvent,
    PartitionState,
    Progress,
    parse_slot_table_key,
    progress_table_key,
    slot_state,
    slot_table_key,
    state_from_items,
    windows_from_slot_state,
)
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
    assert [key for key, _ in state.take_final()] == [(M, 7, T0)]  # published before the store
    table = {
        progress_table_key(3): orjson.loads(orjson.dumps(state.progress.to_state())),
        **{
            slot_table_key(3, slot): orjson.loads(orjson.dumps(slot_state(state.slot_windows(slot))))
            for slot in {(k[0], k[2]) for k in state.windows}
        },
    }
    restored, unreadable = state_from_items(3, table.items(), SIZES, LATENESS)
    assert unreadable == []
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


def test_unreadable_slots_are_reported_and_other_partitions_and_sizes_ignored() -> None:
    state = new_state()
    add(state, 0, T0 + 10 * S)
    good = {
        slot_table_key(3, slot): orjson.loads(orjson.dumps(slot_state(state.slot_windows(slot))))
        for slot in {(k[0], k[2]) for k in state.windows}
    }
    table = {
        **good,
        slot_table_key(3, (M, T0 + M)): [["not a region", "nor an aggregate"]],
        slot_table_key(4, (M, T0)): good[slot_table_key(3, (M, T0))],
        slot_table_key(3, (2 * M, T0)): good[slot_table_key(3, (M, T0))],
        progress_table_key(3): state.progress.to_state(),
    }
    restored, unreadable = state_from_items(3, table.items(), SIZES, LATENESS)
    assert unreadable == [slot_table_key(3, (M, T0 + M))]
    assert restored.windows == state.windows
    assert restored.progress == state.progress


def test_a_stored_window_the_stored_progress_closed_is_dropped_and_deleted_next() -> None:
    """A crash between a batch's progress record and its tombstones leaves a slot that may hold
    the window as it was before that batch: its final result was published, so it must not be
    published again (with the stale value), only deleted."""
    state = new_state(sizes=parse_windows("1m"))
    add(state, 0, T0 + 10 * S)
    stale_value = orjson.loads(orjson.dumps(slot_state(state.slot_windows((M, T0)))))
    add(state, 1, T0 + 20 * S)
    add(state, 2, T0 + 2 * M)
    assert [agg.count for _, agg in state.take_final()] == [2]
    table = {slot_table_key(3, (M, T0)): stale_value, progress_table_key(3): state.progress.to_state()}
    restored, _ = state_from_items(3, table.items(), parse_windows("1m"), LATENESS)
    assert (M, 7, T0) not in restored.windows
    assert restored.take_final() == []
    assert restored.stale == {(M, T0)}
