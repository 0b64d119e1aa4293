"""The replayer on the real broker: what reaches the topic, the rejects file, the summary, pacing,
interruption and an unreachable broker. Expected rows are computed here in plain Python from the
input files, sharing no code with ``producers``."""

from __future__ import annotations

import asyncio
import csv
import gzip
import json
import math
import signal
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiokafka import AIOKafkaConsumer, TopicPartition

from api.timeparse import parse_time_ms
from producers.localtime import parse_local
from support.kafka import Record, read_topic
from support.procs import Proc, StackInfo, run_replay, wait_for
from support.reference import control_of
from tests.integration.pipeline import TLC_SAMPLE

PARTITIONS = 4  # sp_env's STREAMPULSE_PARTITIONS


def is_control(message: Record) -> bool:
    return control_of(message)[0]


def summary_of(output: str) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    assert set(summary) == {"sent", "rejected", "rejected_by_reason", "seconds", "events_per_s"}
    assert summary["rejected"] == sum(summary["rejected_by_reason"].values())
    return summary


def topic_size(bootstrap: str, topic: str) -> int:
    async def size() -> int:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await consumer.start()
        try:
            if topic not in await consumer.topics():
                return 0
            end = await consumer.end_offsets([TopicPartition(topic, p) for p in range(PARTITIONS)])
            return sum(end.values())
        finally:
            await consumer.stop()

    return asyncio.run(size())


def ms(when: datetime) -> int:
    return (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def iso_ms(text: str) -> int:
    assert text.endswith("Z"), text
    return parse_time_ms(text)


def in_range(value: float, high: float) -> bool:
    return math.isfinite(value) and 0 <= value <= high


def tlc_reference(path: Path) -> tuple[list[tuple[int, int, float, float, float]], list[int]]:
    """Valid rows as (region, event time ms, fare, duration, distance) in file order, and the
    line numbers of the invalid ones, from the contract's rules and TLC's documented layout."""
    ny = ZoneInfo("America/New_York")
    valid, invalid = [], []
    with path.open(newline="") as fh:
        for line, row in enumerate(csv.DictReader(fh), start=2):
            pickup = parse_local(row["tpep_pickup_datetime"], ny).astimezone(ny)
            dropoff = parse_local(row["tpep_dropoff_datetime"], ny).astimezone(ny)
            # No sample time falls in a DST gap or overlap, so the plain zone conversion is exact.
            assert pickup.astimezone(UTC).astimezone(ny).replace(tzinfo=None) == pickup.replace(tzinfo=None)
            duration = (dropoff.astimezone(UTC) - pickup.astimezone(UTC)).total_seconds()
            region, fare, distance = (
                int(row["PULocationID"]),
                float(row["fare_amount"]),
                float(row["trip_distance"]),
            )
            ok = (
                region >= 0
                and in_range(fare, 10_000)
                and in_range(duration, 86_400)
                and in_range(distance, 1_000)
            )
            if ok:
                valid.append((region, ms(dropoff.astimezone(UTC)), fare, duration, distance))
            else:
                invalid.append(line)
    return valid, invalid


def event_tuple(message: Record) -> tuple[int, int, float, float, float]:
    event = json.loads(message.value or b"")
    assert message.key == str(event["region_id"]).encode()
    assert message.timestamp_ms == iso_ms(event["event_time"])
    return (
        event["region_id"],
        iso_ms(event["event_time"]),
        event["fare"],
        event["duration"],
        event["distance"],
    )


def check_end_markers(messages: list[Record], max_event_ms: int) -> None:
    """One end-of-stream record per partition, after every event of that partition."""
    controls = [m for m in messages if is_control(m)]
    assert sorted(m.partition for m in controls) == list(range(PARTITIONS))
    last = {m.partition: m.offset for m in messages}
    for control in controls:
        assert control.offset == last[control.partition]
        assert json.loads(control.value or b"") == {"control": "end-of-stream", "event_time_ms": max_event_ms}


def test_tlc_sample_puts_exactly_the_valid_rows_on_the_topic(
    stack: StackInfo, app_id: str, sp_env: dict[str, str], tmp_path: Path
) -> None:
    rejects = tmp_path / "rejects.jsonl"
    result = run_replay(sp_env, str(TLC_SAMPLE), "--rejects", str(rejects), "--json")
    assert result.returncode == 0, result.stderr
    valid, invalid = tlc_reference(TLC_SAMPLE)
    summary = summary_of(result.stdout)
    assert (summary["sent"], summary["rejected"]) == (len(valid), len(invalid))

    messages = read_topic(stack.bootstrap, f"{app_id}.events")
    events = [m for m in messages if not is_control(m)]
    assert Counter(event_tuple(m) for m in events) == Counter(valid)
    for region in {v[0] for v in valid}:
        in_topic = [event_tuple(m) for m in events if m.key == str(region).encode()]
        assert in_topic == [v for v in valid if v[0] == region], f"region {region} out of file order"
        assert len({m.partition for m in events if m.key == str(region).encode()}) == 1
    trip_ids = [json.loads(m.value or b"")["trip_id"] for m in events]
    assert len(set(trip_ids)) == len(trip_ids) and all(t.startswith("tlc-") for t in trip_ids)
    check_end_markers(messages, max(v[1] for v in valid))

    lines = TLC_SAMPLE.read_text().splitlines()
    rejected = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [r["line"] for r in rejected] == invalid
    for r in rejected:
        assert r["source"] == str(TLC_SAMPLE) and r["reason"] and r["message"]
        assert r["raw"] == lines[r["line"] - 1]
    assert Counter(r["reason"] for r in rejected) == Counter(summary["rejected_by_reason"])


BAD_ROWS = {
    '{"trip_id": "b1", "region_id": -1, "event_time": "2025-08-15T10:00:00Z", "fare": 1, "duration": 1, '
    '"distance": 1}': "invalid:region_id",
    '{"trip_id": "b2", "region_id": 1, "event_time": "not a time", "fare": 1, "duration": 1, '
    '"distance": 1}': "invalid:event_time",
    '{"trip_id": "b3", "region_id": 1, "event_time": "2025-08-15T10:00:00Z", "fare": NaN, "duration": 1, '
    '"distance": 1}': "invalid:fare",
    "{not json": "invalid_json",
    '{"region_id": 1}': "missing:trip_id",
    '{"trip_id": "b4", "region_id": true, "event_time": "2025-08-15T10:00:00Z", "fare": 1, "duration": 1, '
    '"distance": 1}': "invalid:region_id",
    '{"trip_id": "b5", "region_id": 1, "event_time": "2025-08-15T10:00:00Z", "fare": "abc", "duration": 1, '
    '"distance": 1}': "invalid:fare",
    "[1, 2]": "not_an_object",
    json.dumps(
        {"trip_id": "x" * 5000, "region_id": 1, "event_time": 0, "fare": 1, "duration": 1, "distance": 1}
    ): ("invalid:trip_id"),
}


def spelled(when: datetime, i: int) -> str | float:
    """The same instant in each spelling the contract allows."""
    spellings: list[str | float] = [
        when.isoformat().replace("+00:00", "Z"),
        when.astimezone(ZoneInfo("Europe/Paris")).isoformat(),
        when.replace(tzinfo=None).isoformat(),
        ms(when) / 1000,
    ]
    return spellings[i % 4]


def canonical_jsonl(path: Path, count: int) -> tuple[list[dict[str, Any]], dict[int, str]]:
    """A gzip'd JSON Lines file of valid events in varied spellings with the bad rows and blank
    lines mixed in; returns the expected events (time as ms) and the reason per bad line."""
    lines: list[str] = []
    expected: list[dict[str, Any]] = []
    bad_at: dict[int, str] = {}
    bad = list(BAD_ROWS.items())
    start = datetime(2025, 8, 15, 10, tzinfo=UTC)
    for i in range(count):
        if i % 37 == 5 and bad:
            row, reason = bad.pop()
            lines.append(row)
            bad_at[len(lines)] = reason
        if i % 50 == 7:
            lines.append("   ")
        when = start + timedelta(seconds=i, milliseconds=250 * (i % 4))
        event = {
            "trip_id": f"c{i}",
            "region_id": i % 9,
            "fare": round(i * 0.37 % 90, 2),
            "duration": i % 3600,
        }
        event["distance"] = round(i * 0.11 % 30, 2)
        lines.append(json.dumps({**event, "event_time": spelled(when, i), "note": "ignored"}))
        expected.append({**event, "event_time": ms(when)})
    assert not bad, "every bad row is placed"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return expected, bad_at


def test_canonical_jsonl_with_bad_rows(
    stack: StackInfo, app_id: str, sp_env: dict[str, str], tmp_path: Path
) -> None:
    source = tmp_path / "trips.jsonl.gz"
    expected, bad_at = canonical_jsonl(source, 400)
    rejects = tmp_path / "rejects.jsonl"
    result = run_replay(sp_env, str(source), "--rejects", str(rejects), "--json")
    assert result.returncode == 0, result.stderr
    summary = summary_of(result.stdout)
    assert summary["sent"] == len(expected)
    assert summary["rejected_by_reason"] == dict(Counter(bad_at.values()))

    messages = read_topic(stack.bootstrap, f"{app_id}.events")
    events = [m for m in messages if not is_control(m)]
    got = {}
    for m in events:
        event = json.loads(m.value or b"")
        assert m.key == str(event["region_id"]).encode() and m.timestamp_ms == iso_ms(event["event_time"])
        got[event["trip_id"]] = {**event, "event_time": iso_ms(event["event_time"])}
    assert len(got) == len(events) == len(expected)
    assert got == {e["trip_id"]: e for e in expected}
    check_end_markers(messages, max(e["event_time"] for e in expected))

    rejected = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert {r["line"]: r["reason"] for r in rejected} == bad_at
    assert all(r["source"] == str(source) and r["raw"] and r["message"] for r in rejected)


def test_rate_holds_within_ten_percent(
    stack: StackInfo, app_id: str, sp_env: dict[str, str], tmp_path: Path
) -> None:
    started = time.monotonic()
    result = run_replay(
        sp_env, "--synthetic", "4000", "--rate", "2000", "--json", "--rejects", str(tmp_path / "r")
    )
    wall_s = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    summary = summary_of(result.stdout)
    assert summary["sent"] == 4000
    assert 1.8 <= summary["seconds"] <= 2.2, summary
    assert 1800 <= summary["events_per_s"] <= 2200, summary
    assert wall_s >= 1.8
    assert topic_size(stack.bootstrap, f"{app_id}.events") == 4000 + PARTITIONS


def test_speed_holds_within_ten_percent(
    stack: StackInfo, app_id: str, sp_env: dict[str, str], tmp_path: Path
) -> None:
    """2001 events 10 ms apart span 20 s of event time: at --speed 10 the replay takes 2 s."""
    source = tmp_path / "paced.jsonl"
    start = datetime(2025, 8, 15, 10, tzinfo=UTC)
    rows = [
        {
            "trip_id": f"p{i}",
            "region_id": i % 5,
            "event_time": (start + timedelta(milliseconds=10 * i)).isoformat(),
        }
        for i in range(2001)
    ]
    source.write_text(
        "".join(json.dumps({**r, "fare": 5, "duration": 60, "distance": 1}) + "\n" for r in rows)
    )
    result = run_replay(sp_env, str(source), "--speed", "10", "--json", "--rejects", str(tmp_path / "r"))
    assert result.returncode == 0, result.stderr
    summary = summary_of(result.stdout)
    assert summary["sent"] == 2001
    assert 1.8 <= summary["seconds"] <= 2.2, summary


def test_loop_and_limit(stack: StackInfo, app_id: str, sp_env: dict[str, str], tmp_path: Path) -> None:
    result = run_replay(
        sp_env,
        "--synthetic",
        "50",
        "--loop",
        "3",
        "--limit",
        "120",
        "--json",
        "--rejects",
        str(tmp_path / "r"),
    )
    assert result.returncode == 0, result.stderr
    assert summary_of(result.stdout)["sent"] == 120
    events = [
        json.loads(m.value or b"")
        for m in read_topic(stack.bootstrap, f"{app_id}.events")
        if not is_control(m)
    ]
    by_id = {e["trip_id"]: iso_ms(e["event_time"]) for e in events}
    first = {t: when for t, when in by_id.items() if "~" not in t}
    assert len(first) == 50 and len(by_id) == 120
    span = max(first.values()) - min(first.values()) + 1
    for trip, when in by_id.items():
        base, _, loop = trip.partition("~")
        assert when == first[base] + int(loop or 0) * span
    assert Counter(t.partition("~")[2] for t in by_id) == {"": 50, "1": 50, "2": 20}


def test_strict_stops_at_the_first_invalid_row(
    stack: StackInfo, app_id: str, sp_env: dict[str, str], tmp_path: Path
) -> None:
    source = tmp_path / "strict.jsonl"
    event = {"region_id": 1, "event_time": 1755252000, "fare": 1, "duration": 1, "distance": 1}
    lines = [json.dumps({"trip_id": f"s{i}", **event}) for i in range(5)]
    lines[2] = '{"trip_id": "bad"}'
    source.write_text("\n".join(lines) + "\n")
    rejects = tmp_path / "rejects.jsonl"
    result = run_replay(sp_env, str(source), "--strict", "--json", "--rejects", str(rejects))
    assert result.returncode == 1, result.stderr
    assert f"{source}:3" in result.stderr and "missing:region_id" in result.stderr
    assert summary_of(result.stdout)["sent"] == 2
    messages = read_topic(stack.bootstrap, f"{app_id}.events")
    assert [json.loads(m.value or b"")["trip_id"] for m in messages] == ["s0", "s1"]
    assert [json.loads(line)["line"] for line in rejects.read_text().splitlines()] == [3]


def test_ctrl_c_flushes_and_reports_what_was_sent(
    stack: StackInfo, app_id: str, sp_env: dict[str, str], tmp_path: Path
) -> None:
    args = [sys.executable, "-m", "producers.replay", "--synthetic", "100000", "--rate", "1000", "--json"]
    proc = Proc([*args, "--rejects", str(tmp_path / "r")], sp_env, tmp_path / "replay.log")
    try:
        wait_for(lambda: topic_size(stack.bootstrap, f"{app_id}.events") >= 200, 60, 0.5, "first events")
        proc.kill(signal.SIGINT)
        wait_for(lambda: not proc.alive(), 40, what="the replay to stop")
    finally:
        code = proc.stop()
    assert code == 130, proc.output()
    summary = summary_of(proc.output())
    assert 200 <= summary["sent"] < 100_000
    messages = read_topic(stack.bootstrap, f"{app_id}.events")
    assert len(messages) == summary["sent"]
    assert not any(is_control(m) for m in messages)
    assert "Traceback" not in proc.output()


def test_unreachable_broker_exits_3_quickly(sp_env: dict[str, str], tmp_path: Path) -> None:
    env = {**sp_env, "STREAMPULSE_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    started = time.monotonic()
    result = run_replay(env, str(TLC_SAMPLE), "--rejects", str(tmp_path / "r"), timeout=60)
    elapsed = time.monotonic() - started
    assert result.returncode == 3, result.stderr
    assert elapsed < 10
    assert result.stderr.count("\n") == 1 and "127.0.0.1:1" in result.stderr
    assert "Traceback" not in result.stderr
