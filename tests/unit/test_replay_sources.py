"""Opening inputs (files, gzip, stdin) and the command line's usage errors, without Kafka."""

from __future__ import annotations

import gzip
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from app.settings import get_settings
from producers.cli import replay
from producers.parsers import BOM, Format, Schema
from producers.sources import open_source

HEADER = b"trip_id,region_id,event_time,fare,duration,distance\n"
ROW = b"t1,42,2025-08-15T10:00:01Z,12.5,600,2.3\n"
TLC = {
    "tpep_pickup_datetime": "2019-03-23 20:21:09",
    "tpep_dropoff_datetime": "2019-03-23 20:27:24",
    "PULocationID": 1,
}


@pytest.fixture(autouse=True)
def _settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in list(os.environ):
        if key.startswith("STREAMPULSE_"):
            monkeypatch.delenv(key)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_gzip_is_recognised_by_content_whatever_the_name(tmp_path: Path) -> None:
    for name in ("trips.csv.gz", "trips.csv", "trips.data"):
        path = tmp_path / name
        path.write_bytes(gzip.compress(BOM + HEADER + ROW + ROW))
        source = open_source(str(path))
        assert (source.format, source.schema) == (Format.CSV, Schema.CANONICAL)
        assert [r.line for r in source.records()] == [2, 3]


def test_a_file_is_read_afresh_for_every_loop(tmp_path: Path) -> None:
    path = tmp_path / "trips.jsonl"
    path.write_bytes(b"\n" + orjson.dumps({"trip_id": "a"}) + b"\n")
    source = open_source(str(path))
    assert source.format is Format.JSONL
    first = [(r.line, r.raw) for r in source.records()]
    assert first == [(r.line, r.raw) for r in source.records()] == [(2, b'{"trip_id":"a"}')]


def test_json_array_schema_comes_from_its_first_object(tmp_path: Path) -> None:
    path = tmp_path / "trips.json"
    path.write_bytes(orjson.dumps([TLC, TLC], option=orjson.OPT_INDENT_2))
    source = open_source(str(path))
    assert (source.format, source.schema) == (Format.JSON, Schema.TLC)
    assert len(list(source.records())) == 2


def test_overrides_win_over_detection(tmp_path: Path) -> None:
    path = tmp_path / "trips.txt"
    path.write_bytes(orjson.dumps(TLC) + b"\n")
    source = open_source(str(path), Format.JSONL, Schema.CANONICAL)
    assert (source.format, source.schema) == (Format.JSONL, Schema.CANONICAL)
    assert open_source(str(path)).schema is Schema.TLC


def test_stdin_is_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, gzip.compress(HEADER + ROW))
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        monkeypatch.setattr(sys, "stdin", pipe)
        source = open_source("-")
        assert (source.label, source.format) == ("<stdin>", Format.CSV)
        assert len(list(source.records())) == 1
        with pytest.raises(Exception, match="only once"):
            list(source.records())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give FILE... or --synthetic N"),
        (["--synthetic", "5", "{file}"], "not both"),
        (["{file}", "--source-tz", "Mars/Base"], "unknown time zone"),
        (["{file}", "--format", "xml"], "'xml' is not one of"),
        (["/nonexistent/trips.csv"], "does not exist"),
        (["--synthetic", "0"], "0 is not in the range"),
        (["--synthetic", "5", "--start", "tomorrow"], "not an ISO-8601 time"),
        (["-", "--loop", "2"], "needs files, not stdin"),
    ],
)
def test_usage_errors_exit_2_before_touching_kafka(tmp_path: Path, args: list[str], message: str) -> None:
    path = tmp_path / "trips.csv"
    path.write_bytes(HEADER + ROW)
    argv = [a.format(file=path) for a in args] + ["--workers", "0", "--rejects", str(tmp_path / "r.jsonl")]
    result = CliRunner().invoke(replay, argv, env={"STREAMPULSE_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_a_bad_setting_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMPULSE_PARTITIONS", "many")
    result = CliRunner().invoke(replay, ["--synthetic", "1", "--workers", "0"])
    assert result.exit_code == 2
    assert "STREAMPULSE_PARTITIONS" in result.output
