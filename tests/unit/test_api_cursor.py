"""History cursors: opaque, URL-safe, and refused when not produced by the API."""

from __future__ import annotations

import base64
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.cursor import Cursor, decode_cursor, encode_cursor

cursors = st.builds(
    Cursor,
    window=st.sampled_from(["1m", "5m", "15m", "1h", "30s", "1d"]),
    region_id=st.integers(min_value=0, max_value=2**63 - 1),
    after_ms=st.integers(min_value=-(2**62), max_value=2**62),
)


@given(cursors)
def test_round_trip(cursor: Cursor) -> None:
    text = encode_cursor(cursor)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", text), "safe in a query string without escaping"
    assert decode_cursor(text) == cursor


def _raw(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not-a-cursor",
        "%%%",
        _raw("2:1m:161:0"),  # unknown version
        _raw("1:1m:161"),
        _raw("1:1m:161:0:extra"),
        _raw("1:xx:161:0"),
        _raw("1:1m:-5:0"),
        _raw("1:1m:161:1.5"),
        _raw("1:1m:abc:0"),
        _raw("1:1m:161:0") + "==",  # padding is not how the API spells it
        _raw("1:1m:0161:0"),  # non-canonical number
        base64.b64encode(b"\xff\xfe\x00").decode(),
    ],
)
def test_garbage_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a cursor"):
        decode_cursor(text)


@given(cursors, st.integers(min_value=0), st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ-_"))
def test_a_changed_character_never_decodes_to_a_different_query(cursor: Cursor, pos: int, char: str) -> None:
    text = encode_cursor(cursor)
    i = pos % len(text)
    mutated = text[:i] + char + text[i + 1 :]
    try:
        decoded = decode_cursor(mutated)
    except ValueError:
        return
    assert mutated == text or encode_cursor(decoded) == mutated
