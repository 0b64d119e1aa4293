"""Pure parsing of replay input: format and schema detection, records, records to events.

No function here opens a file or a socket: they take bytes or lines, so every edge case (BOM,
malformed CSV, NaN, huge fields, DST) is unit-tested without I/O. Validity is decided by the one
event model, :func:`app.events.parse_event`; this module only turns text into the mapping the
model reads, and reports rows it cannot even split into fields (``malformed_row``,
``invalid_json``, ``invalid_encoding``).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import tzinfo
from enum import StrEnum
from typing import Any

import orjson

from app.events import Rejection, TripEvent, parse_event
from producers.localtime import parse_local
from producers.tlc import is_tlc, tlc_fields

BOM = b"\xef\xbb\xbf"
GZIP_MAGIC = b"\x1f\x8b"
#: Rejected rows keep at most this much of their raw text: enough to find and fix the row,
#: bounded so that a file of huge garbage cannot blow up the rejects file.
RAW_LIMIT = 8192


class Format(StrEnum):
    CSV = "csv"
    JSON = "json"
    JSONL = "jsonl"


class Schema(StrEnum):
    CANONICAL = "canonical"
    TLC = "tlc"


_EXTENSIONS = {".csv": Format.CSV, ".json": Format.JSON, ".jsonl": Format.JSONL, ".ndjson": Format.JSONL}

Payload = bytes | dict[str, Any] | Rejection


@dataclass(frozen=True, slots=True)
class Record:
    """One input row: where it is (``line`` in the text, ``row`` among the records), its raw form
    (kept as it came and only rendered when the row is rejected) and what the model will read."""

    line: int | None
    row: int | None
    raw: object
    payload: Payload


def is_gzip(head: bytes) -> bool:
    return head.startswith(GZIP_MAGIC)


def detect_format(name: str, head: bytes) -> Format:
    """The format of a (decompressed) input from its name and first bytes.

    ``.csv`` and ``.jsonl``/``.ndjson`` are trusted; otherwise (``.json``, stdin, anything else)
    the first character decides: ``[`` a JSON array, ``{`` JSON Lines, anything else CSV.
    """
    lowered = name.lower().removesuffix(".gz")
    suffix = lowered[lowered.rfind(".") :] if "." in lowered else ""
    known = _EXTENSIONS.get(suffix)
    if known in (Format.CSV, Format.JSONL):
        return known
    first = head.removeprefix(BOM).lstrip()[:1]
    if first == b"[":
        return Format.JSON
    if first == b"{":
        return Format.JSONL
    return known or Format.CSV


def detect_schema(keys: Iterable[str]) -> Schema:
    """TLC when the first record has TLC's pick-up zone and drop-off time columns, else canonical."""
    return Schema.TLC if is_tlc(keys) else Schema.CANONICAL


def csv_header(line: bytes) -> list[str]:
    """Column names of a CSV header line (BOM and surrounding blanks removed)."""
    text = line.removeprefix(BOM).decode("utf-8", "replace")
    return [name.strip() for name in next(csv.reader([text]), [])]


def first_json_keys(line: bytes) -> list[str]:
    """Keys of the JSON object on ``line`` (none when it is not one)."""
    try:
        value = orjson.loads(line.removeprefix(BOM))
    except orjson.JSONDecodeError:
        return []
    return list(value) if isinstance(value, dict) else []


class _Tap:
    """Feeds csv.reader decoded lines and keeps them, so each row gets its raw text and line number."""

    __slots__ = ("_lines", "count", "taken", "bad_encoding")

    def __init__(self, lines: Iterable[bytes]) -> None:
        self._lines = iter(lines)
        self.count = 0
        self.taken: list[str] = []
        self.bad_encoding = False

    def __iter__(self) -> _Tap:
        return self

    def __next__(self) -> str:
        raw = next(self._lines)
        if not self.count:
            raw = raw.removeprefix(BOM)
        self.count += 1
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("utf-8", "replace")
            self.bad_encoding = True
        self.taken.append(text)
        return text

    def take(self) -> tuple[str, bool]:
        raw, bad = "".join(self.taken).rstrip("\r\n"), self.bad_encoding
        self.taken.clear()
        self.bad_encoding = False
        return raw, bad


def csv_records(lines: Iterable[bytes]) -> Iterator[Record]:
    """Rows of a CSV text with a header line; payloads map column name to the text of the field.

    A row with another number of fields than the header, or one the csv module cannot split (an
    unterminated quote, a field over its size limit), is ``malformed_row``; blank lines are skipped.
    """
    tap = _Tap(lines)
    reader = csv.reader(tap)
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        return
    tap.take()
    width = len(header)
    row = 0
    while True:
        line = tap.count + 1
        problem = ""
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            fields, problem = [], f"CSV: {exc}"
        raw, bad_encoding = tap.take()
        if not problem and (not fields or (width > 1 and len(fields) == 1 and not fields[0].strip())):
            continue
        row += 1
        payload: Payload
        if bad_encoding:
            payload = Rejection("invalid_encoding", "the row is not UTF-8 text")
        elif problem:
            payload = Rejection("malformed_row", problem)
        elif len(fields) != width:
            payload = Rejection("malformed_row", f"{len(fields)} fields where the header has {width}")
        else:
            payload = dict(zip(header, fields, strict=True))
        yield Record(line, row, raw, payload)


def jsonl_records(lines: Iterable[bytes]) -> Iterator[Record]:
    """One record per non-blank line; the payload is the line's JSON text, parsed by the model."""
    row = 0
    for line, text in enumerate(lines, 1):
        stripped = (text.removeprefix(BOM) if line == 1 else text).strip()
        if stripped:
            row += 1
            yield Record(line, row, stripped, stripped)


def json_array_records(data: bytes) -> Iterator[Record]:
    """The elements of a JSON array (a lone object counts as one record); whitespace only: none."""
    text = data.removeprefix(BOM)
    if not text.strip():
        return
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        yield Record(None, None, text, Rejection("invalid_json", f"not a JSON document: {exc}"))
        return
    if isinstance(document, dict):
        document = [document]
    if not isinstance(document, list):
        yield Record(None, None, text, Rejection("invalid_json", "expected a JSON array of objects"))
        return
    for row, item in enumerate(document, 1):
        yield Record(None, row, item, item if isinstance(item, dict) else orjson.dumps(item))


def raw_text(raw: object, limit: int = RAW_LIMIT) -> tuple[str, bool]:
    """A rejected row's raw form as text for the rejects file, and whether it was cut to ``limit``."""
    if isinstance(raw, bytes):
        text = raw[: limit * 4].decode("utf-8", "replace")
    elif isinstance(raw, str):
        text = raw
    else:
        text = orjson.dumps(raw).decode()
    return (text, False) if len(text) <= limit else (text[:limit], True)


def _localized(record: dict[str, Any], tz: tzinfo) -> dict[str, Any]:
    """A naive ISO event_time is local time in ``--source-tz``; anything else (numbers and numeric
    text are epoch seconds, garbage is invalid) is left to the model."""
    when = record.get("event_time")
    if not isinstance(when, str) or _is_number(when):
        return record
    try:
        return {**record, "event_time": parse_local(when, tz)}
    except ValueError:
        return record


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def to_event(payload: Payload, schema: Schema, tz: tzinfo | None) -> TripEvent | Rejection:
    """Validate one record's payload as an event through the shared model.

    ``tz`` is ``--source-tz`` (None: UTC, which the model assumes anyway).
    """
    if isinstance(payload, Rejection):
        return payload
    if schema is Schema.CANONICAL and tz is None:
        return parse_event(payload)
    record: object = payload
    if isinstance(payload, bytes):
        try:
            record = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return parse_event(payload)
    if not isinstance(record, dict):
        return parse_event(payload)
    if schema is Schema.TLC:
        fields = tlc_fields(record, tz)
        return fields if isinstance(fields, Rejection) else parse_event(fields)
    return parse_event(_localized(record, tz) if tz is not None else record)
