"""Control records: header detection, encoding and tolerant decoding."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.control import (
    CONTROL_HEADER,
    END_OF_STREAM,
    IDLE,
    INVALID_CONTROL,
    KINDS,
    Control,
    control_kind,
    decode_control,
    encode_control,
)
from app.events import FUTURE, Rejection


def test_encode_control_truncates_a_float_time_to_integer_ms() -> None:
    value, _ = encode_control(IDLE, 1234.9)  # type: ignore[arg-type]
    assert orjson.loads(value)["event_time_ms"] == 1234


@pytest.mark.parametrize("kind", ["", "eos", "END-OF-STREAM", "idle ", "stop"])
def test_encode_control_refuses_unknown_kinds(kind: str) -> None:
    with pytest.raises(ValueError, match="unknown control kind"):
        encode_control(kind, 0)


@pytest.mark.parametrize(
    ("headers", "kind"),
    [
        (None, None),
        ([], None),
        ([("content-type", b"json")], None),
        ([("x-streampulse-control", b"idle")], None),  # the exact name only
        ([("Streampulse-Control", b"idle")], None),  # header names are compared exactly
        ([(CONTROL_HEADER + "-v2", b"idle")], None),  # a longer name is an ordinary header
        ([(CONTROL_HEADER, b"idle")], IDLE),
        ([(CONTROL_HEADER, b"end-of-stream")], END_OF_STREAM),
        ([("trace", b"1"), (CONTROL_HEADER, b"idle")], IDLE),
        ([(CONTROL_HEADER, b"idle"), (CONTROL_HEADER, b"end-of-stream")], IDLE),  # first wins
        ([(CONTROL_HEADER, b"")], ""),  # no kind: decode_control refuses it
        ([(CONTROL_HEADER, None)], ""),
        ([(CONTROL_HEADER, b"\xffidle")], "\ufffdidle"),  # undecodable bytes never raise
        ((h for h in [(CONTROL_HEADER, b"idle")]), IDLE),  # any iterable
    ],
)
def test_control_kind(headers: list[tuple[str, bytes]] | None, kind: str | None) -> None:
    assert control_kind(headers) == kind


LATEST_MS = 2_000_000_000_000


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("t_ms", [0, 1, 1_709_296_496_123, LATEST_MS])
def test_encode_decode_round_trip(kind: str, t_ms: int) -> None:
    value, headers = encode_control(kind, t_ms)
    assert orjson.loads(value) == {"control": kind, "event_time_ms": t_ms}
    found = control_kind(headers)
    assert found == kind
    assert found is not None
    assert decode_control(found, value, LATEST_MS) == Control(kind, t_ms)


def test_decode_control_ignores_extra_keys() -> None:
    value = b'{"control": "idle", "event_time_ms": 5, "extra": [1, 2]}'
    assert decode_control(IDLE, value, LATEST_MS) == Control(IDLE, 5)


@pytest.mark.parametrize("t_ms", [LATEST_MS + 1, 253_402_300_799_000, 2**62])
def test_a_control_time_beyond_the_limit_is_refused_as_future(t_ms: int) -> None:
    value, _ = encode_control(END_OF_STREAM, t_ms)
    result = decode_control(END_OF_STREAM, value, LATEST_MS)
    assert isinstance(result, Rejection) and result.reason == FUTURE


@pytest.mark.parametrize("kind", ["", "eos", "END-OF-STREAM", "idle ", "stop", "\ufffdidle"])
def test_unknown_kinds_are_refused(kind: str) -> None:
    value = orjson.dumps({"control": kind, "event_time_ms": 5})
    result = decode_control(kind, value, LATEST_MS)
    assert isinstance(result, Rejection) and result.reason == INVALID_CONTROL
    assert "unknown control kind" in result.message


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"",
        b"not json",
        b"\xff",
        b"{}",
        b'{"control": "idle"}',
        b'{"event_time_ms": 5}',  # the value must name its kind too
        b'{"control": "end-of-stream", "event_time_ms": 5}',  # another kind than the header's
        b'{"control": "idle", "event_time_ms": null}',
        b'{"control": "idle", "event_time_ms": "soon"}',
        b'{"control": "idle", "event_time_ms": 5.5}',
        b'{"control": "idle", "event_time_ms": true}',
        b'{"control": "idle", "event_time_ms": -1}',
        b'{"control": "idle", "event_time_ms": [1]}',
        b"[1, 2]",
        b"42",
        b"null",
    ],
)
def test_malformed_control_is_refused(value: bytes | None) -> None:
    result = decode_control(IDLE, value, LATEST_MS)
    assert isinstance(result, Rejection) and result.reason == INVALID_CONTROL


json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["event_time_ms", "control", "x"]) | st.text(max_size=5), inner)
    ),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=64) | json_values.map(lambda v: json.dumps(v).encode()))
def test_decode_control_never_raises(value: bytes) -> None:
    result = decode_control(IDLE, value, LATEST_MS)
    if isinstance(result, Control):
        assert result.kind == IDLE and 0 <= result.event_time_ms <= LATEST_MS
    else:
        assert result.reason in {INVALID_CONTROL, FUTURE}
