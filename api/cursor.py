"""Opaque cursors for history pages.

A cursor carries the start of the last window a page returned, bound to the window size and region
it was issued for: pasted into another query it fails with 422 instead of silently skipping or
repeating windows. Base64url keeps it safe in a query string without escaping; the version prefix
lets the format change without misreading old cursors.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

_VERSION = "1"
_WINDOW_NAME = re.compile(r"^[0-9]+[smhd]$")
_INT = re.compile(r"^-?[0-9]+$")


@dataclass(frozen=True, slots=True)
class Cursor:
    window: str
    region_id: int
    after_ms: int


def encode_cursor(cursor: Cursor) -> str:
    raw = f"{_VERSION}:{cursor.window}:{cursor.region_id}:{cursor.after_ms}".encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(text: str) -> Cursor:
    """The cursor ``text`` encodes; ``ValueError`` for anything :func:`encode_cursor` did not produce."""
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeError, ValueError):
        raise ValueError("not a cursor returned by this API") from None
    parts = raw.split(":")
    if (
        len(parts) != 4
        or parts[0] != _VERSION
        or not _WINDOW_NAME.match(parts[1])
        or not _INT.match(parts[2])
        or not _INT.match(parts[3])
    ):
        raise ValueError("not a cursor returned by this API")
    cursor = Cursor(parts[1], int(parts[2]), int(parts[3]))
    if cursor.region_id < 0 or encode_cursor(cursor) != text:
        raise ValueError("not a cursor returned by this API")
    return cursor
