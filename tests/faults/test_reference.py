"""The reference the fault suite checks against, held to the contract's text on hand-made records.

The fault cases are only as strong as the reference: one that obeyed a malformed control record
or accepted a year-9999 event would agree with a worker that does the same.
"""

from __future__ import annotations

import json

from tests.integration.pipeline import MAX_FUTURE_MS, Record, _valid, control_of, reference_windows

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
    return Record(0, offset, b"3", value, headers or [], 0)


def _control(
    kind: str, t_ms: int, header: str = "streampulse-control"
) -> tuple[bytes, list[tuple[str, bytes]]]:
    return json.dumps({"control": kind, "event_time_ms": t_ms}).encode(), [(header, kind.encode())]


def test_events_past_max_future_or_max_region_id_or_unparseable_are_invalid() -> None:
    assert _valid(_event(), NOW_MS) is not None
    assert _valid(_event(event_time="9999-12-31T23:59:59Z"), NOW_MS) is None
    assert _valid(_event(event_time=(NOW_MS + MAX_FUTURE_MS + 1000) / 1000), NOW_MS) is None
    assert _valid(_event(event_time=(NOW_MS + MAX_FUTURE_MS - 1000) / 1000), NOW_MS) is not None
    assert _valid(_event(event_time="1969-12-31T23:59:59Z"), NOW_MS) is None
    assert _valid(_event(region_id=1_000_001), NOW_MS) is None
    assert _valid(_event(region_id=1_000_000), NOW_MS) is not None
    assert _valid(b"[" * 10_000 + b"]" * 10_000, NOW_MS) is None
    assert _valid(b'{"trip_id": "t", "region_id": ' + b"9" * 5000 + b"}", NOW_MS) is None
    assert _valid(_event(fare=float("nan")), NOW_MS) is None
    assert _valid(b'{"trip_id": "\xff"}', NOW_MS) is None


def test_only_exact_known_bounded_control_records_advance_time() -> None:
    t = 1_755_252_000_000
    assert control_of(_rec(0, *_control("end-of-stream", t)), NOW_MS) == (True, t)
    assert control_of(_rec(0, *_control("idle", t)), NOW_MS) == (True, t)
    assert control_of(_rec(0, *_control("rewind", t)), NOW_MS) == (True, None)
    assert control_of(_rec(0, *_control("end-of-stream", NOW_MS + MAX_FUTURE_MS + 1)), NOW_MS) == (True, None)
    assert control_of(_rec(0, *_control("end-of-stream", -1)), NOW_MS) == (True, None)
    value, _ = _control("end-of-stream", t)
    assert control_of(_rec(0, value, [("streampulse-control", b"idle")]), NOW_MS) == (True, None)
    assert control_of(_rec(0, *_control("end-of-stream", t, header="streampulse-control-v2")), NOW_MS) == (
        False,
        None,
    )


def test_an_invalid_control_record_closes_nothing() -> None:
    """Events after a bad control are still on time; after a good one they are late."""
    early, later = _event(trip_id="a"), _event(trip_id="b", event_time="2025-08-15T10:00:20Z")
    far = NOW_MS - 86_400_000
    for bad in (_control("rewind", far), _control("end-of-stream", far, header="streampulse-control-x")):
        ref = reference_windows([_rec(0, early), _rec(1, *bad), _rec(2, later)], now_ms=NOW_MS)
        assert ref.invalid == 1 and not ref.late
        assert len(ref.windows[("1m", 3, 1_755_252_000_000)]) == 2
    ref = reference_windows(
        [_rec(0, early), _rec(1, *_control("end-of-stream", far)), _rec(2, later)], now_ms=NOW_MS
    )
    assert ref.invalid == 0 and ("b", "1m") in ref.late
