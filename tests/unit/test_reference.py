"""The one reference (support.reference), held to the contract's text on hand-made records.

Every integration, fault and benchmark check is only as strong as the reference: one that obeyed
a malformed control record or accepted a year-9999 event would agree with a worker that does the
same.
"""

from __future__ import annotations

import json

from app.control import CONTROL_HEADER
from support.kafka import Record
from support.reference import MAX_FUTURE_MS, control_of, reference_windows, valid_event, window_problems

NOW_MS = 1_800_000_000_000


def _event(**fields: object) -> bytes:
    base: dict[str, object] = {
        "trip_id": "t",
        "region_id": 3,
        "event_time": "2025-08-15T10:00:10Z",
        "fare": 10.0,
        "duration": 60,
        "distance": 1.0,
    }
    base.update(fields)
    return json.dumps(base).encode()


def _rec(offset: int, value: bytes, headers: list[tuple[str, bytes]] | None = None) -> Record:
    return Record(0, offset, b"3", value, tuple(headers or ()))


def _control(kind: str, t_ms: int, header: str = CONTROL_HEADER) -> tuple[bytes, list[tuple[str, bytes]]]:
    return json.dumps({"control": kind, "event_time_ms": t_ms}).encode(), [(header, kind.encode())]


def test_events_past_max_future_or_max_region_id_or_unparseable_are_invalid() -> None:
    assert valid_event(_event(), NOW_MS) is not None
    assert valid_event(_event(event_time="9999-12-31T23:59:59Z"), NOW_MS) is None
    assert valid_event(_event(event_time=(NOW_MS + MAX_FUTURE_MS + 1000) / 1000), NOW_MS) is None
    assert valid_event(_event(event_time=(NOW_MS + MAX_FUTURE_MS - 1000) / 1000), NOW_MS) is not None
    assert valid_event(_event(event_time="1969-12-31T23:59:59Z"), NOW_MS) is None
    assert valid_event(_event(region_id=1_000_001), NOW_MS) is None
    assert valid_event(_event(region_id=1_000_000), NOW_MS) is not None
    assert valid_event(b"[" * 10_000 + b"]" * 10_000, NOW_MS) is None
    assert valid_event(b'{"trip_id": "t", "region_id": ' + b"9" * 5000 + b"}", NOW_MS) is None
    assert valid_event(_event(fare=float("nan")), NOW_MS) is None
    assert valid_event(b'{"trip_id": "\xff"}', NOW_MS) is None


def test_only_exact_known_bounded_control_records_advance_time() -> None:
    t = 1_755_252_000_000
    assert control_of(_rec(0, *_control("end-of-stream", t)), NOW_MS) == (True, t)
    assert control_of(_rec(0, *_control("idle", t)), NOW_MS) == (True, t)
    assert control_of(_rec(0, *_control("rewind", t)), NOW_MS) == (True, None)
    assert control_of(_rec(0, *_control("end-of-stream", NOW_MS + MAX_FUTURE_MS + 1)), NOW_MS) == (True, None)
    assert control_of(_rec(0, *_control("end-of-stream", -1)), NOW_MS) == (True, None)
    value, _ = _control("end-of-stream", t)
    assert control_of(_rec(0, value, [(CONTROL_HEADER, b"idle")]), NOW_MS) == (True, None)
    assert control_of(_rec(0, *_control("end-of-stream", t, header=CONTROL_HEADER + "-v2")), NOW_MS) == (
        False,
        None,
    )


def test_an_invalid_control_record_closes_nothing() -> None:
    """Events after a bad control are still on time; after a good one they are late."""
    early, later = _event(trip_id="a"), _event(trip_id="b", event_time="2025-08-15T10:00:20Z")
    far = NOW_MS - 86_400_000
    for bad in (_control("rewind", far), _control("end-of-stream", far, header=CONTROL_HEADER + "-x")):
        ref = reference_windows([_rec(0, early), _rec(1, *bad), _rec(2, later)], now_ms=NOW_MS)
        assert ref.invalid == 1 and not ref.late
        assert ref.windows[("1m", 3, 1_755_252_000_000)].count == 2
    ref = reference_windows(
        [_rec(0, early), _rec(1, *_control("end-of-stream", far)), _rec(2, later)], now_ms=NOW_MS
    )
    assert ref.invalid == 0 and ("b", "1m") in ref.late


def test_a_valid_control_closes_every_window_up_to_its_time_on_its_partition_only() -> None:
    t = 1_755_252_030_000  # inside the 1m window [10:00, 10:01)
    inside = _event(trip_id="in", event_time="2025-08-15T10:00:59.999Z")
    after = _event(trip_id="after", event_time="2025-08-15T10:01:00Z")
    ref = reference_windows(
        [_rec(0, *_control("idle", t)), _rec(1, inside), _rec(2, after), Record(1, 0, b"3", inside)],
        now_ms=NOW_MS,
    )
    assert ref.controls == 1 and ref.events == 3
    assert {size for trip, size in ref.late if trip == "in"} == {"1m", "5m", "15m", "1h"}
    assert ref.windows[("1m", 3, 1_755_252_060_000)].count == 1
    assert ref.windows[("1m", 3, 1_755_252_000_000)].count == 1  # partition 1 is not closed


def test_a_header_that_only_starts_with_the_control_name_leaves_an_ordinary_event() -> None:
    ref = reference_windows([_rec(0, _event(), [(CONTROL_HEADER + "-v2", b"idle")])], now_ms=NOW_MS)
    assert ref.events == 1 and ref.controls == 0 and ref.invalid == 0


def test_event_times_are_floored_to_the_millisecond_like_the_product() -> None:
    ev = valid_event(_event(event_time="2025-08-15T10:00:00.0009Z"), NOW_MS)
    assert ev is not None and ev.t_ms == 1_755_252_000_000
    ev = valid_event(_event(event_time=1_755_252_000.0019), NOW_MS)
    assert ev is not None and ev.t_ms == 1_755_252_000_001


def _published(key: tuple[str, int, int], **changes: object) -> dict[str, object]:
    size, region, start = key
    win: dict[str, object] = {
        "window": size,
        "region_id": region,
        "window_start_ms": start,
        "window_end_ms": start + 60_000,
        "final": True,
        "trip_count": 2,
        "revenue": 30.0,
        "avg_fare": 15.0,
        "min_fare": 10.0,
        "max_fare": 20.0,
        "avg_duration": 90.0,
        "total_distance": 3.0,
        "avg_distance": 1.5,
        "p50_duration": 60.0,
        "p95_duration": 60.0,
        "first_event_time": "2025-08-15T10:00:10Z",
        "last_event_time": "2025-08-15T10:00:20Z",
    }
    win.update(changes)
    return win


def test_window_problems_names_exactly_the_fields_that_differ() -> None:
    records = [
        _rec(0, _event(trip_id="a", fare=10.0, duration=60, distance=1.0)),
        _rec(
            1, _event(trip_id="b", event_time="2025-08-15T10:00:20Z", fare=20.0, duration=120, distance=2.0)
        ),
    ]
    ref = reference_windows(records, now_ms=NOW_MS)
    key = ("1m", 3, 1_755_252_000_000)
    assert window_problems(key, ref.windows[key], _published(key)) == []
    wrong = _published(key, trip_count=3, max_fare=19.0, final=False, last_event_time="2025-08-15T10:00:21Z")
    assert window_problems(key, ref.windows[key], wrong) == [
        "final",
        "first/last_event_time",
        "max_fare",
        "trip_count",
    ]
    assert window_problems(key, ref.windows[key], _published(key, p50_duration=62.0)) == ["p50_duration"]
