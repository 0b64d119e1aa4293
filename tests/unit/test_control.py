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
    KINDS,
    Control,
    control_kind,
    decode_control,
    encode_control,
)


def test_header_name_follows_the_contract() -> None:
    assert CONTROL_HEADER.startswith("streampulse-control")
    assert KINDS == {END_OF_STREAM, IDLE}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_encode_control_value_and_header(kind: str) -> None:
    value, headers = encode_control(kind, 1_709_296_496_123)
    assert orjson.loads(value) == {"control": kind, "event_time_ms": 1_709_296_496_123}
    assert headers == [(CONTROL_HEADER, kind.encode())]


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
        ([("x-streampulse-control", b"idle")], None),  # must start with the name
        ([("Streampulse-Control", b"idle")], None),  # header names are compared exactly
        ([(CONTROL_HEADER, b"idle")], IDLE),
        ([(CONTROL_HEADER, b"end-of-stream")], END_OF_STREAM),
        ([(CONTROL_HEADER + "-v2", b"idle")], IDLE),  # any name starting with it
        ([("trace", b"1"), (CONTROL_HEADER, b"idle")], IDLE),
        ([(CONTROL_HEADER, b"idle"), (CONTROL_HEADER, b"end-of-stream")], IDLE),  # first wins
        ([(CONTROL_HEADER, b"")], END_OF_STREAM),  # no value: end of stream
        ([(CONTROL_HEADER, None)], END_OF_STREAM),
        ([(CONTROL_HEADER, b"\xffidle")], "\ufffdidle"),  # undecodable bytes never raise
        ((h for h in [(CONTROL_HEADER, b"idle")]), IDLE),  # any iterable
    ],
)
def test_control_kind(headers: list[tuple[str, bytes]] | None, kind: str | None) -> None:
    assert control_kind(headers) == kind


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("t_ms", [0, 1, 1_709_296_496_123, 2**53, -1, -(2**40)])
def test_encode_decode_round_trip(kind: str, t_ms: int) -> None:
    value, headers = encode_control(kind, t_ms)
    found = control_kind(headers)
    assert found == kind
    assert found is not None
    assert decode_control(found, value) == Control(kind, t_ms)


@pytest.mark.parametrize(
    ("value", "t_ms"),
    [
        (b'{"control": "idle", "event_time_ms": 5}', 5),
        (b'{"event_time_ms": 5}', 5),  # the header names the kind; the body needs only the time
        (b'{"event_time_ms": 5, "extra": [1, 2]}', 5),
    ],
)
def test_decode_control_reads_the_time(value: bytes, t_ms: int) -> None:
    assert decode_control(IDLE, value) == Control(IDLE, t_ms)


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"",
        b"not json",
        b"\xff",
        b"{}",
        b'{"control": "idle"}',
        b'{"event_time_ms": null}',
        b'{"event_time_ms": "soon"}',
        b'{"event_time_ms": [1]}',
        b'{"event_time_ms": {"t": 1}}',
        b"[1, 2]",
        b"42",
        b'"event_time_ms"',
        b"null",
    ],
)
def test_malformed_control_decodes_to_none(value: bytes | None) -> None:
    assert decode_control(END_OF_STREAM, value) is None


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
    result = decode_control(IDLE, value)
    assert result is None or (result.kind == IDLE and isinstance(result.event_time_ms, int))
