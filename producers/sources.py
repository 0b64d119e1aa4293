"""Opening replay inputs: files or stdin, gzip'd or not, with format and schema detected up front.

Every source is opened and sniffed before the replay connects to Kafka, so a usage problem (a
missing file, an unreadable gzip stream) is reported before anything is sent. Line formats are
streamed; a JSON array is read whole when opened, as it has to be parsed whole anyway.

Memory is bounded whatever the input: a line may be at most :data:`MAX_LINE_BYTES` and a JSON
document :data:`MAX_DOCUMENT_BYTES`, counted after decompression. Past either the input is refused
(a usage error naming it) instead of being buffered: a file without newlines or a gzip bomb would
otherwise be read into memory whole. A streamed line format has no total bound; it needs none.
"""

from __future__ import annotations

import gzip
import io
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import BinaryIO

from producers.exceptions import UsageProblem
from producers.parsers import (
    BOM,
    Format,
    Record,
    Schema,
    csv_header,
    csv_records,
    detect_format,
    detect_schema,
    first_json_keys,
    is_gzip,
    json_array_records,
    jsonl_records,
)

STDIN = "-"
_BUFFER = 1 << 20
#: Blank lines read while looking for the first record before the input is taken as empty.
_MAX_LEADING_BLANK = 10_000
#: Longest line accepted (a TLC row is about 200 bytes, a canonical event well under 1 KB).
MAX_LINE_BYTES = 1 << 20
#: Largest JSON array document accepted, decompressed (line formats stream and have no such bound).
MAX_DOCUMENT_BYTES = 256 << 20


@dataclass
class Source:
    """One input, ready to be read once (stdin) or any number of times (a file or a JSON
    document, for ``--loop``)."""

    name: str
    path: Path | None
    format: Format
    schema: Schema
    _head: list[bytes] = field(default_factory=list, repr=False)
    _rest: BinaryIO | None = field(default=None, repr=False)
    _document: bytes | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        """How rejects and messages name the source."""
        return "<stdin>" if self.path is None else self.name

    def records(self) -> Iterator[Record]:
        """The records, in file order. A file is read afresh on each call; stdin only once."""
        if self._document is not None:
            yield from json_array_records(self._document)
            return
        if self._rest is not None:
            stream, head = self._rest, self._head
            self._rest, self._head = None, []
        elif self.path is not None:
            stream, head = _open(self.path), []
        else:
            raise UsageProblem("stdin can be read only once (--loop needs files)")
        try:
            parse = csv_records if self.format is Format.CSV else jsonl_records
            yield from parse(chain(head, _lines(stream, self.label, len(head))))
        finally:
            stream.close()

    def close(self) -> None:
        if self._rest is not None:
            self._rest.close()
            self._rest = None


def open_source(name: str, fmt: Format | None = None, schema: Schema | None = None) -> Source:
    """Open ``name`` (``-`` for stdin) and detect what it holds; ``fmt``/``schema`` override detection."""
    path = None if name == STDIN else Path(name)
    stream = _stdin() if path is None else _open(path)
    head = _head_lines(stream, name)
    start = b"".join(head)
    detected = fmt or detect_format(name, start)
    if detected is Format.JSON:
        with stream:
            document = start + _read_all(stream, name)
        keys = _first_array_keys(document)
        return Source(name, path, detected, schema or detect_schema(keys), _document=document)
    if schema is None:
        line = start.removeprefix(BOM).lstrip().split(b"\n", 1)[0]
        schema = detect_schema(csv_header(line) if detected is Format.CSV else first_json_keys(line))
    return Source(name, path, detected, schema, head, stream)


def _first_array_keys(document: bytes) -> list[str]:
    """Keys of a JSON array's first element, found without parsing the whole array."""
    text = document.removeprefix(BOM).lstrip().removeprefix(b"[").lstrip()
    end = text.find(b"}")
    while end >= 0:
        keys = first_json_keys(text[: end + 1])
        if keys:
            return keys
        end = text.find(b"}", end + 1)
    return []


def _stdin() -> BinaryIO:
    raw = io.BufferedReader(io.FileIO(sys.stdin.fileno(), "rb", closefd=False), _BUFFER)
    return _maybe_gunzip(raw, STDIN)


def _open(path: Path) -> BinaryIO:
    try:
        raw = io.BufferedReader(io.FileIO(path, "rb"), _BUFFER)
    except OSError as exc:
        raise UsageProblem(f"cannot read {path}: {exc.strerror or exc}") from None
    return _maybe_gunzip(raw, str(path))


def _maybe_gunzip(raw: io.BufferedReader[io.FileIO], name: str) -> BinaryIO:
    """Gzip is recognised by its magic bytes, whatever the file is called."""
    try:
        magic = raw.peek(2)[:2]
    except OSError as exc:
        raise UsageProblem(f"cannot read {name}: {exc.strerror or exc}") from None
    if not is_gzip(magic):
        return raw
    return io.BufferedReader(gzip.GzipFile(fileobj=raw, mode="rb"), _BUFFER)


def _head_lines(stream: BinaryIO, name: str) -> list[bytes]:
    """Lines up to and including the first non-blank one: enough to detect format and schema."""
    head: list[bytes] = []
    try:
        while len(head) < _MAX_LEADING_BLANK:
            line = _bounded_line(stream, name, len(head) + 1)
            if not line:
                break
            head.append(line)
            if line.removeprefix(BOM).strip():
                break
    except (OSError, EOFError, zlib.error) as exc:
        raise UsageProblem(f"cannot read {name}: {exc}") from None
    return head


def _bounded_line(stream: BinaryIO, label: str, number: int) -> bytes:
    line = stream.readline(MAX_LINE_BYTES + 1)
    if len(line) > MAX_LINE_BYTES:
        raise UsageProblem(
            f"{label}: line {number} is longer than {MAX_LINE_BYTES >> 20} MiB (not a line-oriented file?)"
        )
    return line


def _lines(stream: BinaryIO, label: str, number: int = 0) -> Iterator[bytes]:
    """The remaining lines; ``number`` lines were read before (for the line number in errors)."""
    try:
        while line := _bounded_line(stream, label, number + 1):
            number += 1
            yield line
    except (OSError, EOFError, zlib.error) as exc:
        raise UsageProblem(f"cannot read {label}: {exc}") from None


def _read_all(stream: BinaryIO, label: str) -> bytes:
    try:
        document = stream.read(MAX_DOCUMENT_BYTES + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise UsageProblem(f"cannot read {label}: {exc}") from None
    if len(document) > MAX_DOCUMENT_BYTES:
        raise UsageProblem(
            f"{label}: a JSON document larger than {MAX_DOCUMENT_BYTES >> 20} MiB decompressed; "
            "use JSON Lines for large inputs"
        )
    return document
