"""Chunk preparation (what the worker processes run): loops, rejections, rejects-file lines."""

from __future__ import annotations

import orjson

from app.events import Rejection, TripEvent, parse_event
from producers.batches import Rejected, prepare_records, rejection_json, shifted
from producers.parsers import Schema
from producers.stage import Stage

EVENT = {
    "trip_id": "a",
    "region_id": 3,
    "event_time": "2025-08-15T10:00:01Z",
    "fare": 9.5,
    "duration": 120,
    "distance": 1,
}


def test_records_become_parallel_lists_and_positioned_problems() -> None:
    payloads: list[bytes | dict[str, object] | Rejection] = [
        orjson.dumps(EVENT),
        b"{nope",
        Rejection("malformed_row", "3 fields where the header has 6"),
        {**EVENT, "trip_id": "b", "region_id": 4},
    ]
    out = prepare_records(payloads, Schema.CANONICAL, None, 0, 0)
    assert out.region_ids == [3, 4]
    assert out.times_ms == [1_755_252_001_000] * 2
    assert [orjson.loads(v)["trip_id"] for v in out.values] == ["a", "b"]
    assert [(i, pos, r.reason, repeat) for i, pos, r, repeat in out.problems] == [
        (1, 1, "invalid_json", False),
        (2, 1, "malformed_row", False),
    ]


def test_later_loops_shift_suffix_and_do_not_report_rows_again() -> None:
    payloads: list[bytes | dict[str, object] | Rejection] = [orjson.dumps(EVENT), b"{nope"]
    out = prepare_records(payloads, Schema.CANONICAL, None, 2, 60_000)
    assert orjson.loads(out.values[0]) == {
        **EVENT,
        "trip_id": "a~2",
        "event_time": "2025-08-15T10:01:01Z",
        "duration": 120.0,
        "distance": 1.0,
    }
    assert out.times_ms == [1_755_252_061_000]
    assert [(r.reason, repeat) for _, _, r, repeat in out.problems] == [("invalid_json", True)]


def test_a_loop_suffix_that_makes_the_id_too_long_is_a_new_rejection() -> None:
    event = parse_event({**EVENT, "trip_id": "x" * 127})
    assert isinstance(event, TripEvent)
    assert isinstance(shifted(event, 1, 0), Rejection)
    out = prepare_records([{**EVENT, "trip_id": "x" * 127}], Schema.CANONICAL, None, 1, 0)
    assert out.values == [] and [(r.reason, repeat) for _, _, r, repeat in out.problems] == [
        ("invalid:trip_id", False)
    ]


def test_rejects_file_lines() -> None:
    item = Rejected("trips.csv", 7, 6, "raw,row", Rejection("invalid:fare", "fare: too big"))
    assert orjson.loads(rejection_json(item, "raw,row", False)) == {
        "source": "trips.csv",
        "line": 7,
        "row": 6,
        "reason": "invalid:fare",
        "message": "fare: too big",
        "raw": "raw,row",
    }
    assert orjson.loads(rejection_json(item, "raw", True))["raw_truncated"] is True


async def test_worker_processes_return_chunks_in_input_order() -> None:
    stage: Stage[int] = Stage(1)
    try:
        jobs = [(pow, (2, n), n) for n in range(20)]
        results = [(result, n) async for result, n in stage.run(jobs)]
    finally:
        stage.close()
    assert results == [(2**n, n) for n in range(20)]
