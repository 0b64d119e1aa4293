"""The replayer's files: inputs bounded per line and per document (after decompression), and a
rejects file that only its owner can read and that is never reached through a symbolic link."""

from __future__ import annotations

import gzip
import stat
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from producers import sources
from producers.exceptions import UsageProblem
from producers.runner import RejectsFile
from producers.sources import MAX_LINE_BYTES, open_source

ROOT = Path(__file__).resolve().parents[2]
HEADER = b'{"trip_id": "t1", "region_id": 1}\n'


def gzip_bomb(path: Path, size: int) -> None:
    """``size`` zero bytes, gzip'd into about a thousandth of that, written in chunks."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
    chunk = b"\0" * (1 << 20)
    with path.open("wb") as fh:
        for _ in range(size // len(chunk)):
            fh.write(compressor.compress(chunk))
        fh.write(compressor.flush())


def test_a_file_without_newlines_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "one-line.jsonl"
    path.write_bytes(b"x" * (MAX_LINE_BYTES + 10))
    with pytest.raises(UsageProblem, match="line 1 is longer than 1 MiB"):
        open_source(str(path))


def test_an_overlong_line_after_the_first_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(HEADER * 3 + b"y" * (MAX_LINE_BYTES + 1) + b"\n")
    source = open_source(str(path))
    with pytest.raises(UsageProblem, match="line 4 is longer"):
        list(source.records())


def test_a_gzip_bomb_is_refused_without_inflating_it(tmp_path: Path) -> None:
    path = tmp_path / "bomb.jsonl.gz"
    gzip_bomb(path, 64 << 20)
    assert path.stat().st_size < 1 << 20
    with pytest.raises(UsageProblem, match="longer than 1 MiB"):
        open_source(str(path))


def test_a_json_document_is_bounded_after_decompression(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sources, "MAX_DOCUMENT_BYTES", 1 << 16)
    path = tmp_path / "big.json.gz"
    path.write_bytes(gzip.compress(b"[" + b",\n".join([HEADER.strip()] * 5000) + b"]"))
    with pytest.raises(UsageProblem, match="JSON document larger than"):
        open_source(str(path), sources.Format.JSON)


def test_lines_within_the_bound_are_read(tmp_path: Path) -> None:
    path = tmp_path / "ok.jsonl"
    path.write_bytes(HEADER * 3)
    assert len(list(open_source(str(path)).records())) == 3


def test_rejects_file_is_owner_only_even_if_it_existed(tmp_path: Path) -> None:
    path = tmp_path / "rejects.jsonl"
    path.write_text("old run\n")
    path.chmod(0o644)
    rejects = RejectsFile(path)
    rejects.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes() == b"", "rewritten by every run"
    fresh = tmp_path / "fresh.jsonl"
    RejectsFile(fresh).close()
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600


def test_rejects_file_symlink_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "precious.txt"
    target.write_text("keep me\n")
    link = tmp_path / "rejects.jsonl"
    link.symlink_to(target)
    with pytest.raises(UsageProblem, match="symbolic link"):
        RejectsFile(link)
    assert target.read_text() == "keep me\n"


def test_replayer_exits_2_on_a_newline_free_file(tmp_path: Path) -> None:
    path = tmp_path / "blob.csv"
    path.write_bytes(b"a" * (MAX_LINE_BYTES + 1))
    result = subprocess.run(
        [sys.executable, "-m", "producers.replay", str(path), "--rejects", str(tmp_path / "r.jsonl")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "longer than 1 MiB" in result.stderr.strip().splitlines()[-1]
